"""Whether a trial ran long enough to be near convergence.

A search's result is only as good as its trials are long. The test the replication's protocol
sets: the trial's validation accuracy gains less than half a point over its last two epochs,
or the plateau schedule stopped it before its epoch cap (it had stopped improving). A best
trial still rising at its cap says that longer trials would change the search's result.

    Convergence.of(history)          from a trial's `history.json` (`tuner.artifacts`)
    convergence.near_convergence     True, False, or None (too few epochs to tell)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from tuner.artifacts import TrialHistory

NEAR_CONVERGENCE_GAIN = 0.005  # validation accuracy, as a fraction: half a point
LAST_EPOCHS = 2  # the gain is measured over this many final epochs


@dataclasses.dataclass(frozen=True)
class Convergence:
    """How a trial ended: the epochs it ran of its cap and its final validation gain."""

    epochs_run: int
    epoch_cap: int
    last_gain: float | None  # val accuracy gained over the last LAST_EPOCHS epochs (fraction)

    @classmethod
    def of(cls, history: TrialHistory) -> Convergence:
        accuracy = history.metrics.get("val_accuracy", [])
        ends = (accuracy[-1 - LAST_EPOCHS], accuracy[-1]) if len(accuracy) > LAST_EPOCHS else ()
        gain = ends[1] - ends[0] if ends and None not in ends else None
        return cls(epochs_run=history.epochs_run, epoch_cap=history.epoch_cap, last_gain=gain)

    @property
    def stopped_early(self) -> bool:
        """The plateau schedule ended the trial before its cap."""
        return self.epochs_run < self.epoch_cap

    @property
    def near_convergence(self) -> bool | None:
        """Stopped by the schedule, or gaining under half a point at the end; None when it ran
        too few epochs to measure the gain."""
        if self.stopped_early:
            return True
        if self.last_gain is None:
            return None
        return self.last_gain < NEAR_CONVERGENCE_GAIN

    @property
    def verdict(self) -> str:
        """A few words for a table: why it counts as converged, or that it was still rising."""
        if self.stopped_early:
            return "stopped by the schedule"
        return {True: "near convergence", False: "still rising at the cap",
                None: f"under {LAST_EPOCHS + 1} epochs: not measured"}[self.near_convergence]


def near_and_rising(convergences: Sequence[Convergence]) -> tuple[int, list[int]]:
    """How many of `convergences` are near convergence, and the indices of those still
    rising at their cap (the rest ran too few epochs to tell)."""
    near = sum(c.near_convergence is True for c in convergences)
    return near, [i for i, c in enumerate(convergences) if c.near_convergence is False]
