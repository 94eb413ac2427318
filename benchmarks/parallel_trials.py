"""Benchmark: one search trial on every core, or one trial a core side by side.

A search runs its trials one after another, each with TensorFlow's thread pools as wide as
the machine. On a small CPU a student's steps are short (an MLP step at batch 128 is a few
milliseconds), so two threads may not make one trial twice as fast, while KerasTuner's
chief/worker mode (`tuner/search/distributed.py`) can run one trial a core instead. This measures,
for each cell, the training throughput of the two ways side by side in one run:

  shared     one process, TensorFlow's default threads (one intra-op thread a core)
  per core   as many processes at once as the machine has cores, each with
             TF_NUM_INTRAOP_THREADS=1 and TF_NUM_INTEROP_THREADS=1 (the variables a
             worker would be started with), each training the same cell

Each process trains the cell's Distiller at its default widths (the search space's default
hyperparameters) on the transfer set's pipeline over random uint8 images, with the
validation pass after every epoch, as a trial does; its epoch is the median of `--rounds`
after an untimed one that pays the tracing. The workload `teacher` is one member of the
config's airbench teacher instead (its widths, batch, recipe and precision, `--teacher-steps`
steps an epoch on in-memory random batches), for members trained side by side. Throughput
is training images a second, summed over the processes that ran at once. The order is
shared, per core, shared again, so a drift of the host's speed during the run shows as a
difference between the two shared rounds.

    python benchmarks/parallel_trials.py                        # MLP 2 hidden at 1M, CNN 2 conv
    python benchmarks/parallel_trials.py --cells mlp-d1-b316k,cnn-d1-b1M --rounds 2
    python benchmarks/parallel_trials.py --cells teacher --rounds 2

Prints a table, then one JSON object last: per cell the seconds of each process's epoch
and `ratio`, the per-core throughput over the mean of the two shared ones.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from mimic_tf.data.spec import CIFAR10

HERE = Path(__file__).resolve().parent
TEACHER = "teacher"  # the workload of one teacher member, beside the config's cells
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1",
              "OMP_NUM_THREADS": "1"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="cpu-replication-v2", help="config name or path")
    parser.add_argument("--cells", default="mlp-d2-b1M,cnn-d2-b316k",
                        help="comma-separated cells of the config, as mlp-d2-b1M, or "
                             "`teacher` for one teacher member (its recipe, in-memory batches)")
    parser.add_argument("--views", type=int, default=2,
                        help="transfer-set views in memory (default 2; an epoch reads one "
                             "view's worth whatever the count)")
    parser.add_argument("--train", type=int, default=20_000, help="training images (20k)")
    parser.add_argument("--validation", type=int, default=5_000, help="validation images")
    parser.add_argument("--rounds", type=int, default=3, help="timed epochs of each (default 3)")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 2,
                        help="processes side by side (default: one a core)")
    parser.add_argument("--teacher-steps", type=int, default=3,
                        help="steps of an epoch for the `teacher` workload (default 3)")
    parser.add_argument("--worker", metavar="CELL", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def train_one(args: argparse.Namespace) -> None:
    """The worker: train `args.worker` for `rounds + 1` epochs; print its epochs' seconds."""
    import mimic_tf  # noqa: F401  (first: sets oneDNN's default before TensorFlow loads)

    # isort: split

    import keras
    import tensorflow as tf
    from epoch_timer import EpochTimer

    from mimic_tf import runtime
    from mimic_tf.config import load_config

    tf.get_logger().setLevel("ERROR")
    config = load_config(args.config)
    keras.utils.set_random_seed(0)
    if args.worker == TEACHER:
        model, dataset, steps, batch, precision = teacher_member(config, args.teacher_steps)
        fit = {}
    else:
        model, data, precision = student_trial(config, args.worker, args)
        dataset, steps, batch = data.train, data.steps_per_epoch, config.student.batch_size
        fit = {"validation_data": data.validation}
    timer = EpochTimer()
    started, cpu_started = time.perf_counter(), time.process_time()
    model.fit(dataset, steps_per_epoch=steps, epochs=args.rounds + 1, callbacks=[timer],
              shuffle=False, verbose=0, **fit)
    cores_busy = (time.process_time() - cpu_started) / (time.perf_counter() - started)
    print(json.dumps({"seconds": timer.seconds[1:], "images": steps * batch,
                      "cores_busy": round(cores_busy, 2),
                      "runtime": runtime.describe(precision=runtime.resolve_precision(precision))}))


