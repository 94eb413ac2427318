"""The paper's plateau learning-rate schedule and stopping rule, as Keras callbacks.

Halve the learning rate after `plateau_patience` epochs without validation improvement, with
`cooldown` epochs before another cut; stop after `stop_patience` epochs without improvement or
once the rate has been cut by more than `max_reduction` (Urban et al. 2017, section 3).
"""

from __future__ import annotations

import keras

from mimic_tf.config import ScheduleConfig


def current_learning_rate(model: keras.Model) -> float:
    """The optimizer's learning rate now, as a Python float."""
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


class StopOnLearningRateFloor(keras.callbacks.Callback):
    """Stops training once the learning rate has been cut by more than `max_reduction`."""

    def __init__(self, max_reduction: float) -> None:
        super().__init__()
        self.max_reduction = max_reduction
        self.initial_learning_rate: float | None = None

    def on_train_begin(self, logs=None) -> None:
        self.initial_learning_rate = current_learning_rate(self.model)

    def get_state(self) -> dict[str, float | None]:
        """The rate the cuts count from, for a resumed training (`mimic_tf.resume`): a resumed
        `on_train_begin` sees the rate already cut."""
        return {"initial_learning_rate": self.initial_learning_rate}

    def set_state(self, state: dict[str, float | None]) -> None:
        """Take back the rate `get_state` gave, after `on_train_begin`."""
        self.initial_learning_rate = state["initial_learning_rate"]

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        if logs is not None:
            logs["learning_rate"] = current_learning_rate(self.model)
        if current_learning_rate(self.model) * self.max_reduction < self.initial_learning_rate:
            self.model.stop_training = True


def plateau_callbacks(
    schedule: ScheduleConfig, monitor: str = "val_accuracy", restore_best: bool = True
) -> list[keras.callbacks.Callback]:
    """ReduceLROnPlateau + EarlyStopping + the learning-rate floor, monitoring `monitor`."""
    mode = "min" if monitor.endswith("loss") else "max"
    return [
        keras.callbacks.ReduceLROnPlateau(
            monitor=monitor,
            mode=mode,
            factor=schedule.reduction_factor,
            patience=schedule.plateau_patience,
            cooldown=schedule.cooldown,
            min_lr=0.0,
            verbose=0,
        ),
        keras.callbacks.EarlyStopping(
            monitor=monitor,
            mode=mode,
            patience=schedule.stop_patience,
            restore_best_weights=restore_best,
        ),
        StopOnLearningRateFloor(schedule.max_reduction),
    ]
