"""Experiment: a committed search's best student, trained again under variations.

What separates a search's result from the paper's? Its best trial (hyperparameters from the
committed `results.csv`, so no run folder is needed) is trained again from scratch on the
published teacher's logits, once an *arm*:

- `campaign:K`: the experiment's own plateau schedule and epoch cap, on the first K views of
  its transfer set (`campaign:8` on an 8-view campaign is the search's trial again);
- `paper:K`: the paper's schedule (halve the rate after 10 epochs without improvement, no cut
  within 8 of one, stop after 30 without improvement; `mimic_tf.config.ScheduleConfig`'s
  defaults) up to `--epochs`, on the first K views.

and under each of `--seeds` (the students' initialisation; the data order is the campaign's).
Fewer views than the campaign's show what the transfer set's size is worth, the paper's
schedule what longer training is worth, other seeds how far one trial's accuracy is from
another's of the same hyperparameters. `--set NAME=VALUE` changes one of the best trial's
hyperparameters (e.g. `momentum=0.96`): what a value the search never tried is worth.

    python benchmarks/retrain_best.py --results results/cpu-replication-v2 \
        --cells mlp-d4-b1M --arms campaign:8,paper:8,paper:2 --epochs 150

Each run (cell, arm, seed) reports every epoch's training and validation mimic loss and
validation accuracy, and the test accuracy at its best validation epoch (as the searches
report), and prints a line an epoch as the searches do, with the ETA of the runs left. Each
finished run is added to `--out`/results.json at once, and a rerun skips it; a run killed part
way starts again. Prints a markdown table of every run there, then one JSON object.
"""

from __future__ import annotations

import mimic_tf  # noqa: F401  (first: sets oneDNN's default before TensorFlow loads)

# isort: split

import argparse
import collections
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mimic_tf import data, runtime
from mimic_tf.budgets import search_space
from mimic_tf.config import ExperimentConfig, ScheduleConfig, load_config
from mimic_tf.files import atomic_write_text
from mimic_tf.teachers.published import read_published_teacher
from mimic_tf.transfer import TransferSet, published_transfer_set
from tuner.search.cells import Cell
from tuner.search.hypermodel import (
    OBJECTIVE,
    StudentHyperModel,
    TrainingData,
    fixed_hyperparameters,
)
from tuner.search.kept import best_values, read_rows
from tuner.search.progress import Progress

RESULTS_FILE = "results.json"
OPTIMISER_HYPERPARAMETERS = ("learning_rate", "momentum", "input_scale", "init_scale")
BASELINE_HYPERPARAMETERS = ("dropout", "weight_decay")
SCHEDULES = ("campaign", "paper")


@dataclasses.dataclass(frozen=True)
class Arm:
    """How a best trial is trained again: which schedule, on how many views."""

    schedule: str  # "campaign" or "paper"
    views: int

    @property
    def name(self) -> str:
        return f"{self.schedule}:{self.views}"

    @classmethod
    def parse(cls, text: str, most_views: int) -> Arm:
        schedule, _, views = text.partition(":")
        if schedule not in SCHEDULES or not views.isdigit():
            raise SystemExit(f"arm {text!r}: write SCHEDULE:VIEWS, SCHEDULE one of "
                             f"{', '.join(SCHEDULES)}, e.g. paper:8")
        if not 1 <= int(views) <= most_views:
            raise SystemExit(f"arm {text!r}: the transfer set has {most_views} views; "
                             f"ask for 1 to {most_views}")
        return cls(schedule, int(views))


