"""The frontier's files: `frontier.csv`, `frontier.md`, `frontier.png`, `reliability.png`.

`tuner.frontier` measures; this module writes and reads what it measured, draws it, and gives
the report (`results.md`) its diagnostics section. Nothing here imports TensorFlow.

    rows = read_frontier(layout.frontier_csv)          # one FrontierRow per served trial
    [row.model for row in rows if row.pareto]           # the students worth shipping
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from mimic_tf.budgets import budget_label
from mimic_tf.files import atomic_path, atomic_write_text
from mimic_tf.layout import ExperimentLayout
from mimic_tf.vocabulary import HARD_LOSS, architecture_label

# What every latency figure was measured under: the columns that carry it in frontier.csv.
CONDITION_KEYS = ("cpu", "server", "server_threads", "batching", "latency_requests",
                  "throughput_batch_size")


@dataclasses.dataclass(frozen=True)
class FrontierRow:
    """One served trial: its cost, its accuracy, how it mimics, how fast it answers."""

    model: str  # the served name, `<cell>-t<trial>`
    cell: str
    family: str
    depth: int
    budget: float
    loss: str  # mimic | hard (a baseline search's trial)
    trial_id: str
    rank: int  # 1: the search's best trial by validation accuracy
    params: int
    flops: int  # forward FLOPs of one image (`mimic_tf.flops`)
    val_accuracy: float
    test_accuracy: float
    agreement: float  # top-1 agreement with the teacher on the test split
    kl_teacher_student: float  # nats
    logit_mse: float  # the mimic loss on the test split
    ece: float  # 15 equal-width bins
    p50_ms: float  # batch 1, sequential, over gRPC
    p99_ms: float
    throughput: float  # images/s at `throughput_batch_size` images a request
    pareto: bool  # no other student at least as good on both, better on one (tuner.frontier.pareto)
    conditions: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)

    @property
    def architecture(self) -> str:
        """`MLP 2 hidden`, `CNN 1 conv`, with `(hard)` for a baseline's trial."""
        label = architecture_label(self.family, self.depth)
        return f"{label} (hard)" if self.loss == HARD_LOSS else label

    def as_csv(self) -> dict[str, Any]:
        row = {field.name: _rounded(getattr(self, field.name))
               for field in dataclasses.fields(self) if field.name != "conditions"}
        return {**row, **{key: self.conditions.get(key, "") for key in CONDITION_KEYS}}


def _rounded(value: Any) -> Any:
    """Floats to 6 significant digits: the CSV is read by people too."""
    return float(f"{value:.6g}") if isinstance(value, float) else value


_NUMBERS = {"depth": int, "budget": float, "rank": int, "params": int, "flops": int}


def write_frontier_csv(rows: Sequence[FrontierRow], path: Path) -> Path:
    """One row per served trial, the measurement conditions in its last columns."""
    buffer = io.StringIO()
    names = [f.name for f in dataclasses.fields(FrontierRow) if f.name != "conditions"]
    writer = csv.DictWriter(buffer, fieldnames=[*names, *CONDITION_KEYS])
    writer.writeheader()
    writer.writerows(row.as_csv() for row in rows)
    return atomic_write_text(path, buffer.getvalue())


def read_frontier(path: Path) -> list[FrontierRow]:
    """The rows of a `frontier.csv` ([] when there is none)."""
    if not path.is_file():
        return []
    rows = []
    text_fields = {"model", "cell", "family", "loss", "trial_id"}
    with path.open(newline="") as file:
        for raw in csv.DictReader(file):
            values: dict[str, Any] = {}
            for field in dataclasses.fields(FrontierRow):
                if field.name == "conditions":
                    continue
                value = raw[field.name]
                if field.name in text_fields:
                    values[field.name] = value
                elif field.name == "pareto":
                    values[field.name] = value == "True"
                else:
                    values[field.name] = _NUMBERS.get(field.name, float)(value)
            values["conditions"] = {key: raw.get(key, "") for key in CONDITION_KEYS}
            rows.append(FrontierRow(**values))
    return rows


