"""Terminal progress of a run: which search and trial is running, its metrics, and an ETA.

One line when a trial starts (its hyperparameters and realised size), one per epoch (train and
validation metrics, learning rate, seconds per epoch, ETA of the whole run) and one when it ends:

    [mlp-d2-b1M 2/5] trial 3/8 start: learning_rate=0.0041 momentum=0.91 ... (1,000,012 params)
    [mlp-d2-b1M 2/5] trial 3/8 epoch 4/20 loss 12.31 acc 0.512 agree 0.601 | val ... | ETA 6m12s
    [mlp-d2-b1M 2/5] trial 3/8 done in 42s: val_accuracy 0.5120 (best of search 0.5300)

The ETA adds up the trials still to run, each at the mean duration of the finished trials of
its family in this run: an MLP trial can take a tenth of a CNN's, so one mean would put the
end of a run of both far off (a family with none finished yet: the mean of all finished trials,
or before the first one ends, the current trial's time left).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

import keras

from tuner.search.cells import Cell

ANY_FAMILY = ""  # the key of a plan given in all, not by family


def format_duration(seconds: float) -> str:
    """'42s', '6m12s', '1h03m'."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class Progress:
    """Counts the trials of a run across its searches and prints progress lines.

    Args:
        planned_trials: trials this run expects to run in all its searches (for the ETA),
            in all or by family (`{"mlp": 16, "cnn": 16}`).
        max_epochs: the epoch cap of one trial.
        verbose: 0 prints nothing; 1 prints trial and epoch lines.
        stream: where lines go (stdout by default).
    """

    def __init__(
        self, planned_trials: int | Mapping[str, int], max_epochs: int, verbose: int = 1,
        stream: TextIO | None = None,
    ) -> None:
        # Trials still to run and the finished ones' seconds, by family ("": any, when the
        # plan was given in all).
        self.remaining: dict[str, int] = (dict(planned_trials)
                                          if isinstance(planned_trials, Mapping)
                                          else {ANY_FAMILY: planned_trials})
        self.finished_seconds: dict[str, list[float]] = {}
        self.family = ANY_FAMILY  # the running search's key in `remaining`
        self.max_epochs = max_epochs
        self.verbose = verbose
        self.stream = stream or sys.stdout
        self.search_label = ""
        self.trials_in_search = 0
        self.best_in_search: float | None = None

    def print(self, line: str) -> None:
        if self.verbose:
            print(line, file=self.stream, flush=True)

    def begin_search(
        self, cell: Cell, index: int, count: int, max_trials: int, finished: int,
        best: float | None = None,
    ) -> None:
        """A search starts (or resumes with `finished` trials already done, the best of them
        scoring `best`)."""
        self.search_label = f"[{cell.name} {index}/{count}]"
        self.trials_in_search = max_trials
        self.best_in_search = best
        self.family = cell.family if cell.family in self.remaining else ANY_FAMILY
        # The plan counted a full search; a resumed one has fewer trials left.
        self.remaining[self.family] = max(0, self.remaining.get(self.family, 0)
                                          - min(finished, max_trials))
        kept = f", {finished} finished trial(s) kept" if finished else ""
        trials = f"{max_trials} trial" + ("s" if max_trials != 1 else "")
        self.print(f"{self.search_label} search of {trials}{kept}")

    def end_search(self, best: float | None) -> None:
        if best is not None:
            self.print(f"{self.search_label} best val_accuracy {best:.4f}")

    @property
    def remaining_trials(self) -> int:
        """Trials still to run in all, the running one included."""
        return sum(self.remaining.values())

    def eta(self, current_trial_left: float = 0.0, in_progress: bool = True) -> float:
        """Seconds until the run's last trial ends: the current trial's `current_trial_left`
        and each other trial left at its family's mean so far (all of them between trials)."""
        every = [s for seconds in self.finished_seconds.values() for s in seconds]
        fallback = statistics.fmean(every) if every else current_trial_left
        total = current_trial_left if in_progress else 0.0
        for family, count in self.remaining.items():
            others = max(0, count - 1) if in_progress and family == self.family else count
            own = self.finished_seconds.get(family)
            total += others * (statistics.fmean(own) if own else fallback)
        return total

    def trial_callback(
        self, trial_id: str, cell: Cell, hp: Any, params: int
    ) -> keras.callbacks.Callback:
        """A Keras callback reporting one trial (handed to `StudentHyperModel`)."""
        return TrialProgress(self, trial_id, hp.values, params)

    def trial_done(self, seconds: float, score: float | None) -> None:
        self.finished_seconds.setdefault(self.family, []).append(seconds)
        self.remaining[self.family] = max(0, self.remaining.get(self.family, 0) - 1)
        if score is not None and (self.best_in_search is None or score > self.best_in_search):
            self.best_in_search = score


