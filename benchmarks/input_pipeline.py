"""Benchmark: the augmented transfer-set pipeline against the training it feeds.

Claim checked: the pipeline that regenerates augmented views from their seeds and pairs them
with cached teacher logits (`TransferSet.train_dataset`) produces images at least 5x faster
than a 1M-parameter 2-conv student trains on them, so the input pipeline never starves
training. JSON key `ratio` = pipeline img/s over training img/s (target >= 5).

Method: real CIFAR-10 training images (`--data`, default `auto`), a transfer set of
`--views` views whose logits are random (pipeline speed does not depend on their values); the
pipeline is drained alone for `--batches` batches; the student is trained by the `Distiller`
on the same batches held in memory (so its time is pure training): the median of
`--rounds` epochs after a warm-up epoch.
Reference run: 2-core x86_64 CPU, no GPU, TF 2.21 / Keras 3.15. Prints one JSON object last.
"""

from __future__ import annotations

import mimic_tf  # noqa: F401  (first: sets oneDNN's default before TensorFlow loads)

# isort: split

import argparse
import json
import statistics
import time

import keras
import numpy as np
import tensorflow as tf
from epoch_timer import EpochTimer  # beside this script

from mimic_tf.config import load_config
from mimic_tf.data import load_splits
from mimic_tf.data.spec import CIFAR10
from mimic_tf.distiller import Distiller
from mimic_tf.students import build_student
from mimic_tf.transfer import TransferSet, view_order


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="auto", help="data source (default: auto)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--batches", type=int, default=60, help="batches timed for each side")
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="timed training epochs")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    config = load_config("default", overrides={"data.source": args.data})
    splits = load_splits(config.data)
    num_examples = len(splits.train_labels)
    rng = np.random.default_rng(0)
    transfer_set = TransferSet(
        splits=splits,
        augment=config.augment,
        order=np.stack([view_order(num_examples, view, 0) for view in range(args.views)]),
        logits=rng.normal(size=(args.views, num_examples, 10)).astype(np.float32),
        validation_logits=np.zeros((len(splits.validation_labels), 10), np.float32),
        test_logits=np.zeros((len(splits.test_labels), 10), np.float32),
        fingerprint="benchmark",
    )

    # Pipeline alone: regenerate augmented views, gather logits and labels.
    dataset = transfer_set.train_dataset(args.batch_size)
    iterator = iter(dataset)
    for _ in range(5):  # warm-up: tracing, thread pools, first prefetches
        next(iterator)
    started = time.perf_counter()
    batches = [next(iterator) for _ in range(args.batches)]
    pipeline_seconds = time.perf_counter() - started
    pipeline_rate = args.batches * args.batch_size / pipeline_seconds

    # Training alone: the same batches from memory, a 1M-parameter 2-conv student.
    in_memory = tf.data.Dataset.from_tensor_slices(
        tuple(tf.concat([b[i] for b in batches], 0) for i in range(3))
    ).batch(args.batch_size).cache().repeat()
    distiller = Distiller(build_student("cnn", 2, 1.0e6, seed=0, spec=CIFAR10))
    distiller.compile(optimizer=keras.optimizers.SGD(0.005, momentum=0.9, nesterov=True))
    timer = EpochTimer()
    # Epoch 1 is the warm-up (tracing); the median of the later epochs is the rate.
    distiller.fit(in_memory, epochs=args.rounds + 1, steps_per_epoch=args.batches, verbose=0,
                  callbacks=[timer], shuffle=False)
    training_rate = args.batches * args.batch_size / statistics.median(timer.seconds[1:])

    print(json.dumps({
        "benchmark": "input_pipeline",
        "data": splits.source,
        "batch_size": args.batch_size,
        "pipeline_images_per_second": round(pipeline_rate),
        "training_images_per_second": round(training_rate),
        "student": f"cnn2 {distiller.student.count_params():,} params",
        "ratio": round(pipeline_rate / training_rate, 2),
    }))


if __name__ == "__main__":
    main()
