"""The paper's published numbers (Urban et al., ICLR 2017) that the report and findings cite.

    paper_table()                 Table 2: (family, depth, budget) -> test accuracy (%)
    paper_figure(table, cell)     a cell's number, where the paper has its architecture and budget
    paper_gaps()                  per budget: the 1-conv CNN minus the best MLP (points)
    paper_teacher_distance()      the teacher (93.8%) minus the best student (points)

`paper_results.csv` holds Table 2; `paper_hard_labels.csv` the hard-label numbers of Table 1,
kept for reference (docs/results.md cites it).
"""

from __future__ import annotations

import csv
from pathlib import Path

from tuner.search.cells import Cell

PAPER_RESULTS = Path(__file__).with_name("paper_results.csv")
PAPER_TEACHER_ACCURACY = 93.8  # the 16-CNN ensemble (Urban et al. 2017, Table 1)

PaperTable = dict[tuple[str, int, float], float]


def paper_table() -> PaperTable:
    """The paper's Table 2: (family, depth, budget) -> test accuracy in percent."""
    with PAPER_RESULTS.open() as stream:
        return {
            (r["family"], int(r["depth"]), float(r["budget"])): float(r["test_accuracy_percent"])
            for r in csv.DictReader(stream)
        }


def paper_figure(table: PaperTable, cell: Cell) -> float | None:
    """The paper's number for a cell's architecture and budget (budgets match within 1%)."""
    for (family, depth, budget), accuracy in table.items():
        same_budget = abs(budget - cell.budget) <= 0.01 * budget
        if (family, depth) == (cell.family, cell.depth) and same_budget:
            return accuracy
    return None


def paper_gaps() -> dict[float, float]:
    """The paper's convolutional gap per budget: its 1-conv CNN minus its best MLP."""
    table = paper_table()
    budgets = sorted({budget for _, _, budget in table})
    return {b: round(table[("cnn", 1, b)] - max(a for (f, _, bb), a in table.items()
                                                 if f == "mlp" and bb == b), 1)
            for b in budgets}


def paper_teacher_distance() -> float:
    """Points between the paper's teacher (93.8%) and its best student."""
    return round(PAPER_TEACHER_ACCURACY - max(paper_table().values()), 1)
