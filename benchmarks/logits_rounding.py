"""Experiment: does storing the teacher's logits in float16 cost a mimic student accuracy?

A published teacher (`mimic_tf.teachers.published`) keeps its members' logits in float16, about
three significant digits, so that a member fits in the repository; the campaign's searches
learn from the mean of those instead of the float32 logits its transfer stage would have
computed. This trains one student with fixed hyperparameters (by default the best trial of a
committed search) on both, per seed, on the same images in the same order, and reports the
validation accuracy per epoch and the test accuracy of the best epoch of each run, so the
rounding's effect is read beside the seeds' spread:

    python benchmarks/logits_rounding.py --teacher ~/mimic-tf-runs/cpu-replication-v2/teacher \
        --cell mlp-d1-b316k --seeds 0,1 --views 1 --out ~/mimic-tf-runs/logits-rounding

The teacher is the folder's members trained so far, averaged as the ensemble would; its
float32 transfer set (`--views` views) is cached in `--out`. The float16 side rounds each
member's logits to float16 and averages them, as a published teacher's reader does. Each
finished run is added to `--out`/results.json at once, and a rerun skips it. Prints one JSON
object last.
"""

from __future__ import annotations

import mimic_tf  # noqa: F401  (first: sets oneDNN's default before TensorFlow loads)

# isort: split

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
from student_precision import (  # beside this script
    DEFAULT_TRIALS,
    RESULTS_FILE,
    best_trial_hyperparameters,
    record_run,
    train_once,
)
from trial_overhead import chosen_cells

from mimic_tf import data, runtime
from mimic_tf.config import load_config
from mimic_tf.teachers import build_ensemble, load_model, predict_logits
from mimic_tf.transfer import build_transfer_set
from tuner.search.hypermodel import TrainingData


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, required=True,
                        help="a teacher folder with member_XX.keras")
    parser.add_argument("--config", default="cpu-replication-v2", help="config name or path")
    parser.add_argument("--data", default=None, help="data source (default: the config's)")
    parser.add_argument("--cell", default="mlp-d1-b316k", help="the student's cell")
    parser.add_argument("--trials", type=Path, default=DEFAULT_TRIALS,
                        help="a results.csv whose best trial of the cell gives the "
                             "hyperparameters (default: the first teacher's searches)")
    parser.add_argument("--seeds", default="0,1", help="comma list of the students' seeds")
    parser.add_argument("--views", type=int, default=1, help="transfer-set views (default 1)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epoch cap (default: the config's for the cell's family)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/logits-rounding"),
                        help="where the transfer set and results.json go")
    return parser.parse_args()


def rounded(members: list, images_of_split: dict[str, np.ndarray], transfer, config):
    """The transfer set with every member's logits rounded to float16, then averaged."""
    views = transfer.views if transfer.views is not None else data.augmented_views(
        transfer.splits.train_images, config.augment, config.transfer.views)
    flip = config.teacher.flip_average
    logits = np.zeros_like(transfer.logits)
    evaluation = {split: 0.0 for split in images_of_split}
    for member in members:
        for view in range(len(views)):
            logits[view] += predict_logits(member, views[view]).astype(np.float16)
        single = build_ensemble([member], flip_average=flip)
        for split, images in images_of_split.items():
            evaluation[split] = evaluation[split] + predict_logits(single, images).astype(
                np.float16).astype(np.float32)
    count = len(members)
    return dataclasses.replace(transfer, logits=logits / count,
                               validation_logits=evaluation["validation"] / count,
                               test_logits=evaluation["test"] / count)


def main() -> None:
    args = parse_args()
    config = load_config(args.config, overrides={"transfer.views": args.views,
                                                      "data.source": args.data,
                                                      "transfer.flip_average": "false"})
    (cell,) = chosen_cells(config, args.cell)
    hyperparameters = best_trial_hyperparameters(args.trials, cell)
    epochs = args.epochs or config.student.epochs_for(cell.family)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    results_path = args.out / RESULTS_FILE
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    results.update({"teacher": str(args.teacher), "cell": cell.name, "views": args.views,
                    "epoch_cap": epochs, "hyperparameters": hyperparameters,
                    "runtime": runtime.describe()})
    runs = results.setdefault("runs", {})
    todo = [(logits, s) for s in seeds for logits in ("float32", "float16")
            if f"{logits}/seed{s}" not in runs]
    if todo:
        splits = data.load_splits(config.data)
        members = [load_model(path) for path in sorted(args.teacher.glob("member_*.keras"))]
        if not members:
            raise SystemExit(f"--teacher: {args.teacher} holds no member_XX.keras")
        results["teacher_members"] = len(members)
        teacher = build_ensemble(members, flip_average=config.teacher.flip_average)
        exact = build_transfer_set(config, splits, teacher, args.out / "transfer", verbose=1)
        sets = {"float32": exact, "float16": rounded(
            members, {"validation": splits.validation_images, "test": splits.test_images},
            exact, config)}
        difference = np.abs(sets["float16"].logits - exact.logits)
        results["rounding"] = {"max_abs": float(difference.max()),
                               "mean_abs": float(difference.mean()),
                               "argmax_changed": float(np.mean(
                                   sets["float16"].logits.argmax(-1) != exact.logits.argmax(-1)))}
        for logits, seed in todo:
            print(f"{cell.name}: {logits} logits, seed {seed}, up to {epochs} epochs", flush=True)
            training = TrainingData.from_transfer_set(sets[logits], config.student.batch_size)
            run = train_once(cell, hyperparameters, config.student, seed, training, epochs)
            record_run(results, results_path, f"{logits}/seed{seed}",
                       {"logits": logits, "seed": seed, **run})
    print(json.dumps(results))


if __name__ == "__main__":
    main()
