"""Benchmark: a student distilled from a published teacher's logits against Keras' own
`keras.distillation.Distiller` with the teacher ensemble in the loop.

Claim checked: reading the published ensemble's float16 logits (mimic-tf's `Distiller` on
the transfer set, the teacher run once, when it was published) trains a 1M CNN student many
times faster than `keras.distillation.Distiller`, whose way is to run the teacher on every
batch. JSON key `ratio` = published steps/s over in-the-loop steps/s.

Method: one process; the same student architecture, seed, batch size and images (view 0 of
the transfer set, in its order); the published side reads the logits the campaign committed
(`--teacher-logits`, checked against the data as any run does), the in-the-loop side runs an
ensemble of as many airbench members of the config's widths (the published recipe) on each
batch, with the L2 loss on logits and no label term (`student_loss_weight=0`), as the mimic
loss does. The members' weights need not be the trained ones: this measures speed. The two
trainers alternate for `--rounds` timed rounds after a warm-up round (tracing excluded); a
round is `--steps` steps of the published side and `--loop-steps` of the slower one, and the
median round of each is compared.

    python benchmarks/published_teacher_speed.py                # cpu-replication-v2's members
    python benchmarks/published_teacher_speed.py --cell cnn-d2 --rounds 3

Prints one JSON object last, with the machine.
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

from mimic_tf import data, runtime
from mimic_tf.config import load_config
from mimic_tf.data.spec import CIFAR10
from mimic_tf.distiller import Distiller
from mimic_tf.students import build_student
from mimic_tf.teachers import airbench, build_ensemble
from mimic_tf.teachers.published import read_published_teacher, resolve_folder


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="cpu-replication-v2", help="config name or path")
    parser.add_argument("--teacher-logits", default="results/cpu-replication-v2/teacher",
                        help="the published teacher (default: the campaign's members)")
    parser.add_argument("--cell", default="cnn-d1", help="student family and depth")
    parser.add_argument("--budget", type=float, default=1.0e6)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40,
                        help="steps of a timed round, published logits")
    parser.add_argument("--loop-steps", type=int, default=4,
                        help="steps of a timed round, teacher in the loop")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per trainer")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    config = load_config(args.config)
    family, depth = args.cell.split("-d")
    splits = data.load_splits(config.data)
    teacher = read_published_teacher(resolve_folder(args.teacher_logits), config, splits)
    members = len(teacher.manifests)
    count = args.batch_size * max(args.steps, args.loop_steps)
    order = np.random.default_rng([config.seed, 0]).permutation(len(splits.train_labels))[:count]
    images = data.augmented_views(splits.train_images[order], config.augment, 1)[0]
    logits = teacher.transfer_logits[0][order]
    labels = splits.train_labels[order].astype(np.int64)

    def batches(*arrays):
        return (tf.data.Dataset.from_tensor_slices(arrays).batch(args.batch_size)
                .repeat().prefetch(tf.data.AUTOTUNE))

    def optimizer():
        return keras.optimizers.SGD(0.005, momentum=0.9, nesterov=True)

    def student():
        return build_student(family, int(depth), args.budget, seed=0, spec=CIFAR10)

    published = Distiller(student())
    published.compile(optimizer=optimizer())
    recipe = config.teacher.airbench
    ensemble = build_ensemble([
        airbench.build_airbench_member(recipe, splits.train_images[:recipe.whitening_images],
                                       member_index=index, seed=config.seed, num_classes=10)
        for index in range(members)], flip_average=False)
    in_the_loop = keras.distillation.Distiller(
        teacher=ensemble, student=student(),
        distillation_losses=keras.distillation.LogitsDistillation(
            temperature=1.0, loss="mean_squared_error"),
        student_loss_weight=0.0)
    in_the_loop.compile(optimizer=optimizer(), loss="sparse_categorical_crossentropy")
    runs = {
        "published": (published, batches(images, logits, labels), args.steps),
        "in_the_loop": (in_the_loop, batches(images, labels), args.loop_steps),
    }
    timers = {name: EpochTimer() for name in runs}
    for model, dataset, steps in runs.values():  # warm-up: trace and build
        model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, shuffle=False)
    for _ in range(args.rounds):  # alternate so drifts in machine load hit both alike
        for name, (model, dataset, steps) in runs.items():
            model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0,
                      callbacks=[timers[name]], shuffle=False)
    steps_per_second = {name: runs[name][2] / statistics.median(timer.seconds)
                        for name, timer in timers.items()}
    print(json.dumps({
        "benchmark": "published_teacher_speed",
        "machine": runtime.describe(),
        "student": f"{args.cell} {published.student.count_params():,} params",
        "teacher": f"{members} airbench members {list(recipe.widths)}",
        "batch_size": args.batch_size,
        "published_steps_per_second": round(steps_per_second["published"], 3),
        "in_the_loop_steps_per_second": round(steps_per_second["in_the_loop"], 3),
        "ratio": round(steps_per_second["published"] / steps_per_second["in_the_loop"], 1),
    }))


if __name__ == "__main__":
    main()