class BestEpoch(keras.callbacks.Callback):
    """Keeps the student's weights of its best validation epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.value, self.epoch, self.weights = -np.inf, 0, None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        value = float((logs or {}).get(OBJECTIVE, float("nan")))
        if np.isfinite(value) and value > self.value:
            self.value, self.epoch = value, epoch + 1
            self.weights = self.model.student.get_weights()


def best_trial(rows: dict[str, list[dict[str, str]]], name: str) -> tuple[Cell, dict[str, Any]]:
    """The cell `name` and its best trial's hyperparameter values, from committed rows."""
    if name not in rows:
        raise SystemExit(f"no committed search {name!r}; the results hold {sorted(rows)}")
    best = best_values(rows[name])
    cell = Cell(best["family"], int(best["depth"]), float(best["budget"]), best["loss"])
    names = [*OPTIMISER_HYPERPARAMETERS, *search_space(cell.family, cell.depth, cell.budget)]
    if cell.is_baseline:
        names += BASELINE_HYPERPARAMETERS
    return cell, {key: best[key] for key in names}


def override(values: dict[str, Any], settings: list[str]) -> dict[str, Any]:
    """The best trial's values with each `NAME=VALUE` of `settings` put in their place."""
    changed = dict(values)
    for setting in settings:
        name, _, text = setting.partition("=")
        if name not in values:
            raise SystemExit(f"--set {setting!r}: the best trial has no hyperparameter {name!r}; "
                             f"it has {', '.join(sorted(values))}")
        try:
            changed[name] = type(values[name])(float(text))
        except ValueError:
            raise SystemExit(f"--set {setting!r}: write NAME=NUMBER, e.g. momentum=0.96") from None
    return changed


def first_views(transfer: TransferSet, views: int) -> TransferSet:
    """The transfer set cut to its first `views` views (the same images and logits)."""
    return dataclasses.replace(
        transfer, order=transfer.order[:views], logits=transfer.logits[:views],
        views=None if transfer.views is None else transfer.views[:views])


def train(cell: Cell, values: dict[str, Any], arm: Arm, seed: int, config: ExperimentConfig,
          transfer: TransferSet, epochs: int, progress: Progress | None = None) -> dict[str, Any]:
    """One run: the best trial's student trained under `arm` with initialisation `seed`
    (`progress`: a line an epoch, as the searches print)."""
    student = config.student
    if arm.schedule == "paper":
        student = dataclasses.replace(student, schedule=ScheduleConfig(epochs=epochs),
                                      mlp_epochs=0, cnn_epochs=0)
    training = TrainingData.from_transfer_set(first_views(transfer, arm.views),
                                              student.batch_size)
    keras.backend.clear_session()
    hp = fixed_hyperparameters(values)
    hypermodel = StudentHyperModel(cell, student, seed=seed, spec=training.spec,
                                   progress=progress.trial_callback if progress else None,
                                   steps_per_execution=runtime.steps_per_execution(
                                       training.steps_per_epoch))
    distiller = hypermodel.build(hp)
    best = BestEpoch()
    started = time.perf_counter()
    fitted = hypermodel.fit(hp, distiller, training, trial_id="0", callbacks=[best])
    seconds = time.perf_counter() - started
    test = {}
    if best.weights is not None:
        distiller.student.set_weights(best.weights)
        test = distiller.evaluate(training.test, verbose=0, return_dict=True)
    history = {key: [round(float(v), 4) for v in values]
               for key, values in fitted.history.items()
               if key in ("loss", OBJECTIVE, "val_loss", "learning_rate")}
    at_best = {key: history[key][best.epoch - 1] for key in ("loss", "val_loss")
               if best.epoch and key in history}
    return {
        "cell": cell.name, "arm": arm.name, "seed": seed,
        "epoch_cap": student.epochs_for(cell.family), "epochs_run": len(history.get(OBJECTIVE, [])),
        "best_epoch": best.epoch,
        "val_accuracy": round(best.value, 4) if best.weights is not None else None,
        "test_accuracy": round(float(test["accuracy"]), 4) if test else None,
        "train_loss_at_best": at_best.get("loss"), "val_loss_at_best": at_best.get("val_loss"),
        "seconds": round(seconds, 1), "history": history,
    }