class TrialProgress(keras.callbacks.Callback):
    """Prints a trial's start, each epoch's metrics with the run's ETA, and its end."""

    def __init__(self, progress: Progress, trial_id: str, values: dict, size: int) -> None:
        super().__init__()
        self.progress = progress
        self.label = (f"{progress.search_label} trial {_trial_number(trial_id)}/"
                      f"{progress.trials_in_search}")
        self.values = values
        self.size = size  # realised parameters (Keras' `self.params` holds fit's settings)
        self.started = 0.0
        self.epoch_started = 0.0
        self.epochs = progress.max_epochs
        self.best: float | None = None
        self.seconds_before = 0.0  # the trial's time before a resume

    def get_state(self) -> dict[str, Any]:
        """The trial's best so far and its time, for its backup (`mimic_tf.resume`): a
        resumed trial's last line then tells its whole trial, not the part after the resume."""
        return {"best": self.best,
                "seconds": self.seconds_before + time.perf_counter() - self.started}

    def set_state(self, state: dict[str, Any]) -> None:
        self.best, self.seconds_before = state["best"], float(state["seconds"])

    def on_train_begin(self, logs=None) -> None:
        self.started = time.perf_counter()
        self.epochs = int((self.params or {}).get("epochs") or self.epochs)
        shown = " ".join(f"{k}={format_value(v)}" for k, v in self.values.items()
                         if not k.startswith("tuner/"))
        self.progress.print(f"{self.label} start: {shown} ({self.size:,} params)")

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = logs or {}
        seconds = time.perf_counter() - self.epoch_started
        accuracy = logs.get("val_accuracy")
        if accuracy is not None and (self.best is None or accuracy > self.best):
            self.best = float(accuracy)
        parts = [f"{self.label} epoch {epoch + 1}/{self.epochs}"]
        parts.append(_metrics(logs, ""))
        parts.append("| val " + _metrics(logs, "val_"))
        if "learning_rate" in logs:
            parts.append(f"| lr {logs['learning_rate']:.3g}")
        left = seconds * max(0, self.epochs - epoch - 1)
        parts.append(f"| {seconds:.1f}s/epoch | ETA {format_duration(self.progress.eta(left))}")
        self.progress.print(" ".join(parts))

    def on_train_end(self, logs=None) -> None:
        seconds = self.seconds_before + time.perf_counter() - self.started
        self.progress.trial_done(seconds, self.best)
        best = "n/a" if self.best is None else f"{self.best:.4f}"
        search_best = self.progress.best_in_search
        self.progress.print(
            f"{self.label} done in {format_duration(seconds)}: val_accuracy {best} "
            f"(best of search {search_best:.4f}); run ETA "
            f"{format_duration(self.progress.eta(in_progress=False))}"
            if search_best is not None
            else f"{self.label} done in {format_duration(seconds)}: val_accuracy {best}"
        )


def _metrics(logs: dict, prefix: str) -> str:
    names = (("loss", "loss"), ("accuracy", "acc"), ("agreement", "agree"))
    return " ".join(
        f"{short} {logs[prefix + name]:.4g}" for name, short in names if prefix + name in logs
    )


def _trial_number(trial_id: str) -> str:
    try:
        return str(int(trial_id) + 1)
    except ValueError:
        return trial_id
