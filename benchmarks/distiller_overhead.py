"""Benchmark: the Distiller on cached logits against plain `student.fit` on labels.

Claim checked: training through the `Distiller` (mimic loss on cached teacher logits, plus the
agreement metric) costs at most 5% in steps/s over Keras' own `fit` of the same student with
cross-entropy on labels. JSON key `ratio` = Distiller steps/s over plain steps/s (target >= 0.95).

Method: one process, the same student architecture and seed, the same in-memory batches; the
two trainers alternate for `--rounds` timed rounds of `--steps` steps each after a warm-up
round (graph tracing excluded); the median round of each is compared.
Reference run: 2-core x86_64 CPU, no GPU, TF 2.21 / Keras 3.15, `python
benchmarks/distiller_overhead.py` (the command in the README). Prints one JSON object last.
Use `--mixed-precision` on a GPU to measure img/s under the mixed_float16 policy.
"""

from __future__ import annotations

import mimic_tf  # noqa: F401  (first: sets oneDNN's default before TensorFlow loads)

# isort: split

import argparse
import json
import statistics

import keras
import numpy as np
import tensorflow as tf
from epoch_timer import EpochTimer  # beside this script

from mimic_tf.data.spec import CIFAR10
from mimic_tf.distiller import Distiller
from mimic_tf.students import build_student


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="cnn", choices=["mlp", "cnn"])
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--budget", type=float, default=1.0e6)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per trainer")
    parser.add_argument("--mixed-precision", action="store_true")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.mixed_precision:
        keras.mixed_precision.set_dtype_policy("mixed_float16")
    rng = np.random.default_rng(0)
    num_examples = args.batch_size * args.steps
    images = rng.integers(0, 256, (num_examples, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, num_examples).astype(np.int64)
    teacher_logits = rng.normal(size=(num_examples, 10)).astype(np.float32)

    def batches(*arrays):
        return (tf.data.Dataset.from_tensor_slices(arrays).batch(args.batch_size)
                .cache().repeat().prefetch(tf.data.AUTOTUNE))

    def optimizer():
        return keras.optimizers.SGD(0.005, momentum=0.9, nesterov=True)

    student_args = (args.family, args.depth, args.budget)
    plain = build_student(*student_args, seed=0, spec=CIFAR10)
    plain.compile(optimizer=optimizer(),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    distiller = Distiller(build_student(*student_args, seed=0, spec=CIFAR10))
    distiller.compile(optimizer=optimizer())
    runs = {
        "plain": (plain, batches(images, labels)),
        "distiller": (distiller, batches(images, teacher_logits, labels)),
    }
    timers = {name: EpochTimer() for name in runs}
    for model, dataset in runs.values():  # warm-up: trace and build
        model.fit(dataset, epochs=1, steps_per_epoch=args.steps, verbose=0, shuffle=False)
    for _ in range(args.rounds):  # alternate so drifts in machine load hit both alike
        for name, (model, dataset) in runs.items():
            model.fit(dataset, epochs=1, steps_per_epoch=args.steps, verbose=0,
                      callbacks=[timers[name]], shuffle=False)
    steps_per_second = {
        name: args.steps / statistics.median(timer.seconds) for name, timer in timers.items()
    }
    result = {
        "benchmark": "distiller_overhead",
        "student": f"{args.family}{args.depth} {plain.count_params():,} params",
        "batch_size": args.batch_size,
        "mixed_precision": args.mixed_precision,
        "device": "GPU" if tf.config.list_physical_devices("GPU") else "CPU",
        "plain_steps_per_second": round(steps_per_second["plain"], 2),
        "distiller_steps_per_second": round(steps_per_second["distiller"], 2),
        "plain_images_per_second": round(steps_per_second["plain"] * args.batch_size),
        "distiller_images_per_second": round(steps_per_second["distiller"] * args.batch_size),
        "ratio": round(steps_per_second["distiller"] / steps_per_second["plain"], 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
