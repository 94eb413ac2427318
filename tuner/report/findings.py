"""The paper's five findings, checked on one experiment's results (`python -m tuner.findings`).

Reads only the published result files, so it runs as well on `results/<experiment>/` as on
`runs/<experiment>/`:

    results.csv                 one row per trial (`tuner.report.rows`); rank 1 = best by validation
    teacher.json                or teacher/teacher.json: the ensemble's test accuracy

and writes `findings.md` and `findings.json` beside them. A student's accuracy is the test
accuracy of its search's best trial by validation accuracy, as in the paper's Table 2; the
mean of the top-k trials (its Figure 1) is given beside it where a finding compares cells.

    1. every convolutional student beats every MLP of the same budget; the convolutional gap
       (1-conv student minus the best MLP, the paper's definition) per budget
    2. CNN accuracy rises with each added conv layer, at every budget
    3. the best MLPs have 2 or 3 hidden layers
    4. distillation beats hard 0/1 labels for every CNN with a baseline, most for 1 conv layer
    5. the best student's distance to the teacher ensemble

and, below them in findings.md, whether the searches' best trials ran long enough
(`tuner.report.convergence`, from results.csv's epoch columns), on which a failing finding
may hinge.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mimic_tf.budgets import budget_label
from mimic_tf.files import atomic_write_text
from mimic_tf.layout import ExperimentLayout
from tuner import artifacts
from tuner.report.convergence import LAST_EPOCHS, NEAR_CONVERGENCE_GAIN, near_and_rising
from tuner.report.paper import paper_gaps, paper_teacher_distance
from tuner.report.rows import CellSummary, configured_search, read_summaries


class FindingsError(ValueError):
    """Result files that are missing or hold too little to check a finding."""


def read_students(results_csv: Path) -> list[CellSummary]:
    """The searches in `results.csv` whose best trial was tested (others are unfinished)."""
    if not results_csv.is_file():
        raise FindingsError(f"{results_csv} not found; run `python -m tuner.report DIR` first")
    students = [s for s in read_summaries(results_csv) if s.best_test is not None]
    if not students:
        raise FindingsError(f"{results_csv} has no search with a tested best trial")
    return sorted(students, key=lambda s: (s.cell.loss != "mimic", s.cell.family != "mlp",
                                           s.cell.budget, s.cell.depth))


def read_teacher_accuracy(layout: ExperimentLayout) -> float | None:
    """The ensemble's test accuracy in percent, from teacher.json or teacher/teacher.json."""
    for path in (layout.published_teacher_summary, layout.teacher_summary):
        teacher = artifacts.read_teacher_summary(path)
        if teacher is not None:
            return None if teacher.test_accuracy is None else 100 * teacher.test_accuracy
    return None


def _key(summary: CellSummary) -> tuple[str, int, float]:
    return (summary.cell.family, summary.cell.depth, summary.cell.budget)


def _points(value: float) -> str:
    return f"{value:+.1f}"


