"""Experiment: does mixed bfloat16 cost a mimic student accuracy? One trial in each precision.

`precision: auto` trains students in mixed bfloat16 on CPUs with bfloat16 instructions. The
MLP searches of the AMX Xeon's teacher, so trained, ended 0.6-5.1 points under the float32
ones of the first teacher. This trains one student, with fixed hyperparameters (by default the
best trial of a committed search), once per precision and seed, on the same transfer set and
batch stream, and reports each run's validation accuracy per epoch and the test accuracy of
its best epoch, so the precision's effect is read beside the seeds' spread:

    python benchmarks/student_precision.py --teacher ~/mimic-tf-runs/cpu-replication-v2/teacher \
        --cell mlp-d1-b316k --seeds 0,1 --out ~/mimic-tf-runs/student-precision

The teacher is the folder's ensemble if it is complete, else the members trained so far,
averaged as the ensemble would. Its transfer set (`--views` views of the training split) is
cached in `--out` and reused by a rerun of the same teacher; each finished run is added to
`--out`/results.json at once, and a rerun skips it. Prints one JSON object last.
"""

from __future__ import annotations

import mimic_tf  # noqa: F401  (first: sets oneDNN's default before TensorFlow loads)

# isort: split

import argparse
import csv
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import keras
from longer_trials import BestEpochs  # beside this script
from trial_overhead import chosen_cells

from mimic_tf import data, runtime
from mimic_tf.budgets import search_space
from mimic_tf.config import load_config
from mimic_tf.files import atomic_write_text
from mimic_tf.teachers import ENSEMBLE_FILE, build_ensemble, load_model, saved_evaluation_logits
from mimic_tf.transfer import build_transfer_set
from tuner.search.cells import Cell
from tuner.search.hypermodel import (
    OBJECTIVE,
    StudentHyperModel,
    TrainingData,
    fixed_hyperparameters,
)

HERE = Path(__file__).resolve().parent
RESULTS_FILE = "results.json"
DEFAULT_TRIALS = HERE.parent / "results/cpu-replication-v2/lost-runs/first-teacher/results.csv"
OPTIMISATION = ("learning_rate", "momentum", "input_scale", "init_scale")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", type=Path, required=True,
                        help="a teacher folder (ensemble.keras, or member_XX.keras so far)")
    parser.add_argument("--config", default="cpu-replication-v2", help="config name or path")
    parser.add_argument("--data", default=None,
                        help="data source (default: the config's): auto | synthetic | ...")
    parser.add_argument("--cell", default="mlp-d1-b316k", help="the student's cell")
    parser.add_argument("--trials", type=Path, default=DEFAULT_TRIALS,
                        help="a results.csv whose best trial of the cell gives the "
                             "hyperparameters (default: the first teacher's searches)")
    parser.add_argument("--hyperparameters", default=None,
                        help="JSON of the hyperparameters instead of --trials")
    parser.add_argument("--precisions", default="float32,mixed_bfloat16",
                        help="comma list of student precisions")
    parser.add_argument("--seeds", default="0", help="comma list of the students' seeds")
    parser.add_argument("--views", type=int, default=1, help="transfer-set views (default 1)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epoch cap (default: the config's for the cell's family)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/student-precision"),
                        help="where the transfer set and results.json go")
    args = parser.parse_args()
    if args.views < 1:
        parser.error(f"--views is {args.views}; pass 1 or more")
    return args


def best_trial_hyperparameters(path: Path, cell: Cell) -> dict[str, Any]:
    """The rank-1 trial's hyperparameters of `cell` in a results.csv (`tuner.report`'s)."""
    if not path.is_file():
        raise SystemExit(f"--trials: no file {path}; pass a results.csv or --hyperparameters")
    with path.open(newline="") as stream:
        rows = [row for row in csv.DictReader(stream)
                if row["cell"] == cell.name and row.get("rank") == "1"]
    if not rows:
        raise SystemExit(f"--trials: {path} has no best trial of {cell.name}")
    names = [*OPTIMISATION, *search_space(cell.family, cell.depth, cell.budget)]
    values: dict[str, Any] = {}
    for name in names:
        text = rows[0].get(name, "")
        if text == "":
            raise SystemExit(f"--trials: {path} has no {name} for {cell.name}")
        number = float(text)
        values[name] = int(number) if number.is_integer() and name not in OPTIMISATION else number
    return values


