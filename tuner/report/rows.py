"""An experiment's trials as rows, each search's summary, and `results.csv`.

Everything is read back from disk through `tuner.artifacts` (`searches/*/cell.json`,
KerasTuner's `trial.json` files read as plain JSON, `evaluation.json`, `teacher/teacher.json`),
so any set of finished or half-finished searches, MLP and CNN alike, makes one table, and no
TensorFlow is imported to make it. `CellSummary` is one search's result: the table
(`markdown.py`), the figure (`figure.py`) and the findings (`findings.py`, from
`results.csv`) read it.

    rows = collect_rows(layout); summaries = summarise(rows); write_csv(rows, path)
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mimic_tf.config import ConfigError, SearchConfig, load_config
from mimic_tf.data.spec import DatasetSpec
from mimic_tf.files import atomic_write_text
from mimic_tf.layout import ExperimentLayout
from tuner import artifacts
from tuner.artifacts import TrialEvaluation, TrialHistory, TrialRecord
from tuner.report.convergence import (
    Convergence,
)
from tuner.search.cells import Cell

OPTIMISATION_COLUMNS = ("learning_rate", "momentum", "input_scale", "init_scale")
CSV_COLUMNS = (
    "cell", "family", "depth", "budget", "loss", "params", "trial_id", "rank", "status",
    "val_accuracy", "test_accuracy", "test_agreement", "widths", "epochs", "epoch_cap",
    "val_gain_last_2", "train_seconds", "teacher", *OPTIMISATION_COLUMNS,
)
TEACHER_DIGEST_CHARS = 12  # of the ensemble's weights_sha256: which teacher a search stood on


def teacher_digest(teacher: artifacts.TeacherSummary | None) -> str | None:
    """The short name of a teacher's weights in results.csv's `teacher` column."""
    if teacher is None or not teacher.weights_sha256:
        return None
    return teacher.weights_sha256[:TEACHER_DIGEST_CHARS]


@dataclasses.dataclass
class TrialRow:
    """One trial of one search, with its test metrics when it is in the top k."""

    cell: Cell
    trial_id: str
    status: str
    rank: int | None  # by validation accuracy among completed trials, 1 = best
    val_accuracy: float | None
    test_accuracy: float | None
    test_agreement: float | None
    params: int | None
    widths: dict[str, int]
    hyperparameters: dict[str, Any]
    convergence: Convergence | None = None  # None: no history.json (running, or older runs)
    train_seconds: float | None = None  # every epoch's wall time, summed over resumes
    teacher: str | None = None  # `teacher_digest` of the teacher it learned from

    def as_csv(self) -> dict[str, Any]:
        row = {
            "cell": self.cell.name,
            "family": self.cell.family,
            "depth": self.cell.depth,
            "budget": _number(self.cell.budget),
            "loss": self.cell.loss,
            "params": self.params,
            "trial_id": self.trial_id,
            "rank": self.rank,
            "status": self.status,
            "val_accuracy": self.val_accuracy,
            "test_accuracy": self.test_accuracy,
            "test_agreement": self.test_agreement,
            "widths": "-".join(str(w) for w in self.widths.values()),
            **_convergence_columns(self.convergence),
            "train_seconds": None if self.train_seconds is None else round(self.train_seconds, 1),
            "teacher": self.teacher,
        }
        row.update(self.hyperparameters)  # Hyperband adds tuner/epochs and friends
        return {k: ("" if v is None else v) for k, v in row.items()}


def _convergence_columns(convergence: Convergence | None) -> dict[str, Any]:
    if convergence is None:
        return {"epochs": None, "epoch_cap": None, "val_gain_last_2": None}
    return {"epochs": convergence.epochs_run, "epoch_cap": convergence.epoch_cap,
            "val_gain_last_2": convergence.last_gain}


def _convergence_from_csv(row: dict[str, str]) -> Convergence | None:
    """The columns `_convergence_columns` wrote; None in a CSV from before them."""
    if not row.get("epochs"):
        return None
    gain = row.get("val_gain_last_2")
    return Convergence(epochs_run=int(row["epochs"]), epoch_cap=int(row["epoch_cap"]),
                       last_gain=float(gain) if gain else None)


@dataclasses.dataclass
class CellSummary:
    """One search's result: best (rank 1) and top-k test accuracies, as fractions."""

    cell: Cell
    trials: int  # completed trials
    best_test: float | None  # test accuracy of the best trial by validation accuracy
    top_tests: list[float]  # test accuracies of the top-k trials, by rank
    best_convergence: Convergence | None = None  # how the best trial ended
    train_seconds: list[float] = dataclasses.field(default_factory=list)  # of timed trials
    teacher: str | None = None  # `teacher_digest` of the teacher it learned from, if recorded

    @classmethod
    def from_ranked(cls, cell: Cell, ranked: Sequence[tuple[int, float | None]],
                    best_convergence: Convergence | None = None,
                    train_seconds: Sequence[float] = (),
                    teacher: str | None = None, top_k: int | None = None) -> CellSummary:
        """From (rank, test accuracy or None) of each completed trial; None until rank 1 is.
        The top k are the `top_k` best tested trials (None: every tested one): a search in
        parts tests every trial it ends, a whole search its top k alone."""
        ranked = sorted(ranked)
        tested = [test for _, test in ranked if test is not None]
        return cls(
            cell=cell,
            trials=len(ranked),
            best_test=next((test for rank, test in ranked if rank == 1), None),
            top_tests=tested[:top_k] if top_k else tested,
            best_convergence=best_convergence,
            train_seconds=list(train_seconds),
            teacher=teacher,
        )

    @property
    def mean_test(self) -> float | None:
        return sum(self.top_tests) / len(self.top_tests) if self.top_tests else None

    @property
    def best_percent(self) -> float | None:
        return None if self.best_test is None else 100 * self.best_test

    @property
    def mean_percent(self) -> float | None:
        return None if self.mean_test is None else 100 * self.mean_test


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def collect_rows(layout: ExperimentLayout) -> list[TrialRow]:
    """Every trial of every search of an experiment, ranked within its search."""
    teacher = teacher_digest(artifacts.read_teacher_summary(layout.teacher_summary))
    try:
        spec: DatasetSpec | None = artifacts.read_dataset(layout)
    except artifacts.MissingDatasetError:  # widths then only where the evaluation has them
        spec = None
    rows = []
    for cell, search in artifacts.read_searches(layout):
        evaluated = artifacts.read_evaluation(search)["trials"]
        trials = artifacts.read_trials(search)
        ranks = {t.trial_id: rank for rank, t in enumerate(artifacts.ranked(trials), start=1)}
        for trial in sorted(trials, key=lambda t: (ranks.get(t.trial_id, math.inf), t.trial_id)):
            row = _row(cell, trial, ranks.get(trial.trial_id), evaluated,
                       artifacts.read_trial_history(search, trial.trial_id), spec)
            rows.append(dataclasses.replace(row, teacher=teacher))
    return rows


