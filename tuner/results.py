"""An experiment's searches as rows, `results.csv` and the paper's Table 2 (`results.md`).

Everything is read back from disk through `tuner.artifacts` (`searches/*/cell.json`,
KerasTuner's `trial.json` files read as plain JSON, `evaluation.json`, `teacher/teacher.json`),
so any set of finished or half-finished searches, MLP and CNN alike, makes one table, and no
TensorFlow is imported to make it.

Table cells show the test accuracy of the search's best trial (by validation accuracy, the
search's objective) and the mean test accuracy of its top k trials, with the paper's figure
beside it where the paper has that cell. `CellSummary` is that per-search result; the figure
(`tuner.report`) and the findings (`tuner.findings`, from `results.csv`) read it too.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.metadata
import io
import math
import platform
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from mimic_tf.budgets import budget_label
from mimic_tf.files import atomic_write_text
from mimic_tf.layout import ExperimentLayout
from mimic_tf.vocabulary import KERAS_TEACHER
from tuner import artifacts
from tuner.artifacts import TrialEvaluation, TrialHistory, TrialRecord
from tuner.cells import Cell
from tuner.convergence import LAST_EPOCHS, NEAR_CONVERGENCE_GAIN, Convergence, near_and_rising
from tuner.frontier_table import diagnostics_section, read_frontier, read_measurement
from tuner.paper import PAPER_TEACHER_ACCURACY, paper_figure, paper_table

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
                    teacher: str | None = None) -> CellSummary:
        """From (rank, test accuracy or None) of each completed trial; None until rank 1 is."""
        ranked = sorted(ranked)
        return cls(
            cell=cell,
            trials=len(ranked),
            best_test=next((test for rank, test in ranked if rank == 1), None),
            top_tests=[test for _, test in ranked if test is not None],
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
    rows = []
    for cell, search in artifacts.read_searches(layout):
        evaluated = artifacts.read_evaluation(search)["trials"]
        trials = artifacts.read_trials(search)
        ranks = {t.trial_id: rank for rank, t in enumerate(artifacts.ranked(trials), start=1)}
        for trial in sorted(trials, key=lambda t: (ranks.get(t.trial_id, math.inf), t.trial_id)):
            row = _row(cell, trial, ranks.get(trial.trial_id), evaluated,
                       artifacts.read_trial_history(search, trial.trial_id))
            rows.append(dataclasses.replace(row, teacher=teacher))
    return rows


def _row(cell: Cell, trial: TrialRecord, rank: int | None,
         evaluated: dict[str, TrialEvaluation], history: TrialHistory | None) -> TrialRow:
    values = trial.hyperparameters
    record = evaluated.get(trial.trial_id, {})
    widths = record.get("widths")
    params = record.get("params")
    if widths is None:  # outside the top k: the widths and size follow from the values
        try:
            widths, params = cell.realised_widths(values), cell.realised_params(values)
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


def summarise(rows: Sequence[TrialRow]) -> list[CellSummary]:
    """One summary per search, in the order the rows came."""
    by_cell: dict[str, list[TrialRow]] = {}
    for row in rows:
        by_cell.setdefault(row.cell.name, []).append(row)
    return [CellSummary.from_ranked(
        cell_rows[0].cell, [(r.rank, r.test_accuracy) for r in cell_rows if r.rank is not None],
        next((r.convergence for r in cell_rows if r.rank == 1), None),
        [r.train_seconds for r in cell_rows if r.train_seconds is not None],
        cell_rows[0].teacher,
    ) for cell_rows in by_cell.values()]


def write_csv(rows: Sequence[TrialRow], path: Path,
              records: Sequence[Mapping[str, str]] = ()) -> None:
    """`results.csv`: one line per trial; extra hyperparameter columns after the fixed ones.

    `records`: rows already in results.csv's form (searches kept from an earlier run folder,
    `tuner.kept`), written as they are, each search in its place (`artifacts.search_order`)."""
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
    rank and test_accuracy are read), one per search in the file's order."""
    with path.open() as stream:
        return summaries_of_records(csv.DictReader(stream))


