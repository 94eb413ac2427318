"""An experiment's searches as rows, `results.csv` and the paper's Table 2 (`results.md`).

Everything is read back from disk (`searches/*/cell.json`, KerasTuner's `trial.json` files,
`evaluation.json`, `teacher/teacher.json`), so any set of finished or half-finished searches,
MLP and CNN alike, makes one table.

Table cells show the test accuracy of the search's best trial (by validation accuracy, the
search's objective) and the mean test accuracy of its top k trials, with the paper's figure
beside it where the paper has that cell.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import keras_tuner
import tensorflow as tf
import yaml

from mimic_tf.budgets import budget_label
from mimic_tf.config import atomic_write_text
from tuner.cells import Cell, read_cell_file
from tuner.search import EVALUATION_FILE, SEARCH_FILE, load_trials, rank_key, realised_params

PAPER_RESULTS = Path(__file__).with_name("paper_results.csv")
PAPER_TEACHER_ACCURACY = 93.8  # the 16-CNN ensemble (Urban et al. 2017, Table 1)
OPTIMISATION_COLUMNS = ("learning_rate", "momentum", "input_scale", "init_scale")
CSV_COLUMNS = (
    "cell", "family", "depth", "budget", "loss", "params", "trial_id", "rank", "status",
    "val_accuracy", "test_accuracy", "test_agreement", "widths", *OPTIMISATION_COLUMNS,
)


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
        }
        row.update(self.hyperparameters)  # Hyperband adds tuner/epochs and friends
        return {k: ("" if v is None else v) for k, v in row.items()}


@dataclasses.dataclass
class CellSummary:
    """One search's line of the table: best (rank 1) and top-k test accuracies."""

    cell: Cell
    trials: int  # completed trials
    best_test: float | None  # test accuracy of the best trial by validation accuracy
    top_tests: list[float]  # test accuracies of the top-k trials, by rank

    @property
    def mean_test(self) -> float | None:
        return sum(self.top_tests) / len(self.top_tests) if self.top_tests else None


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def search_folders(root: Path) -> list[tuple[Cell, Path]]:
    """The searches under `<root>/searches/`, in a stable order (family, depth, budget)."""
    found = []
    for project in sorted((root / "searches").glob("*/")):
        cell = read_cell_file(project)
        if cell is not None:
            found.append((cell, project))
    order = {"mlp": 0, "cnn": 1}
    return sorted(found, key=lambda item: (item[0].is_baseline, order[item[0].family],
                                           item[0].depth, item[0].budget))


def collect_rows(root: str | Path) -> list[TrialRow]:
    """Every trial of every search under `root`, ranked within its search."""
    rows = []
    for cell, project in search_folders(Path(root)):
        evaluation_path = project / EVALUATION_FILE
        evaluated = json.loads(evaluation_path.read_text())["trials"] \
            if evaluation_path.exists() else {}
        trials = load_trials(project)
        completed = sorted((t for t in trials if t.status == "COMPLETED" and t.score is not None),
                           key=rank_key)
        ranks = {t.trial_id: rank for rank, t in enumerate(completed, start=1)}
        for trial in sorted(trials, key=lambda t: (ranks.get(t.trial_id, math.inf), t.trial_id)):
            rows.append(_row(cell, trial, ranks.get(trial.trial_id), evaluated))
    return rows


def _row(cell: Cell, trial: keras_tuner.engine.trial.Trial, rank: int | None,
         evaluated: dict[str, Any]) -> TrialRow:
    values = dict(trial.hyperparameters.values)
    record = evaluated.get(trial.trial_id, {})
    widths = record.get("widths")
    params = record.get("params")
    if widths is None:
        try:
            from tuner.hypermodel import realised_widths

            widths = realised_widths(cell, values)
            params = realised_params(cell, values)
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
    )


def summarise(rows: Sequence[TrialRow]) -> list[CellSummary]:
    """One summary per search, in the order the rows came."""
    by_cell: dict[str, list[TrialRow]] = {}
    for row in rows:
        by_cell.setdefault(row.cell.name, []).append(row)
    summaries = []
    for cell_rows in by_cell.values():
        ranked = sorted((r for r in cell_rows if r.rank is not None), key=lambda r: r.rank)
        tested = [r for r in ranked if r.test_accuracy is not None]
        summaries.append(CellSummary(
            cell=cell_rows[0].cell,
            trials=len(ranked),
            best_test=ranked[0].test_accuracy if ranked else None,
            top_tests=[r.test_accuracy for r in tested],
        ))
    return summaries


def write_csv(rows: Sequence[TrialRow], path: Path) -> None:
    """`results.csv`: one line per trial; extra hyperparameter columns after the fixed ones."""
    dicts = [row.as_csv() for row in rows]
    extra = sorted({key for d in dicts for key in d} - set(CSV_COLUMNS))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=[*CSV_COLUMNS, *extra], restval="",
                            lineterminator="\n")
    writer.writeheader()
    writer.writerows(dicts)
    atomic_write_text(path, buffer.getvalue())


def paper_table() -> dict[tuple[str, int, float], float]:
    """The paper's Table 2: (family, depth, budget) -> test accuracy in percent."""
    with PAPER_RESULTS.open() as stream:
        return {
            (r["family"], int(r["depth"]), float(r["budget"])): float(r["test_accuracy_percent"])
            for r in csv.DictReader(stream)
        }


def paper_figure(table: dict[tuple[str, int, float], float], cell: Cell) -> float | None:
    """The paper's number for a cell's architecture and budget (budgets match within 1%)."""
    for (family, depth, budget), accuracy in table.items():
        same_budget = abs(budget - cell.budget) <= 0.01 * budget
        if (family, depth) == (cell.family, cell.depth) and same_budget:
            return accuracy
    return None