def _row(cell: Cell, trial: TrialRecord, rank: int | None,
         evaluated: dict[str, TrialEvaluation], history: TrialHistory | None,
         spec: DatasetSpec | None) -> TrialRow:
    values = trial.hyperparameters
    record = evaluated.get(trial.trial_id, {})
    widths = record.get("widths")
    params = record.get("params")
    if widths is None:  # outside the top k: the widths and size follow from the values
        widths, params = {}, None
        if spec is not None:  # (what the images are is known)
            try:
                widths = cell.realised_widths(values, spec)
                params = cell.realised_params(values, spec)
            except (KeyError, ValueError):
                widths, params = {}, None
    return TrialRow(
        cell=cell,
        trial_id=trial.trial_id,
        status=trial.status,
        rank=rank,
        val_accuracy=trial.score if trial.status == "COMPLETED" else None,
        test_accuracy=record.get("test_accuracy"),
        test_agreement=record.get("test_agreement"),
        params=params,
        widths=widths,
        hyperparameters=values,
        convergence=None if history is None else Convergence.of(history),
        train_seconds=None if history is None else history.train_seconds,
    )


def summarise(rows: Sequence[TrialRow], top_k: int | None = None) -> list[CellSummary]:
    """One summary per search, in the order the rows came (`top_k`: `from_ranked`'s)."""
    by_cell: dict[str, list[TrialRow]] = {}
    for row in rows:
        by_cell.setdefault(row.cell.name, []).append(row)
    return [CellSummary.from_ranked(
        cell_rows[0].cell, [(r.rank, r.test_accuracy) for r in cell_rows if r.rank is not None],
        next((r.convergence for r in cell_rows if r.rank == 1), None),
        [r.train_seconds for r in cell_rows if r.train_seconds is not None],
        cell_rows[0].teacher,
        top_k,
    ) for cell_rows in by_cell.values()]