def markdown_table(runs: dict[str, dict[str, Any]]) -> str:
    """One row a run: epochs, the best epoch's accuracies (%) and mimic losses, seconds."""
    lines = ["| student | arm | seed | epochs / cap | best epoch | val % | test % "
             "| train loss | val loss | seconds |", "|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs.values():
        accuracies = [f"{100 * run[key]:.2f}" if run[key] is not None else ""
                      for key in ("val_accuracy", "test_accuracy")]
        arm = " ".join([run["arm"], *run.get("set", [])])
        lines.append(f"| {run['cell']} | {arm} | {run['seed']} | {run['epochs_run']} / "
                     f"{run['epoch_cap']} | {run['best_epoch']} | {' | '.join(accuracies)} | "
                     f"{run['train_loss_at_best']} | {run['val_loss_at_best']} | "
                     f"{run['seconds']:.0f} |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results/cpu-replication-v2"),
                        help="a committed results folder: results.csv, config.yaml, teacher/")
    parser.add_argument("--cells", required=True, help="comma list of searches, e.g. mlp-d4-b1M")
    parser.add_argument("--arms", default="campaign:8",
                        help="comma list of SCHEDULE:VIEWS (campaign or paper), e.g. paper:8")
    parser.add_argument("--seeds", default="0", help="comma list of initialisation seeds")
    parser.add_argument("--epochs", type=int, default=150,
                        help="the epoch cap of the paper's schedule (it may stop sooner)")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="change one of the best trial's hyperparameters (repeatable), "
                             "e.g. momentum=0.96")
    parser.add_argument("--out", type=Path, default=Path("/tmp/retrain-best"),
                        help="where results.json goes")
    args = parser.parse_args()
    if args.epochs < 1:
        parser.error(f"--epochs is {args.epochs}; pass a cap of 1 or more epochs")
    return args


def main() -> None:
    args = parse_args()
    config = load_config(args.results / "config.yaml")
    rows = read_rows(args.results / "results.csv")
    cells = [(cell, override(values, args.set)) for cell, values in
             (best_trial(rows, name) for name in args.cells.split(",") if name)]
    arms = [Arm.parse(text, config.transfer.views) for text in args.arms.split(",") if text]
    seeds = [int(seed) for seed in args.seeds.split(",") if seed]
    results_path = args.out / RESULTS_FILE
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    results.setdefault("results", str(args.results))
    results.setdefault("runtime", runtime.describe())
    runs = results.setdefault("runs", {})

    def key(cell: Cell, arm: Arm, seed: int) -> str:
        cap = f"@{args.epochs}" if arm.schedule == "paper" else ""
        changes = "".join(f" {setting}" for setting in args.set)
        return f"{cell.name} {arm.name}{cap} seed {seed}{changes}"

    todo = [(cell, values, arm, seed) for cell, values in cells for arm in arms
            for seed in seeds if key(cell, arm, seed) not in runs]
    if todo:
        splits = data.load_splits(config.data)
        teacher = read_published_teacher(args.results / "teacher", config, splits)
        transfer = published_transfer_set(config, splits, teacher)
        # The ETA counts the runs left of each family at its finished runs' mean.
        progress = Progress(collections.Counter(cell.family for cell, *_ in todo), args.epochs)
        for index, (cell, values, arm, seed) in enumerate(todo, start=1):
            name = key(cell, arm, seed)
            print(f"{name}: training", flush=True)
            progress.begin_search(cell, index, len(todo), max_trials=1, finished=0)
            runs[name] = train(cell, values, arm, seed, config, transfer, args.epochs, progress)
            if args.set:
                runs[name]["set"] = list(args.set)
            summary = {k: v for k, v in runs[name].items() if k != "history"}
            print(json.dumps({name: summary}), flush=True)
            args.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(results_path, json.dumps(results, indent=2) + "\n")
    print(markdown_table(runs))
    print(json.dumps(results))


if __name__ == "__main__":
    main()
