"""Benchmark: a search trial's epoch with one batch a `tf.function` call against several.

Claim checked: running `steps_per_execution` batches a call (`mimic_tf.runtime.
steps_per_execution`: the largest divisor of the epoch's batches up to 32, 25 for 625 batches
of 64) makes a trial's epoch faster, most for the small students whose steps are mostly Python
and dispatch, and trains the same weights. JSON key `ratio` = the epoch's seconds at 1 over
its seconds at the chosen count, per cell; `same_weights` whether both ended equal.

Method: one process, threads as a lane of the default run has them (`--threads 1`); for each
cell, `StudentHyperModel.fit` as a search runs it (every callback, validation after each
epoch) on the same synthetic transfer set (`trial_overhead.py`'s: random images, K views in
memory), once at 1 and once at the chosen count, from the same seed; the median of `--rounds`
epochs after an untimed first one that pays the tracing.

    python benchmarks/steps_per_execution.py                        # the default config
    python benchmarks/steps_per_execution.py --cells mlp-d1-b100k --rounds 5

Prints a table, then one JSON object last, with the machine.
"""

from __future__ import annotations

import mimic_tf  # noqa: F401  (first: sets oneDNN's default before TensorFlow loads)

# isort: split

import argparse
import json
import statistics
import sys

import keras
import keras_tuner
import numpy as np
import tensorflow as tf
from epoch_timer import EpochTimer  # beside this script
from trial_overhead import chosen_cells, synthetic_transfer_set  # beside this script

from mimic_tf import runtime
from mimic_tf.config import load_config
from mimic_tf.data.spec import CIFAR10
from tuner.search.cells import Cell
from tuner.search.hypermodel import StudentHyperModel, TrainingData


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="default", help="config name or path")
    parser.add_argument("--cells", default="mlp-d1-b100k,mlp-d2-b316k,cnn-d1-b316k,cnn-d2-b316k",
                        help="comma-separated cells of the config, as mlp-d2-b316k")
    parser.add_argument("--threads", type=int, default=1,
                        help="TensorFlow threads (1: as a lane of searches side by side)")
    parser.add_argument("--views", type=int, default=8, help="transfer-set views (default 8)")
    parser.add_argument("--train", type=int, default=40_000, help="training images (40k)")
    parser.add_argument("--validation", type=int, default=10_000, help="validation images")
    parser.add_argument("--rounds", type=int, default=3, help="timed epochs of each (default 3)")
    return parser.parse_args()


def trial_epochs(cell: Cell, config, data: TrainingData, steps: int,
                 rounds: int) -> tuple[float, list[np.ndarray]]:
    """The median epoch of a trial at `steps` batches a call, and the weights it ended with."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    hypermodel = StudentHyperModel(cell, config.student, seed=0, spec=CIFAR10,
                                   steps_per_execution=steps)
    hp = keras_tuner.HyperParameters()
    model = hypermodel.build(hp)
    timer = EpochTimer()
    hypermodel.fit(hp, model, data, epochs=rounds + 1, callbacks=[timer])
    return statistics.median(timer.seconds[1:]), model.student.get_weights()


def main() -> None:
    args = parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    config = load_config(args.config)
    cells = chosen_cells(config, args.cells)
    facts = runtime.describe(precision=runtime.resolve_precision(config.student.precision))
    data = TrainingData.from_transfer_set(
        synthetic_transfer_set(args.views, args.train, args.validation),
        config.student.batch_size)
    chosen = runtime.steps_per_execution(data.steps_per_epoch)
    print(f"{args.config} students on {facts['cpu']}, {args.threads} thread(s), batch "
          f"{config.student.batch_size}: {data.steps_per_epoch} batches an epoch, 1 or {chosen} "
          "a call", file=sys.stderr, flush=True)
    results = {}
    for cell in cells:
        one, weights_one = trial_epochs(cell, config, data, 1, args.rounds)
        many, weights_many = trial_epochs(cell, config, data, chosen, args.rounds)
        same = all(np.array_equal(a, b) for a, b in zip(weights_one, weights_many, strict=True))
        results[cell.name] = {"seconds_at_1": one, "seconds_at_chosen": many,
                              "ratio": one / many, "same_weights": same}
        print(f"  {cell.name}: {one:.2f} s at 1, {many:.2f} s at {chosen}", file=sys.stderr,
              flush=True)
    print(f"| cell | epoch at 1 (s) | epoch at {chosen} (s) | speed-up | same weights |")
    print("|---|---|---|---|---|")
    for name, row in results.items():
        print(f"| {name} | {row['seconds_at_1']:.2f} | {row['seconds_at_chosen']:.2f} | "
              f"{row['ratio']:.2f}x | {'yes' if row['same_weights'] else 'no'} |")
    print(json.dumps({"config": args.config, "runtime": facts, "threads": args.threads,
                      "steps_per_epoch": data.steps_per_epoch, "steps_per_execution": chosen,
                      "cells": results, "ratio": {n: r["ratio"] for n, r in results.items()},
                      "same_weights": all(r["same_weights"] for r in results.values()),
                      "rounds": args.rounds}))


if __name__ == "__main__":
    tf.get_logger().setLevel("ERROR")
    main()
