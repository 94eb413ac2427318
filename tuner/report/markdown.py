"""`results.md`: the paper's Table 2 of an experiment's searches, and how they were made.

The table shows, per search, the test accuracy of its best trial (by validation accuracy, the
search's objective) and the mean test accuracy of its top k trials, with the paper's figure
beside it where the paper has that cell; then the sections that say whether the trials
converged, what they cost, and the provenance: teacher, data, runtime, versions. Built from
`rows.CellSummary` values; nothing here imports TensorFlow.

    text = markdown_table(layout, summaries, top_k)
"""

from __future__ import annotations

import importlib.metadata
import platform
from collections.abc import Sequence
from typing import Any

from mimic_tf.budgets import budget_label
from mimic_tf.layout import ExperimentLayout
from mimic_tf.vocabulary import KERAS_TEACHER
from tuner import artifacts
from tuner.frontier.table import diagnostics_section, read_frontier, read_measurement
from tuner.report.convergence import (
    LAST_EPOCHS,
    NEAR_CONVERGENCE_GAIN,
    near_and_rising,
)
from tuner.report.paper import PAPER_TEACHER_ACCURACY, paper_figure, paper_table
from tuner.report.rows import CellSummary, teacher_digest


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
    """results.md's check that the best trials ran long enough (`tuner.report.convergence`); none
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
            f"machine, are records only (`{layout.kept_results.name}`, `tuner.search.kept`): "
            "the same "
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
        lanes = (f"; {facts['lanes']} searches at a time, each in its own process "
                 "(search.parallel)" if facts.get("lanes") else "")
        lines.append(f"- Searches run on {facts.get('cpu', '?')} ({facts.get('device', '?')}): "
                     f"oneDNN {_on_off(facts.get('onednn'))} ({facts.get('onednn_source', '?')}); "
                     f"XLA {xla or '?'}{_in_precision(facts)}{lanes}.")
    return lines


def _in_precision(facts: dict[str, Any]) -> str:
    """', in mixed_bfloat16': the dtype policy a runtime record names (older records: none)."""
    return f", in {facts['precision']}" if facts.get("precision") else ""
