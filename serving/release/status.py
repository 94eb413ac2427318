"""A serving base's state as rows: each model's versions, labels and how each got there.

    print(format_status(status_rows("serving")))    # `python -m serving.release status`

Reads the serving base alone (`serving_base.py`); no TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from serving.release.serving_base import (
    ModelState,
    model_names,
    read_lineage,
    read_state,
)


def status_rows(serving_base: str | Path, name: str | None = None) -> list[dict[str, Any]]:
    """One row per version of each model: labels, served, and its blessing record."""
    names = [name] if name else model_names(serving_base)
    rows = []
    for model in names:
        state: ModelState = read_state(serving_base, model)
        for version in sorted(set(state.versions) | set(state.served), reverse=True):
            lineage = read_lineage(serving_base, model, version) or {}
            evaluation = lineage.get("evaluation") or {}
            metrics = evaluation.get("candidate") or {}
            rows.append({
                "model": model,
                "version": version,
                "labels": state.labels_of(version),
                "served": version in state.served,
                "pushed_at": lineage.get("pushed_at"),
                "infra": (lineage.get("infra_validation") or {}).get("verdict"),
                "verdict": evaluation.get("verdict"),
                "accuracy": metrics.get("accuracy"),
                "p99_ms": metrics.get("latency_p99_ms"),
                "params": metrics.get("params"),
                "trial": lineage.get("trial_id"),
                "source": lineage.get("run") or lineage.get("candidate"),
            })
    return rows


def format_status(rows: Sequence[Mapping[str, Any]]) -> str:
    """The status rows as a fixed-width table."""
    if not rows:
        return "no models in this serving base; push one with python -m serving.release push\n"
    header = ("model", "version", "labels", "served", "blessing", "accuracy", "p99 ms",
              "params", "pushed at", "source")

    def cells(row):
        def number(value, spec):
            return format(value, spec) if isinstance(value, (int, float)) else "-"
        blessing = "/".join(v for v in (row["infra"], row["verdict"]) if v) or "-"
        return (row["model"], str(row["version"]), ",".join(row["labels"]) or "-",
                "yes" if row["served"] else "no", blessing, number(row["accuracy"], ".4f"),
                number(row["p99_ms"], ".3f"), number(row["params"], ","),
                row["pushed_at"] or "-", str(row["source"] or "-"))

    table = [header, *(cells(row) for row in rows)]
    widths = [max(len(line[column]) for line in table) for column in range(len(header))]
    return "".join("  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True))
                   .rstrip()
                   + "\n" for line in table)
