"""The sections after the searches: the release gate (`release`) and the frontier (`frontier`)."""

from __future__ import annotations

import dataclasses

from mimic_tf.config.checks import check
from mimic_tf.vocabulary import (
    CANARY,
    PICK_BEST,
    PICK_FRONTIER,
    RELEASE_LABELS,
    RELEASE_PICKS,
    RELEASE_SPLITS,
    quoted,
)


@dataclasses.dataclass(frozen=True)
class ReleaseConfig:
    """Pushing each search's best student through the release gate (`serving.release`)."""

    push: bool = False  # at the end of tuner.run (python -m tuner.publish --push does it later)
    serving_base: str = ""  # the folder a model server serves; "": runs/<experiment>/serving
    label: str = CANARY  # label of a pushed version: canary (promote later) | stable
    split: str = "validation"  # the labelled split the gate evaluates on
    min_accuracy: float = 0.0  # value threshold on served accuracy (0: off)
    max_accuracy_drop: float = 0.01  # change threshold: stable's accuracy - candidate's (1: off)
    max_p99_ms: float = 0.0  # value threshold on batch-1 p99 latency, ms (0: off)
    max_latency_growth: float = 0.0  # change threshold: candidate p99 / stable p99 (0: off)
    latency_requests: int = 500  # batch-1 requests timed per model
    # Which students to push: each search's best (best) or the most accurate student of the
    # accuracy-latency frontier whose measured p99 is within max_p99_ms (frontier).
    pick: str = PICK_BEST

    def validate(self) -> None:
        check(self.pick in RELEASE_PICKS, "release.pick", self.pick, quoted(RELEASE_PICKS))
        check(self.pick != PICK_FRONTIER or self.max_p99_ms > 0, "release.max_p99_ms",
               self.max_p99_ms, "a latency budget in ms > 0 with release.pick: frontier")
        check(self.label in RELEASE_LABELS, "release.label", self.label,
               quoted(RELEASE_LABELS))
        check(self.split in RELEASE_SPLITS, "release.split", self.split,
               quoted(RELEASE_SPLITS))
        check(0.0 <= self.min_accuracy <= 1.0, "release.min_accuracy", self.min_accuracy,
               "an accuracy in [0, 1] (0: off)")
        check(0.0 <= self.max_accuracy_drop <= 1.0, "release.max_accuracy_drop",
               self.max_accuracy_drop, "an accuracy difference in [0, 1] (1: off)")
        check(self.max_p99_ms >= 0.0, "release.max_p99_ms", self.max_p99_ms,
               "milliseconds >= 0 (0: off)")
        check(self.max_latency_growth >= 0.0, "release.max_latency_growth",
               self.max_latency_growth, "a ratio >= 0 (0: off)")
        check(self.latency_requests >= 1, "release.latency_requests", self.latency_requests,
               ">= 1")


@dataclasses.dataclass(frozen=True)
class FrontierConfig:
    """Serving every trained student to measure the accuracy-latency frontier (`tuner.frontier`)."""

    measure: bool = True  # at the end of tuner.run (python -m tuner.frontier does it later)
    latency_requests: int = 200  # batch-1 requests timed per student, interleaved
    warmup_requests: int = 20  # untimed batch-1 requests per student first
    throughput_batch_size: int = 32  # images per request of the throughput measurement
    throughput_requests: int = 20  # such requests timed per student, interleaved

    def validate(self) -> None:
        for key in ("latency_requests", "throughput_batch_size", "throughput_requests"):
            check(getattr(self, key) >= 1, f"frontier.{key}", getattr(self, key), ">= 1")
        check(self.warmup_requests >= 0, "frontier.warmup_requests", self.warmup_requests,
               ">= 0")
