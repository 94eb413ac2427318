"""Model evaluation over gRPC and the blessing: TFX's Evaluator for served students.

`measure_served` sends a labelled split to a served model and the same batches to the SavedModel
in process: accuracy, argmax agreement and the largest logit difference between the two.
`measure_latencies` times batch-1 Predict calls of several models interleaved, so candidate and
baseline meet the same machine load. `judge` checks the metrics against value thresholds and,
when there is a baseline (the version labelled `stable`), change thresholds; as in TFX, change
thresholds are skipped without a baseline. `Blessing.write` leaves `BLESSED` or `NOT_BLESSED`
and `evaluation.json` (every metric, every threshold, each verdict).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from mimic_tf.files import atomic_write_text
from serving.client import ServingClient
from serving.compare import (
    batch1_durations,
    parameter_count,
    percentiles_ms,
    served_and_in_process_logits,
)
from serving.signatures import PREDICT_SIGNATURE

BLESSED = "BLESSED"
NOT_BLESSED = "NOT_BLESSED"
EVALUATION_FILE = "evaluation.json"
SERVED_TOLERANCE = 1e-5  # max |served - in-process| logit


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """What a candidate must meet; None leaves a check out.

    Value thresholds: `min_accuracy`, `max_p99_ms`, `max_abs_logit_difference` (served against
    in process). Change thresholds, against the baseline: `max_accuracy_drop` (baseline accuracy
    minus candidate accuracy, in accuracy units: 0.01 is one point) and `max_latency_growth`
    (candidate p99 / baseline p99).
    """

    min_accuracy: float | None = None
    max_accuracy_drop: float | None = None
    max_p99_ms: float | None = None
    max_latency_growth: float | None = None
    max_abs_logit_difference: float = SERVED_TOLERANCE

    def to_dict(self) -> dict[str, float | None]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class ServedMetrics:
    """One served model measured on a labelled split."""

    examples: int
    accuracy: float  # served over gRPC
    in_process_accuracy: float
    agreement: float  # fraction of images whose served and in-process argmax agree
    max_abs_logit_difference: float
    params: int
    latency_p50_ms: float = float("nan")  # batch 1, filled by measure_latencies
    latency_p99_ms: float = float("nan")

    def to_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Check:
    """One threshold against one metric."""

    name: str
    kind: str  # value | change
    value: float
    threshold: float
    passed: bool
    description: str

    def line(self) -> str:
        """One line for the terminal: verdict, measured value, threshold."""
        return f"{'PASS' if self.passed else 'FAIL'} {self.description}"


def measure_served(
    client: ServingClient,
    name: str,
    saved_model_dir: str | Path,
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int = 256,
) -> ServedMetrics:
    """Accuracy of served model `name` over gRPC, and against the SavedModel in process."""
    loaded = tf.saved_model.load(str(saved_model_dir))
    signature = loaded.signatures[PREDICT_SIGNATURE]
    served, local = served_and_in_process_logits(client, name, signature, images, batch_size)
    labels = np.asarray(labels).reshape(-1)
    return ServedMetrics(
        examples=len(images),
        accuracy=float(np.mean(served.argmax(1) == labels)),
        in_process_accuracy=float(np.mean(local.argmax(1) == labels)),
        agreement=float(np.mean(served.argmax(1) == local.argmax(1))),
        max_abs_logit_difference=float(np.max(np.abs(served - local))),
        params=parameter_count(saved_model_dir, loaded),
    )


def measure_latencies(
    client: ServingClient, names: Sequence[str], images: np.ndarray, requests: int = 500,
    warmup: int = 30,
) -> dict[str, tuple[float, float]]:
    """(p50, p99) ms of batch-1 Predict per model, the models' calls interleaved."""
    durations = batch1_durations(client, names, images, requests, warmup)
    result = {}
    for name, seconds in durations.items():
        p50, _, p99 = percentiles_ms(seconds)
        result[name] = (p50, p99)
    return result


def judge(candidate: ServedMetrics, baseline: ServedMetrics | None,
          thresholds: Thresholds) -> list[Check]:
    """Every check the thresholds ask for; change checks only with a baseline."""
    checks = [Check("served_matches_in_process", "value", candidate.max_abs_logit_difference,
                    thresholds.max_abs_logit_difference,
                    candidate.max_abs_logit_difference <= thresholds.max_abs_logit_difference,
                    f"max |served - in-process| logit {candidate.max_abs_logit_difference:.3g} "
                    f"<= {thresholds.max_abs_logit_difference:g}")]
    if thresholds.min_accuracy is not None:
        checks.append(Check("min_accuracy", "value", candidate.accuracy, thresholds.min_accuracy,
                            candidate.accuracy >= thresholds.min_accuracy,
                            f"accuracy {candidate.accuracy:.4f} >= min-accuracy "
                            f"{thresholds.min_accuracy:.4f}"))
    if thresholds.max_p99_ms is not None:
        checks.append(Check("max_p99_ms", "value", candidate.latency_p99_ms,
                            thresholds.max_p99_ms,
                            candidate.latency_p99_ms <= thresholds.max_p99_ms,
                            f"p99 latency {candidate.latency_p99_ms:.3f} ms <= max-p99-ms "
                            f"{thresholds.max_p99_ms:g} ms"))
    if baseline is None:
        return checks
    if thresholds.max_accuracy_drop is not None:
        drop = baseline.accuracy - candidate.accuracy
        checks.append(Check("max_accuracy_drop", "change", drop, thresholds.max_accuracy_drop,
                            drop <= thresholds.max_accuracy_drop,
                            f"accuracy drop {drop:+.4f} (stable {baseline.accuracy:.4f} -> "
                            f"{candidate.accuracy:.4f}) <= max-accuracy-drop "
                            f"{thresholds.max_accuracy_drop:.4f}"))
    if thresholds.max_latency_growth is not None:
        growth = candidate.latency_p99_ms / baseline.latency_p99_ms
        checks.append(Check("max_latency_growth", "change", growth,
                            thresholds.max_latency_growth,
                            growth <= thresholds.max_latency_growth,
                            f"p99 latency growth x{growth:.2f} (stable "
                            f"{baseline.latency_p99_ms:.3f} ms -> {candidate.latency_p99_ms:.3f}"
                            f" ms) <= max-latency-growth x{thresholds.max_latency_growth:g}"))
    return checks


@dataclasses.dataclass
class Blessing:
    """The evaluation's verdict with everything it rests on."""

    checks: list[Check]
    candidate: ServedMetrics
    baseline: ServedMetrics | None
    baseline_version: int | None
    thresholds: Thresholds
    data: str

    @property
    def blessed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def marker(self) -> str:
        return BLESSED if self.blessed else NOT_BLESSED

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.marker,
            "data": self.data,
            "candidate": self.candidate.to_dict(),
            "baseline": self.baseline.to_dict() if self.baseline else None,
            "baseline_version": self.baseline_version,
            "thresholds": self.thresholds.to_dict(),
            "checks": [dataclasses.asdict(check) for check in self.checks],
        }

    def write(self, records_dir: str | Path) -> Path:
        """Write `evaluation.json`, then the `BLESSED` or `NOT_BLESSED` marker."""
        records_dir = Path(records_dir)
        atomic_write_text(records_dir / EVALUATION_FILE,
                          json.dumps(self.to_dict(), indent=2) + "\n")
        failed = [check.description for check in self.checks if not check.passed]
        return atomic_write_text(records_dir / self.marker,
                                 json.dumps({"failed": failed}, indent=2) + "\n")
