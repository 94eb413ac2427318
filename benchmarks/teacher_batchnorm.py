"""Experiment: do a trained airbench member's BatchNorm statistics cost it accuracy?

The port ends every epoch on an incomplete batch (40,000 = 78 x 512 + 64 images), and with
BatchNorm's fast statistics (momentum 0.6) that batch gets 40% of each moving mean and
variance right before the evaluation; airbench94 drops the incomplete batch. This measures
whether the final member pays for it: its validation and test accuracy (the image alone and
flip-averaged) with

    saved        the statistics it was saved with
    ema          re-estimated over `--ema-batches` full batches of its training augmentation,
                 at its own momentum (the statistics an epoch ending on a full batch leaves)
    population   the plain mean of `--population-batches` full batches' statistics

Only the statistics change; the member file is not written.

    python benchmarks/teacher_batchnorm.py \
        --member ~/mimic-tf-runs/cpu-replication-v2/teacher/member_00.keras

Reference run: results/cpu-replication-v2/lost-runs/campaign-log.md. Prints one JSON object last.
"""

from __future__ import annotations

import mimic_tf  # noqa: F401  (first: sets oneDNN's default before TensorFlow loads)

# isort: split

import argparse
import json
import time
from pathlib import Path

import keras

from mimic_tf import data, runtime
from mimic_tf.config import load_config
from mimic_tf.teachers import accuracy, load_model, plain_and_flip_averaged_logits
from mimic_tf.teachers.airbench_recipe import flip_translate_dataset

SPLITS = ("validation", "test")


def batchnorm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    return [layer for layer in model._flatten_layers()
            if isinstance(layer, keras.layers.BatchNormalization)]


def reestimate(model: keras.Model, batches, population: bool) -> None:
    """Run `batches` through `model` in training mode, which moves only the BatchNorm
    statistics: at the layers' own momentum, or as a running plain mean (`population`)."""
    layers = batchnorm_layers(model)
    momentum = [layer.momentum for layer in layers]
    for index, (images, _) in enumerate(batches):
        if population:  # moving = i/(i+1) * moving + 1/(i+1) * batch: the mean of the batches
            for layer in layers:
                layer.momentum = index / (index + 1)
        model(images, training=True)
    for layer, value in zip(layers, momentum, strict=True):
        layer.momentum = value


def evaluate(model: keras.Model, splits: data.Splits) -> dict[str, float]:
    """Accuracy (%) on each split, the image alone and averaged with its mirror."""
    record = {}
    for split in SPLITS:
        images, labels = getattr(splits, f"{split}_images"), getattr(splits, f"{split}_labels")
        plain, flip = plain_and_flip_averaged_logits(model, images)
        record[f"{split}_none"] = round(100 * accuracy(plain, labels), 2)
        record[f"{split}_flip"] = round(100 * accuracy(flip, labels), 2)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--member", type=Path, required=True,
                        help="an airbench member_XX.keras, with config.yaml beside it")
    parser.add_argument("--ema-batches", type=int, default=10)
    parser.add_argument("--population-batches", type=int, default=40)
    parser.add_argument("--seed", type=int, default=123, help="of the augmented batches")
    args = parser.parse_args()
    config = load_config(args.member.parent / "config.yaml")
    if config.teacher.family != "airbench":
        raise SystemExit(f"{args.member} is a {config.teacher.family} member; this measures "
                         "airbench members")
    recipe = config.teacher.airbench
    splits = data.load_splits(config.data)

    def training_batches(count: int):
        return flip_translate_dataset(
            splits.train_images, splits.train_labels, batch_size=recipe.batch_size,
            translate=recipe.translate, alternating_flip=recipe.alternating_flip,
            seed=args.seed, num_classes=splits.spec.num_classes,
            first_epoch=recipe.epochs - 1).take(count)

    results: dict = {"member": str(args.member), "runtime": runtime.describe()}
    for name, count, population in (("saved", 0, False), ("ema", args.ema_batches, False),
                                    ("population", args.population_batches, True)):
        started = time.perf_counter()
        member = load_model(args.member)
        if count:
            reestimate(member, training_batches(count), population)
        results[name] = {"batches": count, **evaluate(member, splits),
                         "seconds": round(time.perf_counter() - started)}
        print(json.dumps({name: results[name]}), flush=True)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
