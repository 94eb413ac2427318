"""Resuming a killed `Model.fit` at the end of its last finished epoch, as if never stopped.

Keras' `BackupAndRestore` restores the weights, the optimizer and the epoch number, but not the
state its sibling callbacks keep in memory (the lookahead's moving average, EarlyStopping's
best weights, the plateau counters), and it overwrites its weights file in place, so a kill
while it writes leaves nothing to resume from. Here one file holds it all and is replaced
whole at each epoch's end (`mimic_tf.files.atomic_path`):

    first_epoch = saved_epoch(path)              # 0 when nothing was saved
    model, data, callbacks = ...                 # data from epoch first_epoch on
    backup = EpochBackup(path, callbacks)        # callbacks: those whose state must survive
    backup.restore(model)                        # before fit: weights, optimizer variables
    model.fit(data, initial_epoch=start_epoch(path, epochs), epochs=epochs,
              callbacks=[*callbacks, backup])    # last: restores their state, then saves it

`start_epoch` is `first_epoch`, or `epochs` when a callback (EarlyStopping, a learning-rate
floor) had stopped the training at the saved epoch: a training killed between its last backup
and its save then trains no epoch more, as it would not have. The data must start at
`first_epoch` too (`data.view_batch_indices(first_epoch=...)`), so a
resumed member sees the batches an uninterrupted one would have seen. A backup of Keras'
`BackupAndRestore` (a folder with `latest.weights.h5` and `training_metadata.json`) is read as
well, for the weights, the optimizer and the epoch; the callbacks then start afresh.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mimic_tf.files import atomic_path

# The in-memory state of Keras' own callbacks, by attribute: what `on_train_begin` resets.
KERAS_CALLBACK_STATE: dict[type, tuple[str, ...]] = {
    keras.callbacks.ReduceLROnPlateau: ("wait", "cooldown_counter", "best"),
    keras.callbacks.EarlyStopping: ("wait", "best", "best_epoch", "best_weights",
                                    "stopped_epoch"),
}
KERAS_BACKUP_WEIGHTS = "latest.weights.h5"  # the files of Keras' BackupAndRestore
KERAS_BACKUP_METADATA = "training_metadata.json"


def keras_backup_folder(path: Path) -> Path:
    """Where Keras' BackupAndRestore kept its files for the training backed up at `path`
    (the path without `.npz`), read when that backup does not exist yet."""
    return Path(path).with_suffix("")


def _keras_backup_epoch(folder: Path) -> int | None:
    """The epoch of Keras' backup in `folder`, None when it has none."""
    metadata = folder / KERAS_BACKUP_METADATA
    if metadata.exists() and (folder / KERAS_BACKUP_WEIGHTS).exists():
        return int(json.loads(metadata.read_text())["epoch"])
    return None


