"""`figure.png`: the paper's Figure 1 for an experiment's searches (matplotlib, no pyplot).

Test accuracy against parameters (log x): per architecture a solid line through the mean test
accuracy of each search's top k trials and dashed lines through the best and the k-th best of
them, the teacher ensemble as a horizontal line, hard-label baselines as short horizontal marks
at their budgets. Where a budget coincides with one of the paper's, its Table 2 figure is drawn
as a hollow marker in the architecture's colour, with the paper's teacher as a dotted line.

    draw_figure(summaries, layout.figure, teacher_accuracy=0.92, title="...")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from mimic_tf.files import atomic_path
from tuner.report.paper import PAPER_TEACHER_ACCURACY, paper_figure, paper_table
from tuner.report.rows import CellSummary


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