def read_measurement(layout: ExperimentLayout) -> dict[str, Any]:
    """`frontier/measurement.json` ({} before the first measurement)."""
    path = layout.frontier_measurement
    return json.loads(path.read_text()) if path.is_file() else {}


def conditions_line(conditions: Mapping[str, Any]) -> str:
    """The conditions of the latency figures, on one line."""
    return (f"{conditions.get('server', '?')} server on 127.0.0.1 ({conditions.get('cpu', '?')};"
            f" TensorFlow {conditions.get('server_threads', '?')}; server-side batching "
            f"{conditions.get('batching', '?')}); batch-1 latency of "
            f"{conditions.get('latency_requests', '?')} sequential Predict calls a student, "
            f"throughput at {conditions.get('throughput_batch_size', '?')} images a request, "
            "students interleaved and warmed up first")


def _cost(row: FrontierRow) -> str:
    return f"{row.params:,} | {row.flops / 1e6:,.1f}"


def frontier_markdown(rows: Sequence[FrontierRow], *, teacher_accuracy: float | None,
                      seconds: float | None = None, command: str = "") -> str:
    """`frontier.md`: the Pareto-optimal students, fastest first, and how they were measured."""
    front = sorted((row for row in rows if row.pareto), key=lambda row: row.p99_ms)
    conditions = rows[0].conditions if rows else {}
    lines = [
        "# The accuracy-latency frontier",
        "",
        f"{len(front)} of {len(rows)} served students are Pareto-optimal: no other student is "
        "at least as accurate on the test split and as fast at batch-1 p99, and better on one "
        "of the two. Fastest first.",
        "",
        "| student | trial | params | MFLOPs/image | test acc % | agreement % | p50 ms | "
        "p99 ms | img/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in front:
        lines.append(
            f"| {row.architecture}, {budget_label(row.budget)} | {row.trial_id} | {_cost(row)} | "
            f"{100 * row.test_accuracy:.2f} | {100 * row.agreement:.2f} | {row.p50_ms:.2f} | "
            f"{row.p99_ms:.2f} | {row.throughput:,.0f} |")
    if teacher_accuracy is not None:
        lines += ["", f"Teacher: {100 * teacher_accuracy:.1f}% test (not served)."]
    lines += [
        "",
        f"Measured: {conditions_line(conditions)}.",
        "",
        "The ranking is the result, not the absolute milliseconds: a C++ "
        "`tensorflow_model_server` answers a request with less overhead than this Python gRPC "
        "server (`benchmarks/serving_overhead.py` measures that floor with an echo model), which "
        "lowers every student's latency by about the same amount. Every student's row, with "
        "its diagnostics: frontier.csv.",
    ]
    if seconds is not None:
        lines.append(f"\nThe stage took {seconds:.0f} s" + (f" (`{command}`)." if command
                                                            else "."))
    return "\n".join(lines) + "\n"


def best_of_each_search(rows: Sequence[FrontierRow]) -> list[FrontierRow]:
    """Rank 1 of every search, in table order (MLP before CNN, shallow first, small first)."""
    best = [row for row in rows if row.rank == 1]
    return sorted(best, key=lambda r: (r.loss, r.family != "mlp", r.depth, r.budget))


def diagnostics_section(rows: Sequence[FrontierRow], teacher: Mapping[str, float] | None
                        ) -> list[str]:
    """The lines results.md shows: how each search's best student mimics the teacher."""
    if not rows:
        return []
    lines = [
        "## Mimic diagnostics (test split)",
        "",
        "Each search's best student against the teacher ensemble: top-1 agreement, "
        "KL(teacher || student) of the softmaxes in nats, the mimic loss (mean summed squared "
        "logit difference) and the expected calibration error (15 bins); p99 is the served "
        "batch-1 latency (frontier.md). Reliability diagrams: reliability.png.",
        "",
        "| student | budget | test acc % | agreement % | KL | logit MSE | ECE % | p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    if teacher:
        lines.append(f"| teacher | - | {100 * teacher['accuracy']:.2f} | 100.00 | 0 | 0 | "
                     f"{100 * teacher['ece']:.1f} | - |")
    for row in best_of_each_search(rows):
        lines.append(
            f"| {row.architecture} | {budget_label(row.budget)} | {100 * row.test_accuracy:.2f} | "
            f"{100 * row.agreement:.2f} | {row.kl_teacher_student:.3f} | {row.logit_mse:.2f} | "
            f"{100 * row.ece:.1f} | {row.p99_ms:.2f} |")
    return lines


def draw_frontier(rows: Sequence[FrontierRow], path: Path, *,
                  teacher_accuracy: float | None, title: str = "") -> Path:
    """Test accuracy against batch-1 p99 (log), one colour per architecture, the front as a
    step line, the teacher's accuracy as a line; hard-label trials hollow."""
    figure = Figure(figsize=(9.0, 5.0), dpi=120)
    axes = figure.add_subplot()
    colours = matplotlib.colormaps["tab10"]
    architectures = sorted({(r.family != "mlp", r.depth, r.family) for r in rows})
    colour_of = {(family, depth): colours(i % 10)
                 for i, (_, depth, family) in enumerate(architectures)}
    for (family, depth), colour in colour_of.items():
        for loss in ("mimic", HARD_LOSS):
            points = [r for r in rows if (r.family, r.depth, r.loss) == (family, depth, loss)]
            if not points:
                continue
            label = architecture_label(family, depth) + (" (hard labels)" if loss == HARD_LOSS
                                                         else "")
            axes.scatter([r.p99_ms for r in points], [100 * r.test_accuracy for r in points],
                         s=[18 + 60 * (r.budget / max(x.budget for x in rows)) for r in points],
                         color=colour if loss != HARD_LOSS else "none", edgecolors=colour,
                         linewidths=1.0, alpha=0.85, label=label)
    front = sorted((r for r in rows if r.pareto), key=lambda r: r.p99_ms)
    if front:
        xs = [r.p99_ms for r in front]
        ys = [100 * r.test_accuracy for r in front]
        axes.step(xs + [xs[-1] * 1.15], ys + [ys[-1]], where="post", color="black",
                  linewidth=1.0, label="Pareto front")
    if teacher_accuracy is not None:
        axes.axhline(100 * teacher_accuracy, color="black", linestyle=":", linewidth=1.0,
                     label=f"teacher ({100 * teacher_accuracy:.1f}%, not served)")
    axes.set_xscale("log")
    axes.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    axes.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    axes.tick_params(axis="x", which="minor", labelsize=7)
    axes.set_xlabel("served latency, batch 1, p99 (ms, log)")
    axes.set_ylabel("test accuracy (%)")
    axes.set_title(title or "Which student to ship: accuracy against served latency",
                   fontsize=8)
    axes.grid(True, which="both", alpha=0.3)
    if rows:
        axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
    return path


def draw_reliability(diagrams: Mapping[str, Sequence[Mapping[str, float]]],
                     eces: Mapping[str, float], path: Path) -> Path:
    """One reliability diagram per model (accuracy against confidence per bin, the diagonal
    perfect calibration, the bar's shade its share of images)."""
    figure = Figure(figsize=(3.3 * max(1, len(diagrams)), 3.5), dpi=120)
    panels = figure.subplots(1, max(1, len(diagrams)), squeeze=False)[0]
    for axes, (name, bins) in zip(panels, diagrams.items(), strict=False):
        total = sum(b["count"] for b in bins) or 1
        for b in bins:
            if b["count"]:
                axes.bar(b["low"], b["accuracy"], width=b["high"] - b["low"], align="edge",
                         color="tab:blue", alpha=0.3 + 0.7 * min(1.0, 5 * b["count"] / total),
                         edgecolor="black", linewidth=0.4)
        axes.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=0.8)
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1)
        axes.set_title(f"{name}\nECE {100 * eces[name]:.1f}%", fontsize=8)
        axes.set_xlabel("confidence", fontsize=8)
        axes.set_ylabel("accuracy", fontsize=8)
        axes.tick_params(labelsize=7)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png")
    return path


def frontier_files(layout: ExperimentLayout) -> list[Path]:
    """The frontier's files that exist, for listings."""
    return [path for path in (layout.frontier_csv, layout.frontier_md, layout.frontier_png,
                              layout.reliability_png) if path.is_file()]
