"""Benchmark: which of airbench's techniques pay on this machine, one switched off at a time.

Claim checked: each technique the airbench family keeps (`mimic_tf/teachers/airbench.py`)
raises test accuracy at a fixed number of epochs, or costs nothing. Variants: `full` (every
technique),
then `full` without one of whitening, dirac init, the 64x BatchNorm-bias rate, lookahead,
alternating flips; flip test-time augmentation is read off every variant (accuracy with and
without it). Every variant trains one member from the same seed on the same data for the
same epochs, one after the other in one process.

Reference run (docs/teacher.md): 2-core AMD EPYC (AVX2), no GPU, TF 2.21 / Keras 3.15,
JPEG copy of CIFAR-10, one run of the command below; differences under about 0.5 points are
within seed-to-seed noise at this size. Prints one JSON object last: variant -> accuracies,
img/s and seconds.

    python benchmarks/airbench_ablation.py --widths 32,64,64 --epochs 4
"""

from __future__ import annotations

import mimic_tf  # noqa: F401  (first: sets oneDNN's default before TensorFlow loads)

# isort: split

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

from mimic_tf import data, teachers
from mimic_tf.config import load_config

VARIANTS = {  # name -> AirbenchConfig fields changed from the full recipe
    "full": {},
    "no_whitening": {"whiten": False},
    "no_dirac": {"dirac": False},
    "no_bias_lr_scale": {"bias_lr_scale": 1.0},
    "no_lookahead": {"lookahead_every": 0},
    "no_alternating_flip": {"alternating_flip": False},
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="default")
    parser.add_argument("--widths", default="32,64,64", help="the three group widths")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma list of {', '.join(VARIANTS)}")
    parser.add_argument("--data", default=None)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    config = load_config(args.config, overrides={
        "data.source": args.data, "teacher.family": "airbench", "teacher.members": 1,
        "teacher.airbench.widths": [int(width) for width in args.widths.split(",")],
        "teacher.airbench.epochs": args.epochs,
    })
    splits = data.load_splits(config.data)
    results = {}
    for name in args.variants.split(","):
        airbench_config = dataclasses.replace(config.teacher.airbench, **VARIANTS[name])
        variant = dataclasses.replace(
            config, teacher=dataclasses.replace(config.teacher, airbench=airbench_config))
        print(f"variant {name}", flush=True)
        with tempfile.TemporaryDirectory() as directory:
            record = teachers.train_member(variant, splits, 0, Path(directory), verbose=2)
            member = teachers.load_model(Path(directory) / "member_00.keras")
        plain, flipped = teachers.plain_and_flip_averaged_logits(member, splits.test_images)
        results[name] = {
            "test_accuracy_flip_tta": round(teachers.accuracy(flipped, splits.test_labels), 4),
            "test_accuracy": round(teachers.accuracy(plain, splits.test_labels), 4),
            "images_per_second": record["images_per_second"],
            "train_seconds": record["train_seconds"],
        }
        print(json.dumps({name: results[name]}), flush=True)
    print(json.dumps({"widths": args.widths, "epochs": args.epochs, "variants": results}))


if __name__ == "__main__":
    main()
