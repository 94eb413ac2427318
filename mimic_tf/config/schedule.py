"""The paper's plateau schedule, shared by the paper teacher family and the students."""

from __future__ import annotations

import dataclasses

from mimic_tf.config.checks import check


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """The paper's plateau schedule, counted in epochs.

    Halve the learning rate after `plateau_patience` epochs without validation improvement,
    no further cut within `cooldown` epochs of one; stop after `stop_patience` epochs without
    improvement, when the rate has been cut by more than `max_reduction`, or at `epochs`.
    """

    epochs: int = 100  # hard cap on epochs
    plateau_patience: int = 10
    cooldown: int = 8
    stop_patience: int = 30
    reduction_factor: float = 0.5
    max_reduction: float = 2000.0

    def validate(self, prefix: str) -> None:
        check(self.epochs >= 1, f"{prefix}.epochs", self.epochs, ">= 1")
        for name in ("plateau_patience", "cooldown", "stop_patience"):
            value = getattr(self, name)
            check(value >= 0, f"{prefix}.{name}", value, ">= 0")
        check(
            0.0 < self.reduction_factor < 1.0,
            f"{prefix}.reduction_factor",
            self.reduction_factor,
            "0 < factor < 1",
        )
        check(self.max_reduction > 1.0, f"{prefix}.max_reduction", self.max_reduction, "> 1")
