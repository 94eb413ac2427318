"""Benchmark: where a search trial's epoch goes, beyond the training arithmetic.

`benchmarks/campaign_plan.py` times students on random batches held in memory; a search's
trial reads the transfer set's pipeline, validates after every epoch and runs its callbacks
(the divergence guard, the schedule, TensorBoard, HParams, the epoch backup). On an earlier
machine an MLP epoch of the campaign took about twice the planned time. This measures, for
each cell, an epoch of the 40k training split (the median of `--rounds` epochs after an
untimed one that pays the tracing) in four steps that each add one thing:

  memory      the Distiller on in-memory batches (what campaign_plan.py times)
  pipeline    the transfer set's own pipeline (`TransferSet.train_dataset`, cached views)
  validation  + the validation pass after the epoch (10k images)
  trial       `StudentHyperModel.fit` as a search runs it: every callback, TensorBoard logs
              and the epoch backup in a temporary search folder

Images are random uint8 (the pipeline does not read their values), K views of N images in
memory as the campaign keeps them, the config's student settings and precision.

    python benchmarks/trial_overhead.py                         # MLP 2 hidden at 1M
    python benchmarks/trial_overhead.py --cells mlp-d1-b316k,cnn-d2-b1M

Prints a table, then one JSON object last: seconds an epoch per step and cell, and `ratio`,
the trial's epoch over the in-memory one.
"""

from __future__ import annotations

import mimic_tf  # noqa: F401  (first: sets oneDNN's default before TensorFlow loads)

# isort: split

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import keras
import keras_tuner
import numpy as np
import tensorflow as tf
from epoch_timer import EpochTimer  # beside this script

from mimic_tf import runtime
from mimic_tf.config import load_config
from mimic_tf.data import Splits
from mimic_tf.data.spec import CIFAR10
from mimic_tf.transfer import TransferSet, view_order
from tuner.search.cells import Cell, planned_cells
from tuner.search.hypermodel import StudentHyperModel, TrainingData

STEPS = ("memory", "pipeline", "validation", "trial")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="cpu-replication-v2", help="config name or path")
    parser.add_argument("--cells", default="mlp-d2-b1M",
                        help="comma-separated cells of the config, as mlp-d2-b1M")
    parser.add_argument("--views", type=int, default=8, help="transfer-set views (default 8)")
    parser.add_argument("--train", type=int, default=40_000, help="training images (40k)")
    parser.add_argument("--validation", type=int, default=10_000, help="validation images")
    parser.add_argument("--rounds", type=int, default=3, help="timed epochs of each (default 3)")
    return parser.parse_args()


def chosen_cells(config, names: str) -> list[Cell]:
    """The config's planned cells named in `names` (comma-separated), in that order."""
    planned = {cell.name: cell for cell in planned_cells(config, ("mlp", "cnn"))}
    unknown = [name for name in names.split(",") if name not in planned]
    if unknown:
        raise SystemExit(f"--cells: {', '.join(unknown)} not among this config's cells: "
                         f"{', '.join(planned)}")
    return [planned[name] for name in names.split(",")]


def synthetic_transfer_set(views: int, train: int, validation: int) -> TransferSet:
    rng = np.random.default_rng(0)

    def images(count: int) -> np.ndarray:
        return rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)

    def labels(count: int) -> np.ndarray:
        return rng.integers(0, 10, count).astype(np.int64)

    splits = Splits(images(train), labels(train), images(validation), labels(validation),
                    images(1000), labels(1000), source="random",
                    class_names=CIFAR10.class_names)
    return TransferSet(
        splits=splits, augment=None, order=np.stack([view_order(train, k, 0)
                                                     for k in range(views)]),
        logits=rng.normal(size=(views, train, 10)).astype(np.float32),
        validation_logits=rng.normal(size=(validation, 10)).astype(np.float32),
        test_logits=rng.normal(size=(1000, 10)).astype(np.float32),
        fingerprint="random", views=images(views * train).reshape(views, train, 32, 32, 3),
    )


def epoch_seconds(rounds: int, fit, *args, **kwargs) -> float:
    """The median seconds of `rounds` epochs after a first one that pays the tracing."""
    timer = EpochTimer()
    fit(*args, epochs=rounds + 1, callbacks=[timer], **kwargs)
    return statistics.median(timer.seconds[1:])


def measure(cell: Cell, config, transfer_set: TransferSet, work: Path,
            rounds: int) -> dict[str, float]:
    batch = config.student.batch_size
    data = TrainingData.from_transfer_set(transfer_set, batch)
    steps = data.steps_per_epoch
    seconds: dict[str, float] = {}

    def fresh(log_dir=None, search_dir=None):
        keras.backend.clear_session()
        keras.utils.set_random_seed(0)
        hypermodel = StudentHyperModel(cell, config.student, seed=0, log_dir=log_dir,
                                       search_dir=search_dir, spec=CIFAR10)
        hp = keras_tuner.HyperParameters()
        return hypermodel, hp, hypermodel.build(hp)

    _, _, model = fresh()
    one_epoch = data.train.take(steps).cache()
    for _ in one_epoch:  # fill the cache before timing
        pass
    fit = {"steps_per_epoch": steps, "shuffle": False, "verbose": 0}
    seconds["memory"] = epoch_seconds(rounds, model.fit, one_epoch.repeat(), **fit)
    _, _, model = fresh()
    seconds["pipeline"] = epoch_seconds(rounds, model.fit, data.train, **fit)
    _, _, model = fresh()
    seconds["validation"] = epoch_seconds(rounds, model.fit, data.train,
                                          validation_data=data.validation, **fit)
    hypermodel, hp, model = fresh(work / cell.name / "logs", work / cell.name / "search")
    (work / cell.name / "search").mkdir(parents=True)
    seconds["trial"] = epoch_seconds(rounds, hypermodel.fit, hp, model, data, trial_id="0")
    return seconds


def main() -> None:
    args = parse_args()
    config = load_config(args.config)
    cells = chosen_cells(config, args.cells)
    facts = runtime.describe(precision=runtime.resolve_precision(config.student.precision))
    print(f"{args.config} students on {facts['cpu']}, oneDNN {'on' if facts['onednn'] else 'off'}"
          f", {facts['precision']}; {args.views} views of {args.train} random images",
          file=sys.stderr, flush=True)
    transfer_set = synthetic_transfer_set(args.views, args.train, args.validation)
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for cell in cells:
            results[cell.name] = measure(cell, config, transfer_set, Path(folder), args.rounds)
            print(f"  {cell.name}: " + ", ".join(f"{step} {results[cell.name][step]:.1f} s"
                                                  for step in STEPS), file=sys.stderr, flush=True)
    print("| cell | " + " | ".join(STEPS) + " | trial / memory |")
    print("|---|" + "---|" * (len(STEPS) + 1))
    for name, seconds in results.items():
        print(f"| {name} | " + " | ".join(f"{seconds[step]:.1f}" for step in STEPS)
              + f" | {seconds['trial'] / seconds['memory']:.2f} |")
    print(json.dumps({"config": args.config, "runtime": facts, "seconds": results,
                      "ratio": {name: s["trial"] / s["memory"] for name, s in results.items()},
                      "views": args.views, "train": args.train, "rounds": args.rounds}))


if __name__ == "__main__":
    tf.get_logger().setLevel("ERROR")
    main()