def teacher_model(folder: Path, config) -> tuple[keras.Model, int]:
    """The folder's ensemble, or its members so far averaged as the ensemble would be."""
    if (folder / ENSEMBLE_FILE).is_file():
        model = load_model(folder / ENSEMBLE_FILE)
        return model, sum(isinstance(layer, keras.Model) for layer in model.layers)
    members = [load_model(path) for path in sorted(folder.glob("member_*.keras"))]
    if not members:
        raise SystemExit(f"--teacher: {folder} has no {ENSEMBLE_FILE} and no member_XX.keras")
    return build_ensemble(members, flip_average=config.teacher.flip_average), len(members)


def train_once(cell: Cell, hyperparameters: dict[str, Any], student_config, seed: int,
               training: TrainingData, epochs: int) -> dict[str, Any]:
    """One student trained from scratch; its curve and the test accuracy of its best epoch."""
    keras.backend.clear_session()
    hp = fixed_hyperparameters(hyperparameters)
    hypermodel = StudentHyperModel(cell, student_config, seed=seed, spec=training.spec)
    distiller = hypermodel.build(hp)
    best = BestEpochs(epochs)
    started = time.perf_counter()
    fitted = hypermodel.fit(hp, distiller, training, epochs=epochs, callbacks=[best])
    seconds = time.perf_counter() - started
    value, epoch, weights = best.best["within_new_cap"]
    distiller.student.set_weights(weights)
    metrics = distiller.evaluate(training.test, verbose=0, return_dict=True)
    curve = [round(float(v), 4) for v in fitted.history.get(OBJECTIVE, [])]
    return {"val_accuracy_per_epoch": curve, "epochs_run": len(curve),
            "best_epoch": epoch, "val_accuracy": round(value, 4),
            "test_accuracy": round(float(metrics["accuracy"]), 4),
            "seconds": round(seconds, 1),
            "seconds_per_epoch": round(seconds / max(len(curve), 1), 2)}


def main() -> None:
    args = parse_args()
    config = load_config(args.config, overrides={"transfer.views": args.views,
                                                      "data.source": args.data})
    (cell,) = chosen_cells(config, args.cell)
    hyperparameters = (json.loads(args.hyperparameters) if args.hyperparameters
                       else best_trial_hyperparameters(args.trials, cell))
    epochs = args.epochs or config.student.epochs_for(cell.family)
    precisions = [p for p in args.precisions.split(",") if p]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    results_path = args.out / RESULTS_FILE
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    results.update({"teacher": str(args.teacher), "cell": cell.name, "views": args.views,
                    "epoch_cap": epochs, "hyperparameters": hyperparameters,
                    "runtime": runtime.describe()})
    runs = results.setdefault("runs", {})
    todo = [(p, s) for s in seeds for p in precisions if f"{p}/seed{s}" not in runs]
    if todo:
        splits = data.load_splits(config.data)
        teacher, members = teacher_model(args.teacher, config)
        results["teacher_members"] = members
        transfer = build_transfer_set(
            config, splits, teacher, args.out / "transfer", verbose=1,
            evaluation_logits=saved_evaluation_logits(args.teacher, teacher))
        del teacher
        training = TrainingData.from_transfer_set(transfer, config.student.batch_size)
        for precision, seed in todo:
            print(f"{cell.name}: {precision}, seed {seed}, up to {epochs} epochs", flush=True)
            student_config = dataclasses.replace(config.student, precision=precision)
            run = train_once(cell, hyperparameters, student_config, seed, training, epochs)
            record_run(results, results_path, f"{precision}/seed{seed}",
                       {"precision": precision, "seed": seed, **run})
    print(json.dumps(results))


def record_run(results: dict[str, Any], path: Path, key: str, run: dict[str, Any]) -> None:
    """Add one finished run to `results["runs"]`, print it, and write the results at once
    (a rerun skips it)."""
    results["runs"][key] = run
    print(json.dumps({key: run}), flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
