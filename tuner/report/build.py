"""The report of an experiment folder: `results.csv`, `results.md`, `figure.png`, TensorBoard.

Whatever searches exist under `DIR/searches/`, MLP and CNN runs alike, are merged into one
table and one figure; searches still running or stopped half-way contribute the trials they
finished. Searches kept from an earlier run folder (`DIR/kept_results.csv`,
`tuner.search.kept`) join them, unless a search of the same cell finished here. The table and
the figures also go to TensorBoard, as the run `logs/summary` (`summary_run.py`). Nothing here
imports TensorFlow.

    report = write_report("runs/default")     # a `Report`: rows, summaries, Markdown, paths
    print("\n".join(report.table))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

from mimic_tf.files import atomic_write_text
from mimic_tf.layout import ExperimentLayout
from tuner import artifacts
from tuner.report.figure import draw_figure
from tuner.report.markdown import markdown_table
from tuner.report.rows import (
    CellSummary,
    TrialRow,
    collect_rows,
    configured_top_k,
    summaries_of_records,
    summarise,
    write_csv,
)
from tuner.report.summary_run import write_summary_run
from tuner.search import kept


@dataclasses.dataclass
class Report:
    """One experiment's report: its numbers, its Markdown, and the files it was written to.

    `markdown` is `results.md`'s text as written; `table` its Table 2 lines (and the teacher
    line above them), which `tuner.run` prints at the end of a run without reading a file.
    """

    results_csv: Path
    results_md: Path
    figure: Path
    rows: list[TrialRow]
    summaries: list[CellSummary]
    summary_run: Path  # the event file of the TensorBoard run `logs/summary`
    markdown: str

    @property
    def table(self) -> list[str]:
        """The table's rows and the teacher line: the lines before the first section."""
        lines = self.markdown.splitlines()
        end = next((i for i, line in enumerate(lines) if line.startswith("## ")), len(lines))
        return [line for line in lines[:end]
                if line.startswith("|") or line.startswith("Teacher:")]


def write_report(root: str | Path, top_k: int | None = None) -> Report:
    """Write the result files of the experiment folder `root`; returns what was written.

    `top_k`: how many of each search's best tested trials its mean counts (default: the
    folder's config's `search.top_k`; where it has none, every tested trial).
    """
    layout = ExperimentLayout(Path(root))
    rows, kept_records = with_kept_searches(layout, collect_rows(layout))
    top_k = top_k or configured_top_k(layout.root)
    summaries = sorted(summarise(rows, top_k) + summaries_of_records(kept_records, top_k),
                       key=lambda summary: artifacts.search_order(summary.cell))
    tested = max((len(s.top_tests) for s in summaries), default=None)
    top_k = tested if top_k is None or not tested else min(top_k, tested)  # the table's label
    write_csv(rows, layout.results_csv, kept_records)
    markdown = markdown_table(layout, summaries, top_k)
    atomic_write_text(layout.results_md, markdown)
    teacher = artifacts.read_teacher_summary(layout.teacher_summary)
    draw_figure(summaries, layout.figure, teacher.test_accuracy if teacher else None,
                title=f"{layout.root.name}: students' test accuracy by parameter budget\n"
                f"top-{top_k} mean (solid), best and worst of the top {top_k} (dashed)")
    event_file = write_summary_run(layout)
    return Report(layout.results_csv, layout.results_md, layout.figure, rows, summaries,
                  event_file, markdown)


def with_kept_searches(layout: ExperimentLayout, rows: Sequence[TrialRow]
                       ) -> tuple[list[TrialRow], list[dict[str, str]]]:
    """This run's rows and the kept searches' rows the report shows: a search finished here
    wins over a kept one of its cell, a kept one over a search of its cell unfinished here."""
    finished_here = {row.cell.name for row in rows
                     if row.rank == 1 and row.test_accuracy is not None}
    shown = {name: records for name, records in kept.kept_rows(layout).items()
             if name not in finished_here}
    return ([row for row in rows if row.cell.name not in shown],
            [record for records in shown.values() for record in records])