def student_trial(config, name: str, args: argparse.Namespace):
    """A cell's Distiller at the search space's defaults, and the transfer set's pipeline."""
    import keras_tuner
    from trial_overhead import chosen_cells, synthetic_transfer_set

    from tuner.search.hypermodel import StudentHyperModel, TrainingData

    (cell,) = chosen_cells(config, name)
    data = TrainingData.from_transfer_set(
        synthetic_transfer_set(args.views, args.train, args.validation),
        config.student.batch_size)
    model = StudentHyperModel(cell, config.student, seed=0, spec=CIFAR10).build(
        keras_tuner.HyperParameters())
    return model, data, config.student.precision


def teacher_member(config, steps: int):
    """One airbench member at the config's widths and batch, on in-memory random batches."""
    import dataclasses

    import numpy as np
    import tensorflow as tf

    from mimic_tf.teachers import airbench, airbench_recipe

    recipe = config.teacher.airbench
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (recipe.batch_size * steps, 32, 32, 3), dtype=np.uint8)
    labels = np.eye(10, dtype=np.float32)[rng.integers(0, 10, len(images))]
    member = airbench.build_airbench_member(dataclasses.replace(recipe, lookahead_every=0),
                                            images[:1024], num_classes=10)
    airbench_recipe.compile_member(member, recipe, total_steps=100 * steps)
    dataset = (tf.data.Dataset.from_tensor_slices((images, labels)).batch(recipe.batch_size)
               .cache().repeat())
    return member, dataset, steps, recipe.batch_size, recipe.precision


def run_side_by_side(args: argparse.Namespace, cell: str, processes: int,
                     environment: dict[str, str]) -> list[dict]:
    """Start `processes` workers on `cell` at once; their JSON records once all have ended."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", cell,
               "--config", args.config, "--views", str(args.views), "--train", str(args.train),
               "--validation", str(args.validation), "--rounds", str(args.rounds),
               "--teacher-steps", str(args.teacher_steps)]
    env = {**os.environ, **environment,
           "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent),
                                          os.environ.get("PYTHONPATH", "")])}
    workers = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(processes)]
    records = []
    for worker in workers:
        out, err = worker.communicate()
        if worker.returncode != 0:
            raise SystemExit(f"a worker on {cell} failed (exit {worker.returncode}):\n"
                             + err[-3000:])
        records.append(json.loads(out.strip().splitlines()[-1]))
    return records


def throughput(records: list[dict]) -> float:
    """Training images a second of processes that ran at once: the sum of each one's."""
    return sum(record["images"] / statistics.median(record["seconds"]) for record in records)


def main() -> None:
    args = parse_args()
    if args.worker:
        train_one(args)
        return
    results = {}
    for cell in args.cells.split(","):
        rounds = {}
        for name, processes, environment in (("shared", 1, {}),
                                              ("per_core", args.processes, ONE_THREAD),
                                              ("shared_again", 1, {})):
            records = run_side_by_side(args, cell, processes, environment)
            rounds[name] = {"img_per_s": throughput(records),
                            "epoch_seconds": [record["seconds"] for record in records],
                            "cores_busy": [record["cores_busy"] for record in records]}
            print(f"  {cell} {name}: {rounds[name]['img_per_s']:,.0f} img/s ({processes} "
                  f"process(es), cores busy {rounds[name]['cores_busy']})",
                  file=sys.stderr, flush=True)
        shared = (rounds["shared"]["img_per_s"] + rounds["shared_again"]["img_per_s"]) / 2
        results[cell] = {**rounds, "ratio": rounds["per_core"]["img_per_s"] / shared}
        facts = records[0]["runtime"]
    print(f"{args.config} on {facts['cpu']}, oneDNN {'on' if facts['onednn'] else 'off'}, "
          f"{facts['precision']}; {args.processes} processes of 1 thread against 1 process")
    print("| cell | shared img/s | per core img/s | shared again img/s | per core / shared |")
    print("|---|---|---|---|---|")
    for cell, result in results.items():
        print(f"| {cell} | {result['shared']['img_per_s']:,.0f} | "
              f"{result['per_core']['img_per_s']:,.0f} | "
              f"{result['shared_again']['img_per_s']:,.0f} | {result['ratio']:.2f} |")
    print(json.dumps({"config": args.config, "runtime": facts, "processes": args.processes,
                      "train": args.train, "rounds": args.rounds, "results": results}))


if __name__ == "__main__":
    main()