def check_findings(students: Sequence[CellSummary], teacher: float | None,
                   trials: int | None = None) -> list[dict[str, Any]]:
    """The five findings: for each, whether it holds here, the numbers, and one line of text
    (`trials`: a search's planned trials, where known; a baseline with fewer is part way)."""
    mimic = [s for s in students if s.cell.loss == "mimic"]
    hard = {_key(s): s for s in students if s.cell.is_baseline}
    budgets = sorted({s.cell.budget for s in mimic})
    cells = {_key(s): s for s in mimic}

    def family_at(family: str, budget: float) -> list[CellSummary]:
        return sorted((s for s in mimic if s.cell.family == family and s.cell.budget == budget),
                      key=lambda s: s.cell.depth)

    findings = []

    # 1. Every CNN beats every MLP of its budget; the convolutional gap.
    gaps, margins = {}, {}
    for budget in budgets:
        mlps, cnns = family_at("mlp", budget), family_at("cnn", budget)
        if not mlps or not cnns:
            continue
        best_mlp = max(s.best_percent for s in mlps)
        margins[budget] = min(s.best_percent for s in cnns) - best_mlp
        one_conv = cells.get(("cnn", 1, budget))
        if one_conv is not None:
            gaps[budget] = one_conv.best_percent - best_mlp
    holds = all(margin > 0 for margin in margins.values()) if margins else None
    paper_gap = paper_gaps()
    text = "; ".join(
        f"{budget_label(b)}: gap {gaps[b]:.1f} points"
        + (f" (paper {paper_gap[b]})" if b in paper_gap else "")
        + f", weakest CNN minus best MLP {_points(margins[b])}"
        for b in budgets if b in gaps
    )
    findings.append({
        "finding": 1, "claim": "every convolutional student beats every MLP of the same budget",
        "holds": holds, "measured": holds is not None,
        "text": text or "no budget has both MLP and CNN searches",
        "convolutional_gap": {budget_label(b): round(g, 2) for b, g in gaps.items()},
        "weakest_cnn_minus_best_mlp": {budget_label(b): round(m, 2) for b, m in margins.items()},
    })

    # 2. CNN accuracy rises with each conv layer added.
    steps, failures = {}, []
    for budget in budgets:
        cnns = family_at("cnn", budget)
        steps[budget] = [(a.cell.depth, b.cell.depth, b.best_percent - a.best_percent,
                          b.mean_percent - a.mean_percent)
                         for a, b in zip(cnns, cnns[1:], strict=False)
                         if b.cell.depth == a.cell.depth + 1]
        failures += [(budget, d0, d1, delta) for d0, d1, delta, _ in steps[budget] if delta <= 0]
    holds = not failures if any(steps.values()) else None
    text = "; ".join(
        f"{budget_label(b)}: " + ", ".join(f"{d0}->{d1} {_points(delta)} (top-k mean "
                                            f"{_points(mean)})" for d0, d1, delta, mean in s)
        for b, s in steps.items() if s
    )
    findings.append({
        "finding": 2, "claim": "CNN student accuracy rises with the number of conv layers",
        "holds": holds, "measured": holds is not None,
        "text": text or "no budget has CNN searches of consecutive depths",
        "steps": {budget_label(b): [{"from": d0, "to": d1, "best": round(delta, 2),
                                     "top_mean": round(mean, 2)} for d0, d1, delta, mean in s]
                  for b, s in steps.items()},
    })

    # 3. The best MLPs have 2-3 hidden layers.
    best_depths = {}
    for budget in budgets:
        mlps = family_at("mlp", budget)
        if mlps:
            best_depths[budget] = max(mlps, key=lambda s: s.best_percent)
    holds = all(s.cell.depth in (2, 3) for s in best_depths.values()) if best_depths else None
    parts = []
    for budget, best_mlp in best_depths.items():
        others = [s.best_percent for s in family_at("mlp", budget) if s is not best_mlp]
        lead = f", {best_mlp.best_percent - max(others):.1f} points ahead of the next depth" \
            if others else ""
        parts.append(f"{budget_label(budget)}: {best_mlp.cell.depth} hidden "
                     f"({best_mlp.best_percent:.1f}%{lead})")
    text = "; ".join(parts)
    findings.append({
        "finding": 3, "claim": "the best MLPs have 2-3 hidden layers, not 1, 4 or 5",
        "holds": holds, "measured": holds is not None,
        "text": text or "no MLP searches in these results",
        "best_mlp_depth": {budget_label(b): s.cell.depth for b, s in best_depths.items()},
    })

    # 4. Distillation beats hard labels, most for the shallowest CNN.
    gains = {key: cells[key].best_percent - baseline.best_percent
             for key, baseline in hard.items() if key in cells}
    cnn_gains = {key: gain for key, gain in gains.items() if key[0] == "cnn"}
    holds = bool(gains) and all(gain > 0 for gain in gains.values())
    shallowest_most = None
    for budget in sorted({key[2] for key in cnn_gains}):
        at_budget = {key[1]: gain for key, gain in cnn_gains.items() if key[2] == budget}
        if 1 in at_budget and len(at_budget) > 1:
            most = at_budget[1] >= max(at_budget.values())
            shallowest_most = most if shallowest_most is None else shallowest_most and most
    holds = holds and shallowest_most is not False
    # Baselines still to come: CNN students without one at a budget that has one, and
    # baselines part way (a search in parts: fewer trials than planned).
    pending = [cells[key].cell.label for key in sorted(cells) if key[0] == "cnn"
               and key not in hard and any(k[0] == "cnn" and k[2] == key[2] for k in hard)]
    partial = {key for key in gains if trials and hard[key].trials < trials}
    text = "; ".join(f"{cells[key].cell.label}: {_points(gain)}"
                     + (f" (hard labels: {hard[key].trials} of {trials} trials so far)"
                        if key in partial else "")
                     for key, gain in sorted(gains.items()))
    if shallowest_most is not None:
        text += "; largest for 1 conv layer" if shallowest_most else \
            "; not largest for 1 conv layer"
    # A baseline's later trials can only raise it: a gain under zero is final, the rest waits.
    so_far = bool(gains) and bool(pending or partial) and all(g > 0 for g in gains.values())
    if pending:
        text += f"; no baseline yet for {', '.join(pending)}"
    findings.append({
        "finding": 4, "claim": "distillation beats hard-label training of the same architecture "
        "and budget, most for the shallowest CNN",
        "holds": None if so_far else (holds if gains else None), "so_far": so_far,
        "holds_so_far": holds if so_far else None,
        "measured": bool(gains),
        "text": text or "no hard-label baselines in these results",
        "distillation_gain": {f"{f}-d{d}-b{budget_label(b)}": round(g, 2)
                              for (f, d, b), g in sorted(gains.items())},
        "largest_for_one_conv": shallowest_most,
    })

    # 5. The best student's distance to the teacher.
    best = max(mimic, key=lambda s: s.best_percent)
    distance = None if teacher is None else teacher - best.best_percent
    findings.append({
        "finding": 5, "claim": "the best student comes close to the teacher ensemble",
        "holds": None,  # a distance, not a yes/no: the text gives it beside the paper's
        "measured": True,
        "text": (f"best student {best.cell.label}: {best.best_percent:.1f}%; teacher "
                 + ("unknown" if teacher is None else
                    f"{teacher:.1f}%, {distance:.1f} points above it")
                 + f" (paper: {paper_teacher_distance()} points)"),
        "best_student": best.cell.label, "best_student_accuracy": round(best.best_percent, 2),
        "teacher_accuracy": None if teacher is None else round(teacher, 2),
        "distance": None if distance is None else round(distance, 2),
    })
    return findings


