"""Benchmark: the two teacher families trained side by side for the same wall-clock budget.

Claim checked: for the same minutes of this machine, a member of the airbench family
(`teacher.family: airbench`) reaches a higher test accuracy than a member of the paper's
family (`teacher.family: paper`). Both read the same config (`--config`, default
`configs/default.yaml`, whose teacher section holds both families' settings), the same data
and splits, in one process, one after the other.

Method: for each family, a short calibration fit measures its training img/s; the whole
epochs that fit in `--seconds` at that rate (at least one) are then trained from scratch with
the family's own recipe (`teachers.train_member`: the paper's plateau schedule, airbench's
warm-up-then-decay schedule over exactly those epochs) and the member is evaluated on the
test split (airbench with its flip test-time augmentation; without it too). Wall time counts
training only.

Reference run (docs/teacher.md): 2-core AMD EPYC (AVX2, no AVX-512 or AMX), no GPU,
TF 2.21 / Keras 3.15, JPEG copy of CIFAR-10, one run of
`python benchmarks/teacher_speed.py --seconds 240`. Prints one JSON object last, with
`accuracy_paper_family`, `accuracy_new_family` and `images_per_second` for each.
"""

from __future__ import annotations

import mimic_tf  # noqa: F401  (first: sets oneDNN's default before TensorFlow loads)

# isort: split

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from mimic_tf import data, teachers
from mimic_tf.config import ExperimentConfig, load_config

CALIBRATION_STEPS = 6  # timed steps after 2 warm-up steps


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="default", help="config with both families' keys")
    parser.add_argument("--seconds", type=float, default=240.0,
                        help="training wall-clock budget of each family (default 240)")
    parser.add_argument("--data", default=None, help="data source (default: the config's)")
    return parser.parse_args()


def with_family(config: ExperimentConfig, family: str, epochs: int) -> ExperimentConfig:
    """`config` with one member of `family` trained for `epochs` epochs."""
    teacher = dataclasses.replace(config.teacher, family=family, members=1)
    if family == "airbench":
        teacher = dataclasses.replace(
            teacher, airbench=dataclasses.replace(teacher.airbench, epochs=epochs))
    else:
        teacher = dataclasses.replace(
            teacher, schedule=dataclasses.replace(teacher.schedule, epochs=epochs))
    return dataclasses.replace(config, teacher=teacher)


def calibrate(config: ExperimentConfig, splits: data.Splits) -> float:
    """Training images per second of one member of `config`'s family (no validation)."""
    plan = teachers.training_plan(config, splits, member_index=0)
    plan.model.fit(plan.train, epochs=1, steps_per_epoch=2, verbose=0, shuffle=False)
    started = time.perf_counter()
    plan.model.fit(plan.train, epochs=1, steps_per_epoch=CALIBRATION_STEPS, verbose=0,
                   shuffle=False)
    return CALIBRATION_STEPS * plan.batch_size / (time.perf_counter() - started)


def run_family(config: ExperimentConfig, splits: data.Splits, family: str,
               seconds: float) -> dict:
    """Train one member of `family` for about `seconds`; its accuracy and speed."""
    rate = calibrate(with_family(config, family, 1), splits)
    epochs = max(1, int(seconds * rate / len(splits.train_labels)))  # never over budget
    member_config = with_family(config, family, epochs)
    print(f"{family}: {rate:,.0f} img/s calibrated, {epochs} epochs fill {seconds:.0f}s",
          flush=True)
    with tempfile.TemporaryDirectory() as directory:
        record = teachers.train_member(member_config, splits, 0, Path(directory), verbose=2)
        member = teachers.load_model(Path(directory) / "member_00.keras")
    if member_config.teacher.flip_average:
        plain, logits = teachers.plain_and_flip_averaged_logits(member, splits.test_images)
    else:
        plain = logits = teachers.predict_logits(member, splits.test_images)
    return {
        "family": family,
        "epochs": epochs,
        "params": record["params"],
        "train_seconds": record["train_seconds"],
        "images_per_second": record["images_per_second"],
        "test_accuracy": round(teachers.accuracy(logits, splits.test_labels), 4),
        "test_accuracy_without_flip": round(teachers.accuracy(plain, splits.test_labels), 4),
    }


def main() -> None:
    args = parse_args()
    config = load_config(args.config, overrides={"data.source": args.data})
    splits = data.load_splits(config.data)
    results = {family: run_family(config, splits, family, args.seconds)
               for family in ("paper", "airbench")}
    for result in results.values():
        print(json.dumps(result))
    print(json.dumps({
        "seconds_budget": args.seconds,
        "accuracy_paper_family": results["paper"]["test_accuracy"],
        "accuracy_new_family": results["airbench"]["test_accuracy"],
        "images_per_second": {family: result["images_per_second"]
                              for family, result in results.items()},
        "train_seconds": {family: result["train_seconds"] for family, result in results.items()},
        "epochs": {family: result["epochs"] for family, result in results.items()},
        "accuracy_gain": round(float(np.subtract(results["airbench"]["test_accuracy"],
                                                 results["paper"]["test_accuracy"])), 4),
    }))


if __name__ == "__main__":
    main()