def summaries_of_records(records: Iterable[Mapping[str, str]]) -> list[CellSummary]:
    """One summary per search of rows in results.csv's form, in their order."""
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
                                    teachers[name])
            for name in cells]


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def markdown_table(layout: ExperimentLayout, summaries: Sequence[CellSummary],
                   top_k: int | None) -> str:
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
        f"# {layout.root.name}: students mimicking the teacher (the paper's Table 2)",
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
    teacher = artifacts.read_teacher_summary(layout.teacher_summary)
    lines.append("")
    if teacher is not None and teacher.family == KERAS_TEACHER:
        lines.append(
            f"Teacher: your model {teacher.path} ({teacher.params:,} parameters), test "
            f"accuracy {_percent(teacher.test_accuracy)}%, validation "
            f"{_percent(teacher.validation_accuracy)}%."
        )
    elif teacher is not None and teacher.loaded_from is not None:
        made = teacher.loaded_from
        lines.append(
            f"Teacher: published, not trained here: an ensemble of {teacher.members} CNNs "
            f"({teacher.params:,} parameters) loaded from `{made.get('folder')}`, made by "
            f"commit {', '.join(c[:7] for c in made.get('commits', []))} on "
            f"{'; '.join(made.get('cpus', []))}; test accuracy "
            f"{_percent(teacher.test_accuracy)}%, validation "
            f"{_percent(teacher.validation_accuracy)}% on this run's images."
        )
    elif teacher is not None and teacher.members is not None:
        lines.append(
            f"Teacher: ensemble of {teacher.members} CNNs "
            f"({teacher.params:,} parameters), test accuracy "
            f"{_percent(teacher.test_accuracy)}%, validation "
            f"{_percent(teacher.validation_accuracy)}% (paper: 16 CNNs, "
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
    lines += convergence_section(summaries)
    lines += compute_section(summaries, teacher, artifacts.read_transfer_manifest(layout))
    frontier = read_frontier(layout.frontier_csv)
    if frontier:
        lines += ["", *diagnostics_section(frontier, read_measurement(layout).get("teacher"))]
    lines += ["", "## How this was made", ""] + _provenance(layout, summaries)
    return "\n".join(lines) + "\n"


def convergence_section(summaries: Sequence[CellSummary]) -> list[str]:
    """results.md's check that the best trials ran long enough (`tuner.convergence`); none
    when no search recorded its trials' epochs."""
    measured = [s for s in summaries if s.best_convergence is not None]
    if not measured:
        return []
    lines = [
        "", "## Did the best trials run long enough?", "",
        f"Each search's best trial: the epochs it ran of its cap, and its validation accuracy "
        f"gain over its last {LAST_EPOCHS} epochs (points). Near convergence: a gain under "
        f"{100 * NEAR_CONVERGENCE_GAIN:.1f} points, or stopped early by the plateau schedule.",
        "", "| student | budget | loss | epochs / cap | gain | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for summary in measured:
        convergence = summary.best_convergence
        gain = ("–" if convergence.last_gain is None
                else f"{100 * convergence.last_gain:+.2f}")
        lines.append(
            f"| {summary.cell.architecture} | {budget_label(summary.cell.budget)} | "
            f"{summary.cell.loss} | {convergence.epochs_run} / {convergence.epoch_cap} | "
            f"{gain} | {convergence.verdict} |")
    near, rising = near_and_rising([s.best_convergence for s in measured])
    lines += ["", f"{near} of {len(measured)} best trials near convergence"
              + (f"; {len(rising)} still rising at the cap, where longer trials could change "
                 "the result." if rising else ".")]
    return lines


def compute_section(summaries: Sequence[CellSummary],
                    teacher: artifacts.TeacherSummary | None = None,
                    transfer: dict[str, Any] | None = None) -> list[str]:
    """results.md's compute bill by stage: the teacher's members, the transfer set's teacher
    passes and each search's trials (every epoch's wall time with its validation, summed over
    resumes); none when nothing was timed."""
    timed = [s for s in summaries if s.train_seconds]
    member_seconds = teacher.member_train_seconds if teacher is not None else ()
    members_timed = [seconds for seconds in member_seconds if seconds is not None]
    transfer_seconds = (transfer or {}).get("logits_seconds")
    if not (timed or members_timed or transfer_seconds):
        return []
    lines = ["", "## Compute", "",
             "Hours of each stage where it was timed: the teacher's members (their epochs with "
             "validation), the transfer set (the teacher's passes over its views) and each "
             "search's trials (every epoch's wall time with its validation), each summed over "
             "resumes; evaluation, export and loading are not included. Trials that ran side "
             "by side (a chief and workers, docs/tuner.md) add up too: a search's hours are "
             "its trials' hours, more than its wall time.", "",
             "| stage | budget | loss | timed | hours |", "|---|---|---|---|---|"]
    total = 0.0
    if members_timed:
        total += sum(members_timed)
        lines.append(f"| teacher | | | {len(members_timed)} of {len(member_seconds)} members | "
                     f"{sum(members_timed) / 3600:.2f} |")
    if transfer_seconds:
        total += transfer_seconds
        views = (transfer or {}).get("fingerprint", {}).get("views", "?")
        lines.append(f"| transfer set | | | {views} views | {transfer_seconds / 3600:.2f} |")
    for summary in timed:
        lines.append(
            f"| {summary.cell.architecture} | {budget_label(summary.cell.budget)} | "
            f"{summary.cell.loss} | {_count(len(summary.train_seconds), 'trial')} | "
            f"{sum(summary.train_seconds) / 3600:.2f} |")
    searches = sum(sum(s.train_seconds) for s in timed)
    total += searches
    if timed:
        trials = sum(len(s.train_seconds) for s in timed)
        lines.append(f"| all searches | | | {_count(trials, 'trial')} | {searches / 3600:.2f} |")
    lines.append(f"| **in all** | | | | **{total / 3600:.2f}** |")
    untimed = len(member_seconds) - len(members_timed)
    if untimed:
        lines += ["", f"{_count(untimed, 'teacher member')} of {len(member_seconds)} "
                  f"{'has' if untimed == 1 else 'have'} no recorded training time (trained "
                  "before mimic-tf recorded it): the teacher's hours are a floor."]
    return lines


def _count(number: int, noun: str) -> str:
    """'1 trial', '6 trials'."""
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _version(*distributions: str) -> str:
    """The installed version of the first of `distributions` that is installed."""
    for distribution in distributions:
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "?"


def _provenance(layout: ExperimentLayout, summaries: Sequence[CellSummary]) -> list[str]:
    recorded = [s for s in map(artifacts.read_settings, layout.search_folders()) if s]
    settings = recorded[0] if recorded else {}
    student: dict[str, Any] = {}  # an MLP search records the MLPs' cap, a CNN search the CNNs'
    for search_settings in recorded:
        student.update(search_settings.get("student", {}))
    schedule = student.get("schedule", {})
    trials = sorted({s.trials for s in summaries})
    source = artifacts.read_data_source(layout)
    caveat = ""
    if "cifar10-jpeg" in source or source.startswith("folder:"):
        caveat = (" The shared CIFAR-10 copy is JPEG at quality 75, so accuracies run somewhat "
                  "below those on the original images.")
    tensorflow = _version("tensorflow", "tensorflow-cpu", "tf-nightly")
    lines = [
        f"- Searches: {len(summaries)}; completed trials per search: "
        f"{', '.join(map(str, trials)) or '0'}; tuner: {settings.get('tuner', '?')}; "
        f"epoch cap per trial: {schedule.get('epochs', '?')}{_family_caps(student)}; batch size "
        f"{student.get('batch_size', '?')}; loss: {student.get('loss', '?')}; precision: "
        f"{student.get('precision', 'float32')}.",
        f"- Data source: {source}.{caveat} The paper trained longer, on budgets of 1M-31.6M "
        "parameters, mimicking a 16-CNN teacher of 93.8%.",
        *[f"- Made by `{command}`." for command in artifacts.read_commands(layout)],
        *_teacher_lines(layout, summaries),
        f"- Rebuild this file, `results.csv` and `figure.png` with "
        f"`python -m tuner.report {layout.root}`.",
        f"- Machine: {platform.machine()} {platform.processor() or ''}".rstrip()
        + f", Python {platform.python_version()}, TensorFlow {tensorflow}, "
        f"Keras {_version('keras')}, KerasTuner {_version('keras-tuner')}.",
        *_runtime_lines(layout),
    ]
    return lines


def _teacher_lines(layout: ExperimentLayout, summaries: Sequence[CellSummary]) -> list[str]:
    """Which teacher's weights the searches learned from (results.csv's `teacher` column),
    where searches were kept from an earlier run folder or their teachers differ."""
    current = teacher_digest(artifacts.read_teacher_summary(layout.teacher_summary))
    counts: dict[str | None, int] = {}
    for summary in summaries:
        counts[summary.teacher] = counts.get(summary.teacher, 0) + 1
    kept_here = layout.kept_results.is_file()
    if len(counts) <= 1 and not kept_here:
        return []
    names = []
    for digest, count in counts.items():
        name = f"`{digest}`" if digest else "not recorded"
        own = ", this run folder's teacher" if digest and digest == current else ""
        names.append(f"{name} ({count} search{'' if count == 1 else 'es'}{own})")
    teachers = "; ".join(names)
    lines = [f"- Teachers the searches learned from (the ensemble's weights digest, "
             f"results.csv's `teacher` column): {teachers}."]
    if kept_here:
        lines.append(
            f"- Searches kept from an earlier run folder of this experiment, lost with its "
            f"machine, are records only (`{layout.kept_results.name}`, `tuner.kept`): the same "
            "teacher recipe trained again, bit for bit the same teacher where the digests "
            "match; where they differ, another training of it (another CPU kind's kernels).")
    return lines


def _family_caps(student: dict[str, Any]) -> str:
    """' (MLP 10, CNN 4)' for the families whose cap differs from the schedule's."""
    caps = [f"{family.upper()} {student[f'{family}_epochs']}" for family in ("mlp", "cnn")
            if student.get(f"{family}_epochs")]
    return f" ({', '.join(caps)})" if caps else ""


def _on_off(value: Any) -> str:
    return {True: "on", False: "off"}.get(value, str(value))


def _runtime_lines(layout: ExperimentLayout) -> list[str]:
    """How TensorFlow ran: the teacher's members and the searches, from their records."""
    lines = []
    summary = artifacts.read_teacher_summary(layout.teacher_summary)
    teacher = summary.runtime if summary is not None else {}
    if teacher:
        lines.append(f"- Teacher trained on {teacher.get('cpu', '?')}: oneDNN "
                     f"{_on_off(teacher.get('onednn'))}, XLA {_on_off(teacher.get('xla'))}"
                     f"{_in_precision(teacher)}.")
    for facts in artifacts.read_runtimes(layout):
        xla = ", ".join(f"{family} {_on_off(value)}"
                        for family, value in (facts.get("xla") or {}).items())
        lines.append(f"- Searches run on {facts.get('cpu', '?')} ({facts.get('device', '?')}): "
                     f"oneDNN {_on_off(facts.get('onednn'))} ({facts.get('onednn_source', '?')}); "
                     f"XLA {xla or '?'}{_in_precision(facts)}.")
    return lines


def _in_precision(facts: dict[str, Any]) -> str:
    """', in mixed_bfloat16': the dtype policy a runtime record names (older records: none)."""
    return f", in {facts['precision']}" if facts.get("precision") else ""