def write_csv(rows: Sequence[TrialRow], path: Path,
              records: Sequence[Mapping[str, str]] = ()) -> None:
    """`results.csv`: one line per trial; extra hyperparameter columns after the fixed ones.

    `records`: rows already in results.csv's form (searches kept from an earlier run folder,
    `tuner.search.kept`), written as they are, each search in its place
    (`artifacts.search_order`)."""
    dicts = [row.as_csv() for row in rows] + [dict(record) for record in records]
    if records:
        dicts.sort(key=lambda d: artifacts.search_order(_cell_of(d)))  # stable within a search
    extra = sorted({key for d in dicts for key in d} - set(CSV_COLUMNS))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*CSV_COLUMNS, *extra], restval="",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(dicts)
    atomic_write_text(path, buffer.getvalue())


def _cell_of(record: Mapping[str, Any]) -> Cell:
    """The cell a row of results.csv's form names."""
    return Cell(record["family"], int(record["depth"]), float(record["budget"]),
                loss=record["loss"])


def read_summaries(path: Path) -> list[CellSummary]:
    """The per-search results in a `results.csv` (columns cell, family, depth, budget, loss,
    rank and test_accuracy are read), one per search in the file's order; their top k is the
    `config.yaml` beside it's (`configured_top_k`)."""
    with path.open() as stream:
        return summaries_of_records(csv.DictReader(stream), configured_top_k(path.parent))


def configured_search(folder: Path) -> SearchConfig | None:
    """The `search` section of the experiment config saved in `folder` (a run or results
    folder); None where there is none, or it no longer loads."""
    path = ExperimentLayout(folder).config_file
    try:
        return load_config(path).search if path.is_file() else None
    except ConfigError:
        return None


def configured_top_k(folder: Path) -> int | None:
    """`search.top_k` of the experiment config saved in `folder` (`configured_search`)."""
    search = configured_search(folder)
    return None if search is None else search.top_k


def summaries_of_records(records: Iterable[Mapping[str, str]],
                         top_k: int | None = None) -> list[CellSummary]:
    """One summary per search of rows in results.csv's form, in their order (`top_k`:
    `CellSummary.from_ranked`'s)."""
    cells: dict[str, Cell] = {}
    ranked: dict[str, list[tuple[int, float | None]]] = {}
    best: dict[str, Convergence | None] = {}
    seconds: dict[str, list[float]] = {}
    teachers: dict[str, str | None] = {}
    for row in records:
        name = row["cell"]
        if name not in cells:
            cells[name] = _cell_of(row)
            ranked[name], seconds[name] = [], []
            teachers[name] = row.get("teacher") or None
        if row.get("train_seconds"):
            seconds[name].append(float(row["train_seconds"]))
        if row["rank"]:
            test = float(row["test_accuracy"]) if row["test_accuracy"] else None
            ranked[name].append((int(row["rank"]), test))
            if row["rank"] == "1":
                best[name] = _convergence_from_csv(row)
    return [CellSummary.from_ranked(cells[name], ranked[name], best.get(name), seconds[name],
                                    teachers[name], top_k)
            for name in cells]
