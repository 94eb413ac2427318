"""`StudentHyperModel`: the paper's student search space, and one trial's training.

`build(hp)` draws the optimisation hyperparameters and the free widths of one cell, builds a
student of exactly the cell's budget (`mimic_tf.budgets.solve_widths` solves the dependent
width, so no trial is ever oversized) and wraps it in a `Distiller` compiled with SGD and
Nesterov momentum (Urban et al. 2017, section 3):

    learning_rate   log-uniform [0.0013, 0.016]
    momentum        log-uniform [0.68, 0.97]
    input_scale     uniform     [0.8, 1.25]     multiplies the standardised pixels
    init_scale      uniform     [0.4, 2.0]      multiplies the Glorot init
    widths          the paper's ranges for the budget (`mimic_tf.budgets.search_space`)

Hard-label baselines (`loss: hard`) also search the regularisation the paper's Table 1
networks were trained with, which mimic students need no more than their teacher's logits:

    dropout         uniform     [0.0, 0.5]      after every pool and ReLU hidden layer
    weight_decay    log-uniform [1e-5, 1e-2]    decoupled, x the learning rate each step

`fit(hp, model, data, ...)` trains on the shared transfer set under the paper's plateau
schedule, logs TensorBoard scalars and an HParams session for the trial, and survives diverging
trials: a NaN loss stops the trial and its validation accuracy is reported as chance.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import keras
import keras_tuner
import numpy as np
import tensorflow as tf
from keras_tuner.src.engine.tuner_utils import SaveBestEpoch  # not exported; its best value
from tensorboard.plugins.hparams import api as hparams_api

from mimic_tf.budgets import BudgetError, search_space
from mimic_tf.clock import EpochClock, training_seconds
from mimic_tf.config import StudentConfig
from mimic_tf.data.spec import DatasetSpec
from mimic_tf.distiller import Distiller
from mimic_tf.layout import SearchLayout
from mimic_tf.resume import EpochBackup, saved_epoch, start_epoch
from mimic_tf.runtime import resolve_jit_compile, resolve_precision
from mimic_tf.schedule import plateau_callbacks
from mimic_tf.students import build_student
from mimic_tf.transfer import TransferSet
from mimic_tf.vocabulary import HARD_LOSS
from tuner import artifacts
from tuner.search.cells import Cell

OBJECTIVE = "val_accuracy"
EVALUATION_BATCH_SIZE = 500

# The paper's optimisation space (Urban et al. 2017, section 3).
LEARNING_RATE = (0.0013, 0.016)  # log
MOMENTUM = (0.68, 0.97)  # log
INPUT_SCALE = (0.8, 1.25)
INIT_SCALE = (0.4, 2.0)
# The hard-label baselines' regularisation (the paper's Table 1 used dropout and weight decay).
DROPOUT = (0.0, 0.5)
WEIGHT_DECAY = (1e-5, 1e-2)  # log


def fixed_hyperparameters(values: dict[str, Any]) -> keras_tuner.HyperParameters:
    """A trial's drawn values as fixed hyperparameters: `build` then makes that trial's model."""
    hp = keras_tuner.HyperParameters()
    for name, value in values.items():
        hp.Fixed(name, value)
    return hp


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """The datasets every trial of a run reads: built once, so all students see the same stream.

    `train` is infinite; one Keras epoch is `steps_per_epoch` batches (one augmented view).
    """

    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    steps_per_epoch: int
    spec: DatasetSpec  # the images' shape and the classes

    @classmethod
    def from_transfer_set(cls, transfer_set: TransferSet, batch_size: int) -> TrainingData:
        """Cached logits in the batches, or `(images, labels)` for an online transfer set."""
        online = transfer_set.logits is None
        return cls(
            spec=transfer_set.splits.spec,
            train=transfer_set.train_dataset(batch_size, with_logits=not online),
            validation=transfer_set.validation_dataset(EVALUATION_BATCH_SIZE),
            test=transfer_set.test_dataset(EVALUATION_BATCH_SIZE),
            steps_per_epoch=transfer_set.steps_per_epoch(batch_size),
        )


class StudentHyperModel(keras_tuner.HyperModel):
    """Builds and trains the students of one cell (family, depth, budget, loss).

    Args:
        cell: which search this is; `cell.fixed_widths` pins the widths (baselines).
        student_config: batch size, loss options and the plateau schedule.
        teacher: the frozen ensemble, only for online transfer sets (else None).
        seed: base seed of the students' initialisation.
        spec: the images' shape and the classes.
        log_dir: TensorBoard folder of this search; each trial logs to `log_dir/<trial_id>`.
        search_dir: the search's folder (`SearchLayout`): a trial backs up each finished epoch
            there, and a killed one goes on from its last (None: no backup).
        progress: optional factory `(trial_id, cell, hp, params) -> keras.callbacks.Callback`
            of a callback reporting the trial to the terminal (`Progress.trial_callback`).
        steps_per_execution: batches one `tf.function` call runs; it must divide the epoch's
            batches (`mimic_tf.runtime.steps_per_execution`), else an epoch reads past its view.
    """

    def __init__(
        self,
        cell: Cell,
        student_config: StudentConfig,
        *,
        teacher: keras.Model | None = None,
        seed: int = 0,
        log_dir: str | Path | None = None,
        search_dir: str | Path | None = None,
        progress: Any = None,
        spec: DatasetSpec,
        steps_per_execution: int = 1,
    ) -> None:
        super().__init__(name=cell.name)
        self.spec = spec
        self.cell = cell
        self.student_config = student_config
        self.teacher = teacher
        self.seed = seed
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.search = SearchLayout(Path(search_dir)) if search_dir is not None else None
        self.progress = progress
        self.steps_per_execution = steps_per_execution

    def build(self, hp: keras_tuner.HyperParameters) -> Distiller:
        """A compiled Distiller around a student of exactly the cell's budget."""
        # 1. The optimisation hyperparameters of the paper's search.
        learning_rate = hp.Float("learning_rate", *LEARNING_RATE, sampling="log")
        momentum = hp.Float("momentum", *MOMENTUM, sampling="log")
        input_scale = hp.Float("input_scale", *INPUT_SCALE)
        init_scale = hp.Float("init_scale", *INIT_SCALE)

        # 2. The free widths, in the paper's ranges for this budget (or pinned).
        widths = {}
        for name, (low, high) in search_space(self.cell.family, self.cell.depth,
                                              self.cell.budget).items():
            if self.cell.fixed_widths is not None:
                widths[name] = hp.Fixed(name, self.cell.fixed_widths[name])
            elif isinstance(low, float):
                widths[name] = hp.Float(name, low, high)
            else:
                widths[name] = hp.Int(name, low, high, sampling="log")

        # 3. Hard labels only: the regularisation their networks need (mimic students: none).
        dropout, weight_decay = 0.0, None
        if self.cell.loss == HARD_LOSS:
            dropout = hp.Float("dropout", *DROPOUT)
            weight_decay = hp.Float("weight_decay", *WEIGHT_DECAY, sampling="log")

        # 4. The student: its dependent width is solved so it meets the budget.
        precision = resolve_precision(self.student_config.precision)
        try:
            student = build_student(
                self.cell.family, self.cell.depth, self.cell.budget,
                input_scale=input_scale, init_scale=init_scale, seed=self.seed,
                dtype_policy=precision, dropout=dropout, spec=self.spec,
                **widths,
            )
        except BudgetError as error:  # recorded as a failed trial, never retried
            raise keras_tuner.errors.FailedTrialError(str(error)) from error

        # 5. The Distiller, trained by SGD with Nesterov momentum. `student.clipnorm` > 0
        #    clips the global gradient norm (not the paper's recipe; it rescues trials that
        #    the paper's upper learning rates and init scales make diverge at once).
        config = self.student_config
        distiller = Distiller(
            student, self.teacher, loss=self.cell.loss,
            temperature=config.temperature, alpha=config.alpha,
        )
        optimizer = keras.optimizers.SGD(
            learning_rate, momentum=momentum, nesterov=True,
            global_clipnorm=config.clipnorm or None, weight_decay=weight_decay,
        )
        if precision == "mixed_float16":  # float16 gradients underflow unscaled
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        # 6. XLA where it measured faster for this family on this device (student.jit_compile).
        distiller.compile(optimizer=optimizer,
                          jit_compile=resolve_jit_compile(config.jit_compile, self.cell.family),
                          steps_per_execution=self.steps_per_execution)
        return distiller

    def fit(
        self,
        hp: keras_tuner.HyperParameters,
        model: Distiller,
        data: TrainingData,
        *,
        trial_id: str = "untracked",
        callbacks: list[keras.callbacks.Callback] | None = None,
        epochs: int | None = None,
        initial_epoch: int = 0,
        verbose: int = 0,
        **kwargs: Any,
    ) -> keras.callbacks.History:
        """Train `model` on `data`; returns the History the oracle scores.

        `epochs` and `initial_epoch` come from Hyperband; otherwise the schedule's cap is used.
        Epochs whose loss is NaN report chance validation accuracy. A trial killed after an
        epoch goes on from there as if never stopped (`trial_backup`): weights, optimizer,
        the schedule's and the checkpoint's state, the data stream, and the History the
        oracle scores, earlier epochs included.
        """
        config = self.student_config
        realised = model.student.count_params()

        trial_callbacks: list[keras.callbacks.Callback] = [
            DivergenceGuard(1.0 / self.spec.num_classes),  # first: later ones see clean logs
            EpochClock(),  # the epoch's time in its logs: the backup and history.json keep it
            *plateau_callbacks(config.schedule, monitor=OBJECTIVE, restore_best=False),
        ]
        writer = None
        trial_dir = self.trial_log_dir(trial_id)
        if trial_dir is not None:
            writer = tf.summary.create_file_writer(str(trial_dir))
            trial_callbacks += [
                keras.callbacks.TensorBoard(str(trial_dir), write_graph=False, profile_batch=0),
                hparams_api.KerasCallback(
                    writer, self.trial_hparams(hp, realised),
                    trial_id=f"{self.cell.name}/{trial_id}",
                ),
            ]
        if self.progress is not None:
            trial_callbacks.append(self.progress(trial_id, self.cell, hp, realised))
        trial_callbacks += list(callbacks or [])
        epochs = epochs or config.epochs_for(self.cell.family)
        train, first_epoch, backup = data.train, initial_epoch, None
        fit_from = initial_epoch
        backup_path = self.trial_backup(trial_id)
        if backup_path is not None:
            backup = EpochBackup(backup_path, trial_callbacks,
                                 attributes={SaveBestEpoch: ("best_value",)})
            first_epoch = max(initial_epoch, saved_epoch(backup_path))
            if first_epoch > initial_epoch:
                backup.restore(model)
                # The shared stream from the batch the killed trial would have read next.
                train = train.skip((first_epoch - initial_epoch) * data.steps_per_epoch)
                fit_from = start_epoch(backup_path, epochs)  # `epochs` if it had stopped
            trial_callbacks.append(backup)  # last: after the others reset and update state
        try:
            history = model.fit(
                train,
                epochs=epochs,
                initial_epoch=fit_from,
                steps_per_epoch=data.steps_per_epoch,
                validation_data=data.validation,
                shuffle=False,  # the transfer set fixes the order: every student sees the same
                callbacks=trial_callbacks,
                verbose=verbose,
                **kwargs,
            )
        finally:
            if writer is not None:
                writer.close()
        if backup is None:  # no search folder to keep anything in
            return history
        history = backup.merged(history)
        # Every epoch's metrics, for `tuner.report.convergence`, before the backup that held
        # them goes.
        metrics = {name: [None if value is None else float(value) for value in values]
                   for name, values in history.history.items()}
        artifacts.write_trial_history(self.search, trial_id, artifacts.TrialHistory(
            epoch_cap=epochs - initial_epoch, metrics=metrics,
            train_seconds=training_seconds(metrics)))
        backup.remove()
        return history

    def trial_backup(self, trial_id: str) -> Path | None:
        """Where the trial backs up each finished epoch (None without a `search_dir`)."""
        return None if self.search is None else self.search.trial_backup(trial_id)

    def trial_log_dir(self, trial_id: str) -> Path | None:
        """The trial's TensorBoard run, `<log_dir>/<trial_id>` (None without a `log_dir`)."""
        return None if self.log_dir is None else self.log_dir / str(trial_id)

    def trial_hparams(self, hp: keras_tuner.HyperParameters, realised: int) -> dict[str, Any]:
        """What the HParams dashboard lists for a trial: the cell, every hp, realised params."""
        values: dict[str, Any] = {
            "cell": self.cell.name,
            "family": self.cell.family,
            "depth": self.cell.depth,
            "budget": float(self.cell.budget),
            "loss": self.cell.loss,
            "params": int(realised),
        }
        for name, value in hp.values.items():
            if isinstance(value, (bool, int, float, str)):
                values[name] = value
        return values


class DivergenceGuard(keras.callbacks.Callback):
    """Stops a trial whose loss turned NaN or infinite and scores it at chance.

    Keras' `TerminateOnNaN` stops training too, but the validation pass of that epoch still
    runs on the broken weights; here the epoch's `val_accuracy` is replaced by chance
    (`chance_accuracy`, 1/10 for CIFAR-10) before the schedule, the checkpoint and the oracle
    read it.
    """

    def __init__(self, chance_accuracy: float = 0.1) -> None:
        super().__init__()
        self.chance_accuracy = chance_accuracy
        self.diverged = False

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self.diverged = True
            self.model.stop_training = True

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None:
            return
        values = [logs.get(key) for key in ("loss", "val_loss")]
        if self.diverged or any(v is not None and not np.isfinite(v) for v in values):
            self.diverged = True
            self.model.stop_training = True
            logs[OBJECTIVE] = self.chance_accuracy
            for key in list(logs):
                if key.endswith("loss") and not np.isfinite(logs[key]):
                    logs[key] = float("inf")  # JSON- and oracle-safe, still the worst loss
