"""`python -m tuner.report DIR`: rebuild `results.csv`, `results.md`, `figure.png` of DIR.

DIR is an experiment folder (`runs/<experiment>`). Whatever searches exist under
`DIR/searches/`, MLP and CNN runs alike, are merged into one table and one figure; searches
still running or stopped half-way contribute the trials they finished. Searches kept from an
earlier run folder (`DIR/kept_results.csv`, `tuner.kept`) join them, unless a search of the
same cell finished here.

`figure.png` follows the paper's Figure 1: test accuracy against parameters (log x), per
architecture a solid line through the mean test accuracy of each search's top k trials and
dashed lines through the best and the k-th best of them, the teacher ensemble as a
horizontal line, hard-label baselines as short horizontal marks at their budgets. Where a
budget coincides with one of the paper's, its Table 2 figure is drawn as a hollow marker in
the architecture's colour, with the paper's teacher as a dotted line.

The table and the figures also go to TensorBoard, as the run `logs/summary`
(`tuner.summary_run`). Nothing here imports TensorFlow.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from mimic_tf.files import atomic_path, atomic_write_text
from mimic_tf.layout import ExperimentLayout
from tuner import artifacts, kept
from tuner.paper import PAPER_TEACHER_ACCURACY, paper_figure, paper_table
from tuner.results import (
    CellSummary,
    TrialRow,
    collect_rows,
    markdown_table,
    summaries_of_records,
    summarise,
    write_csv,
)
from tuner.summary_run import TABLE_PAGE, write_summary_run


@dataclasses.dataclass
class Report:
    """The files a report wrote and the numbers in them."""

    results_csv: Path
    results_md: Path
    figure: Path
    rows: list[TrialRow]
    summaries: list[CellSummary]
    summary_run: Path  # the event file of the TensorBoard run `logs/summary`


def write_report(root: str | Path, top_k: int | None = None) -> Report:
    """Write the result files of the experiment folder `root`; returns what was written.

    `top_k` only labels the table; the evaluated trials are whatever the searches recorded.
    """
    layout = ExperimentLayout(Path(root))
    rows, kept_records = with_kept_searches(layout, collect_rows(layout))
    summaries = sorted(summarise(rows) + summaries_of_records(kept_records),
                       key=lambda summary: artifacts.search_order(summary.cell))
    if top_k is None:
        top_k = max((len(s.top_tests) for s in summaries), default=None)
    write_csv(rows, layout.results_csv, kept_records)
    atomic_write_text(layout.results_md, markdown_table(layout, summaries, top_k))
    teacher = artifacts.read_teacher_summary(layout.teacher_summary)
    draw_figure(summaries, layout.figure, teacher.test_accuracy if teacher else None,
                title=f"{layout.root.name}: students' test accuracy by parameter budget\n"
                f"top-{top_k} mean (solid), best and worst of the top {top_k} (dashed)")
    event_file = write_summary_run(layout)
    return Report(layout.results_csv, layout.results_md, layout.figure, rows, summaries,
                  event_file)


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


def paper_points(summaries: Sequence[CellSummary]) -> list[tuple[str, int, float, float]]:
    """(family, depth, budget, paper's %) for each mimic cell at one of the paper's budgets."""
    table = paper_table()
    points = []
    for summary in summaries:
        if summary.cell.is_baseline or not summary.top_tests:
            continue
        accuracy = paper_figure(table, summary.cell)
        if accuracy is not None:
            points.append((summary.cell.family, summary.cell.depth, summary.cell.budget,
                           accuracy))
    return points


def draw_figure(
    summaries: Sequence[CellSummary],
    path: Path,
    teacher_accuracy: float | None = None,
    title: str = "",
) -> None:
    """Draw the figure to `path` (written to a temporary file, then renamed).

    Uses matplotlib's object API (no pyplot): no global backend or figure state is touched.
    """
    figure = Figure(figsize=(9.0, 5.0), dpi=120)
    axes = figure.add_subplot()
    lines: dict[str, list] = {}
    for summary in summaries:
        if not summary.cell.is_baseline and summary.top_tests:
            lines.setdefault(summary.cell.architecture, []).append(summary)
    colours = matplotlib.colormaps["tab10"]
    colour_of = {}
    for index, (architecture, points) in enumerate(lines.items()):
        points = sorted(points, key=lambda s: s.cell.budget)
        colour = colours(index % 10)
        colour_of[(points[0].cell.family, points[0].cell.depth)] = colour
        budgets = [s.cell.budget for s in points]
        axes.plot(budgets, [100 * s.mean_test for s in points], "-o", color=colour,
                  label=architecture, markersize=4)
        for bound in (max, min):
            axes.plot(budgets, [100 * bound(s.top_tests) for s in points], "--.",
                      color=colour, linewidth=0.8, markersize=4)
    baselines = [s for s in summaries if s.cell.is_baseline and s.best_test is not None]
    for baseline in baselines:
        colour = colour_of.get((baseline.cell.family, baseline.cell.depth), "black")
        axes.plot([baseline.cell.budget], [100 * baseline.best_test], marker="_",
                  markersize=18, markeredgewidth=2.5, color=colour, linestyle="none")
    if baselines:
        axes.plot([], [], marker="_", markersize=12, markeredgewidth=2.5, color="black",
                  linestyle="none", label="hard labels (best)")
    if teacher_accuracy is not None:
        axes.axhline(100 * teacher_accuracy, color="black", linewidth=1.2,
                     label=f"teacher ensemble ({100 * teacher_accuracy:.1f}%)")
    paper = paper_points(summaries)
    for family, depth, budget, accuracy in paper:
        colour = colour_of.get((family, depth), "black")
        axes.plot([budget], [accuracy], marker="o", markersize=8, fillstyle="none",
                  markeredgewidth=1.5, color=colour, linestyle="none")
    if paper:
        axes.plot([], [], marker="o", markersize=7, fillstyle="none", color="black",
                  linestyle="none", label="paper, Table 2 (best)")
        axes.axhline(PAPER_TEACHER_ACCURACY, color="black", linewidth=1.0, linestyle=":",
                     label=f"paper's teacher ({PAPER_TEACHER_ACCURACY}%)")
        bottom, top = axes.get_ylim()
        axes.set_ylim(bottom, max(top, PAPER_TEACHER_ACCURACY + 2))
    axes.set_xscale("log")
    axes.set_xlabel("number of parameters")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title(title or "Students mimicking the teacher: top-k mean (solid), "
                   "best and k-th best (dashed)", fontsize=9)
    axes.grid(True, which="both", alpha=0.3)
    if lines or baselines or teacher_accuracy is not None:
        axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tuner.report",
        description="Rebuild results.csv, results.md and figure.png of an experiment folder "
        "from the searches it holds (MLP and CNN runs merged), and its TensorBoard run "
        "logs/summary (the table and the figures).",
    )
    parser.add_argument("directory", help="experiment folder, e.g. runs/default")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    layout = ExperimentLayout(Path(args.directory))
    if not layout.searches.is_dir() and not layout.kept_results.is_file():
        print(f"error: {layout.root} holds no searches/ folder; pass an experiment folder such "
              "as runs/default (the one `python -m tuner.run` wrote)", file=sys.stderr)
        return 2
    report = write_report(layout.root)
    print(report.results_md.read_text())
    print(f"wrote {report.results_csv}, {report.results_md}, {report.figure} and the "
          f"TensorBoard run {report.summary_run.parent}")
    print(f"TensorBoard: tensorboard --logdir {layout.root} (its first page shows Figure 1; "
          f"the table: http://localhost:6006/{TABLE_PAGE})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
