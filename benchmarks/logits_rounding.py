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

The float16 side is what a search reads: the committed members' logits (`--published`, the
first N members, N the `member_XX.keras` files in `--teacher`), averaged by the published
teacher's reader. The float32 side runs those same members (each checked against its
manifest's weights digest) over the same views as the transfer stage would, cached in
`--out`. Only the training targets differ: the teacher's validation and test logits (for the
agreement metric) are the published ones on both sides. Each finished run is added to
`--out`/results.json at once, and a rerun skips it. Prints one JSON object last.
"""

from __future__ import annotations

import mimic_tf  # noqa: F401  (first: sets oneDNN's default before TensorFlow loads)

# isort: split

import argparse
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
from mimic_tf.teachers import build_ensemble, load_model
from mimic_tf.teachers.ensemble import weights_fingerprint
from mimic_tf.teachers.published import read_manifest, read_published_teacher
from mimic_tf.transfer import build_transfer_set, published_transfer_set
from tuner.search.hypermodel import TrainingData


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, required=True,
                        help="a teacher folder with member_XX.keras (the members' weights)")
    parser.add_argument("--published", type=Path,
                        default=Path(__file__).resolve().parent.parent
                        / "results/cpu-replication-v2/teacher",
                        help="the same members published (member_XX.npz and .json; default: "
                        "the v2 campaign's)")
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
        paths = sorted(args.teacher.glob("member_*.keras"))
        if not paths:
            raise SystemExit(f"--teacher: {args.teacher} holds no member_XX.keras")
        members = [load_model(path) for path in paths]
        for index, member in enumerate(members):
            expected = read_manifest(args.published, index)["weights_sha256"]
            if weights_fingerprint(member) != expected:
                raise SystemExit(f"{paths[index]} is not the member published in "
                                 f"{args.published} (its weights digest differs)")
        results["teacher_members"] = len(members)
        published = read_published_teacher(args.published, config, splits,
                                            members=len(members))
        teacher = build_ensemble(members, flip_average=config.teacher.flip_average)
        exact = build_transfer_set(config, splits, teacher, args.out / "transfer", verbose=1,
                                   evaluation_logits=published.evaluation_logits)
        sets = {"float32": exact, "float16": published_transfer_set(config, splits, published)}
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