def _saved_manifest(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    with np.load(path) as saved:
        return json.loads(str(saved["manifest"]))


def saved_epoch(path: Path) -> int:
    """The epoch a training backed up at `path` resumes from: 0 when there is no backup."""
    path = Path(path)
    manifest = _saved_manifest(path)
    if manifest is not None:
        return int(manifest["epoch"])
    return _keras_backup_epoch(keras_backup_folder(path)) or 0


def start_epoch(path: Path, epochs: int) -> int:
    """`fit`'s `initial_epoch` for a training of `epochs` epochs backed up at `path`: the saved
    epoch, or `epochs` (no epoch more) when a callback had stopped the training there."""
    manifest = _saved_manifest(Path(path))
    if manifest is None:
        return saved_epoch(path)  # Keras' old backup folder, or none
    return int(epochs) if manifest.get("stopped", False) else int(manifest["epoch"])


def callback_state(callback: keras.callbacks.Callback,
                   attributes: dict[type, tuple[str, ...]] | None = None) -> dict[str, Any] | None:
    """What `callback` must get back after a resume: its `get_state()`, or its attributes
    named in KERAS_CALLBACK_STATE or `attributes`; None for a callback without state."""
    if hasattr(callback, "get_state"):
        return callback.get_state()
    for kind, names in {**KERAS_CALLBACK_STATE, **(attributes or {})}.items():
        if isinstance(callback, kind):
            return {name: getattr(callback, name) for name in names}
    return None


def restore_callback_state(callback: keras.callbacks.Callback, state: dict[str, Any]) -> None:
    """Give `callback` back the state `callback_state` took."""
    if hasattr(callback, "set_state"):
        callback.set_state(state)
        return
    for name, value in state.items():
        setattr(callback, name, value)


def _flatten(states: list[dict[str, Any] | None]) -> tuple[list, dict[str, np.ndarray]]:
    """Callback states as JSON (scalars, None) and arrays (array lists: `c<i>/<name>/<j>`)."""
    described, arrays = [], {}
    for index, state in enumerate(states):
        if state is None:
            described.append(None)
            continue
        entry = {}
        for name, value in state.items():
            if isinstance(value, list | tuple):
                for position, array in enumerate(value):
                    arrays[f"c{index}/{name}/{position}"] = np.asarray(array)
                entry[name] = {"arrays": len(value)}
            elif value is None or isinstance(value, bool | int | float | str):
                entry[name] = {"value": value}
            else:  # NumPy scalars (a monitored metric's best value)
                entry[name] = {"value": np.asarray(value).item()}
        described.append(entry)
    return described, arrays


def _unflatten(described: list, saved: Any) -> list[dict[str, Any] | None]:
    states: list[dict[str, Any] | None] = []
    for index, entry in enumerate(described):
        if entry is None:
            states.append(None)
            continue
        states.append({name: [saved[f"c{index}/{name}/{position}"]
                              for position in range(field["arrays"])]
                       if "arrays" in field else field["value"]
                       for name, field in entry.items()})
    return states


class EpochBackup(keras.callbacks.Callback):
    """Saves, at each epoch's end, the model's weights, its optimizer's variables, the epoch
    number, the epochs' logs and `callbacks`' state in one file; `restore` and
    `on_train_begin` bring them back. `attributes` names the state of other callback classes
    than Keras' own (`{class: (attribute, ...)}`).

    Put it last in `fit`'s callbacks: its `on_train_begin` must come after theirs (which reset
    their state) and its `on_epoch_end` after theirs (which update it, or stop the training).
    After a resume, `history` holds the logs of the epochs before it (`{epoch: logs}`), which
    `fit`'s own History lacks.
    """

    def __init__(self, path: Path, callbacks: list[keras.callbacks.Callback],
                 attributes: dict[type, tuple[str, ...]] | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.callbacks = list(callbacks)
        self.attributes = dict(attributes or {})
        self.history: dict[int, dict[str, float]] = {}
        self._pending: list[dict[str, Any] | None] | None = None

    @property
    def keras_backup(self) -> Path:
        return keras_backup_folder(self.path)

    def restore(self, model: keras.Model) -> int:
        """Load the saved weights and optimizer variables into `model` (compiled, built);
        returns the epoch to start from (0 when nothing was saved)."""
        if self.path.exists():
            with np.load(self.path) as saved:
                manifest = json.loads(str(saved["manifest"]))
                _assign(model.weights, [saved[f"w/{i}"] for i in range(manifest["weights"])],
                        "weights")
                optimizer_values = [saved[f"o/{i}"] for i in range(manifest["optimizer"])]
                self._pending = _unflatten(manifest["callbacks"], saved)
                self.history = {int(epoch): logs
                                for epoch, logs in manifest.get("history", {}).items()}
            _build_optimizer(model)
            _assign(model.optimizer.variables, optimizer_values, "optimizer variables")
            if len(self._pending) != len(self.callbacks):
                raise ValueError(f"{self.path} holds the state of {len(self._pending)} "
                                 f"callbacks, this training has {len(self.callbacks)}")
            return int(manifest["epoch"])
        epoch = _keras_backup_epoch(self.keras_backup)
        if epoch is None:
            return 0
        _build_optimizer(model)
        model.load_weights(self.keras_backup / KERAS_BACKUP_WEIGHTS)
        return epoch

    def on_train_begin(self, logs=None) -> None:
        if self._pending is not None:
            for callback, state in zip(self.callbacks, self._pending, strict=True):
                if state is not None:
                    restore_callback_state(callback, state)
            self._pending = None

    def on_epoch_end(self, epoch, logs=None) -> None:
        self.history[epoch] = {name: float(np.asarray(value))
                               for name, value in (logs or {}).items()}
        described, arrays = _flatten([callback_state(c, self.attributes)
                                      for c in self.callbacks])
        manifest = {"epoch": epoch + 1, "stopped": bool(self.model.stop_training),
                    "weights": len(self.model.weights),
                    "optimizer": len(self.model.optimizer.variables), "callbacks": described,
                    "history": self.history}
        arrays.update({f"w/{i}": keras.ops.convert_to_numpy(v)
                       for i, v in enumerate(self.model.weights)})
        arrays.update({f"o/{i}": keras.ops.convert_to_numpy(v)
                       for i, v in enumerate(self.model.optimizer.variables)})
        with atomic_path(self.path) as temporary:
            with open(temporary, "wb") as stream:
                np.savez(stream, manifest=np.array(json.dumps(manifest)), **arrays)

    def merged(self, history: keras.callbacks.History) -> keras.callbacks.History:
        """`history` of a resumed `fit` with the epochs before the resume put back in front."""
        earlier = [epoch for epoch in sorted(self.history) if epoch not in history.epoch]
        if not earlier:
            return history
        names = set(history.history) | {n for e in earlier for n in self.history[e]}
        history.history = {name: [self.history[e].get(name) for e in earlier]
                           + list(history.history.get(name, [None] * len(history.epoch)))
                           for name in names}
        history.epoch = earlier + list(history.epoch)
        return history

    def remove(self) -> None:
        """Delete the backup (and a Keras one) once the training it backs up is saved."""
        self.path.unlink(missing_ok=True)
        for name in (KERAS_BACKUP_WEIGHTS, KERAS_BACKUP_METADATA):
            (self.keras_backup / name).unlink(missing_ok=True)
        if self.keras_backup.is_dir() and not any(self.keras_backup.iterdir()):
            self.keras_backup.rmdir()


def _build_optimizer(model: keras.Model) -> None:
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)


def _assign(variables: list, values: list[np.ndarray], what: str) -> None:
    if len(variables) != len(values):
        raise ValueError(f"the backup holds {len(values)} {what}, the model has {len(variables)}")
    for variable, value in zip(variables, values, strict=True):
        if tuple(variable.shape) != value.shape:
            raise ValueError(f"the backup's {what} do not fit the model: {variable.path} is "
                             f"{tuple(variable.shape)}, the backup's {value.shape}")
        variable.assign(value)