def verdict(finding: dict[str, Any]) -> str:
    """'holds', 'does not hold', 'measured' (a distance, not a yes/no), 'holds so far' or
    'does not hold so far' (some of what it compares is still to come) or 'not measured'."""
    if not finding["measured"]:
        return "not measured"
    if finding.get("so_far"):
        return "holds so far" if finding["holds_so_far"] else "does not hold so far"
    return {True: "holds", False: "does not hold", None: "measured"}[finding["holds"]]


def trial_length(students: Sequence[CellSummary]) -> str | None:
    """One line on whether the searches' best trials ran long enough (`tuner.report.convergence`),
    which a finding that fails may hinge on; None when results.csv has no trial epochs."""
    measured = [s for s in students if s.best_convergence is not None]
    if not measured:
        return None
    near, rising_at = near_and_rising([s.best_convergence for s in measured])
    rising = [measured[index] for index in rising_at]
    line = (f"**Trial length:** {near} of {len(measured)} searches' best trials near "
            f"convergence (gaining under {100 * NEAR_CONVERGENCE_GAIN:.1f} points over their "
            f"last {LAST_EPOCHS} epochs, or stopped early by the schedule)")
    if rising:
        line += "; still rising at the cap: " + ", ".join(
            f"{s.cell.label} ({100 * s.best_convergence.last_gain:+.1f})" for s in rising)
    return line + "."


def render_markdown(findings: Sequence[dict[str, Any]], source: str,
                    students: Sequence[CellSummary] = ()) -> str:
    """findings.md: one line per finding, then whether the trials ran long enough."""
    lines = [f"# The paper's findings, checked on {source}", "",
             "Accuracies are test accuracies (%) of each search's best trial by validation "
             "accuracy; differences are in percentage points. Made by "
             f"`python -m tuner.findings {source}`.", ""]
    for finding in findings:
        lines.append(f"{finding['finding']}. **{finding['claim']}: "
                     f"{verdict(finding)}.** {finding['text']}.")
    length = trial_length(students)
    if length is not None:
        lines += ["", length]
    return "\n".join(lines) + "\n"


def shown_path(directory: str | Path) -> str:
    """`directory` as findings.md names it: relative to the git checkout that holds it (the
    same words on every machine, as a campaign commits them), else as given."""
    resolved = Path(directory).resolve()
    for root in resolved.parents:
        if (root / ".git").exists():
            return resolved.relative_to(root).as_posix()
    return str(directory)


def write_findings(directory: str | Path, out: str | Path | None = None) -> list[dict[str, Any]]:
    """Check the findings on `directory`'s result files; write findings.md and .json to `out`."""
    layout = ExperimentLayout(Path(directory))
    written = ExperimentLayout(Path(out)) if out is not None else layout
    students = read_students(layout.results_csv)
    search = configured_search(layout.root)
    findings = check_findings(students, read_teacher_accuracy(layout),
                              None if search is None else search.trials)
    atomic_write_text(written.findings_json, json.dumps(findings, indent=2) + "\n")
    markdown = render_markdown(findings, shown_path(directory), students)
    atomic_write_text(written.findings_md, markdown)
    return findings
