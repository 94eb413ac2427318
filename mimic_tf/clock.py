"""What training costs: each epoch's wall time, in the epoch's own logs.

    callbacks = [EpochClock(), ...]      # first: the others see `epoch_seconds`
    model.fit(..., callbacks=callbacks)  # history.history["epoch_seconds"]: one per epoch

The seconds run from the epoch's first callback to the end of its validation. Kept with the
other logs, they travel where the logs go: the History, TensorBoard's scalars, the epoch
backup of a training that may be killed (`mimic_tf.resume`) and a finished trial's
`history.json`. So a member or a trial resumed after a kill still adds up its whole cost,
the epochs before the kill included, with `training_seconds`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import keras

EPOCH_SECONDS = "epoch_seconds"


class EpochClock(keras.callbacks.Callback):
    """Adds `epoch_seconds`, the epoch's wall time, to each epoch's logs."""

    def __init__(self) -> None:
        super().__init__()
        self._started = 0.0

    def on_epoch_begin(self, epoch, logs=None) -> None:
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None) -> None:
        if logs is not None:
            logs[EPOCH_SECONDS] = time.perf_counter() - self._started


def training_seconds(history: Mapping[str, Sequence[float | None]]) -> float | None:
    """The sum of a history's epoch times (`History.history` or a trial's metrics); None when
    an epoch has none (trained before the clock existed)."""
    seconds = history.get(EPOCH_SECONDS)
    if not seconds or any(value is None for value in seconds):
        return None
    return float(sum(seconds))


class StageClock:
    """What a run's stages cost: `lap(stage)` ends the stage that ran since the last lap.

        clock = StageClock()
        load(); clock.lap("data")
        train(); clock.lap("searches")
        clock.seconds  # {"data": 4.1, "searches": 431.0}, in the order the stages ran
    """

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - self._last
        self._last = now