def teacher_summary(root: Path) -> dict[str, Any] | None:
    """The ensemble's entry of `teacher/teacher.json` (accuracies, members, params)."""
    path = root / "teacher" / "teacher.json"
    if not path.exists():
        return None
    return json.loads(path.read_text()).get("ensemble")


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def markdown_table(root: Path, summaries: Sequence[CellSummary], top_k: int | None) -> str:
    """`results.md`: Table 2's layout (architectures x budgets), baselines, teacher, provenance."""
    table = paper_table()
    mimic = [s for s in summaries if not s.cell.is_baseline]
    hard = {(s.cell.family, s.cell.depth, s.cell.budget): s for s in summaries
            if s.cell.is_baseline}
    budgets = sorted({s.cell.budget for s in mimic})
    rows: dict[str, dict[float, CellSummary]] = {}
    for summary in mimic:
        rows.setdefault(summary.cell.architecture, {})[summary.cell.budget] = summary
    k = f"top {top_k}" if top_k else "top k"
    lines = [
        f"# {root.name}: students mimicking the teacher (the paper's Table 2)",
        "",
        f"Test accuracy (%) of each search's best student (best validation accuracy) / mean of "
        f"its {k} trials; in brackets the paper's figure for that cell (Urban et al. 2017, "
        "Table 2) where the paper has one.",
        "",
        "| student | " + " | ".join(budget_label(b) for b in budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    for architecture, by_budget in rows.items():
        cells = []
        for budget in budgets:
            summary = by_budget.get(budget)
            if summary is None:
                cells.append("")
                continue
            text = f"{_percent(summary.best_test)} / {_percent(summary.mean_test)}"
            paper = paper_figure(table, summary.cell)
            if paper is not None:
                text += f" ({paper:.1f})"
            cells.append(text)
        lines.append(f"| {architecture} | " + " | ".join(cells) + " |")
    teacher = teacher_summary(root)
    lines.append("")
    if teacher:
        lines.append(
            f"Teacher: ensemble of {teacher.get('members')} CNNs "
            f"({teacher.get('params', 0):,} parameters), test accuracy "
            f"{_percent(teacher.get('test_accuracy'))}%, validation "
            f"{_percent(teacher.get('validation_accuracy'))}% (paper: 16 CNNs, "
            f"{PAPER_TEACHER_ACCURACY}%)."
        )
    if hard:
        lines += [
            "",
            "## Hard-label baselines",
            "",
            "Each cell's best architecture trained on 0/1 labels with cross-entropy, with the "
            "same trials and epochs; gain = mimic best minus hard-label best (points).",
            "",
            "| student | budget | hard labels: best / mean | mimic best | gain |",
            "|---|---|---|---|---|",
        ]
        for summary in mimic:
            baseline = hard.get((summary.cell.family, summary.cell.depth, summary.cell.budget))
            if baseline is None:
                continue
            gain = (None if baseline.best_test is None or summary.best_test is None
                    else summary.best_test - baseline.best_test)
            gain_text = "–" if gain is None else f"{100 * gain:+.1f}"
            lines.append(
                f"| {summary.cell.architecture} | {budget_label(summary.cell.budget)} | "
                f"{_percent(baseline.best_test)} / {_percent(baseline.mean_test)} | "
                f"{_percent(summary.best_test)} | {gain_text} |"
            )
    lines += ["", "## How this was made", ""] + _provenance(root, summaries)
    return "\n".join(lines) + "\n"


def _commands(root: Path) -> list[str]:
    path = root / "commands.txt"
    return [line for line in path.read_text().splitlines() if line] if path.exists() else []


def _data_source(root: Path) -> str:
    """Where the images came from: the teacher's record, else the saved config."""
    summary_path = root / "teacher" / "teacher.json"
    if summary_path.exists():
        source = json.loads(summary_path.read_text()).get("source")
        if source:
            return str(source)
    config_path = root / "config.yaml"
    if config_path.exists():
        return str((yaml.safe_load(config_path.read_text()) or {}).get("data", {})
                   .get("source", "unknown"))
    return "unknown"


def _provenance(root: Path, summaries: Sequence[CellSummary]) -> list[str]:
    settings_path = next(iter(sorted((root / "searches").glob(f"*/{SEARCH_FILE}"))), None)
    settings = json.loads(settings_path.read_text()) if settings_path else {}
    student = settings.get("student", {})
    schedule = student.get("schedule", {})
    trials = sorted({s.trials for s in summaries})
    source = _data_source(root)
    caveat = ""
    if "cifar10-jpeg" in source or source.startswith("folder:"):
        caveat = (" The shared CIFAR-10 copy is JPEG at quality 75, so accuracies run somewhat "
                  "below those on the original images.")
    lines = [
        f"- Searches: {len(summaries)}; completed trials per search: "
        f"{', '.join(map(str, trials)) or '0'}; tuner: {settings.get('tuner', '?')}; "
        f"epoch cap per trial: {schedule.get('epochs', '?')}; batch size "
        f"{student.get('batch_size', '?')}; loss: {student.get('loss', '?')}; precision: "
        f"{student.get('precision', 'float32')}.",
        f"- Data source: {source}.{caveat} The paper trained longer, on budgets of 1M-31.6M "
        "parameters, mimicking a 16-CNN teacher of 93.8%.",
        *[f"- Made by `{command}`." for command in _commands(root)],
        f"- Rebuild this file, `results.csv` and `figure.png` with "
        f"`python -m tuner.report {root}`.",
        f"- Machine: {platform.machine()} {platform.processor() or ''}".rstrip()
        + f", Python {platform.python_version()}, TensorFlow {tf.__version__}, "
        f"Keras {keras.__version__}, KerasTuner {keras_tuner.__version__}.",
    ]
    return lines
