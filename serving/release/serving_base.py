"""The serving base: the versions, labels and release history of the models a server serves.

    <serving-base>/models.config                ModelServerConfig: each model, the versions it
                                                serves (`specific`) and its `version_labels`
    <serving-base>/<name>/<version>/            a pushed SavedModel, with `release.json` (lineage)
    <serving-base>/<name>/stable_history.json   the versions that were `stable`, oldest first
    <serving-base>/_releases/<name>/<attempt>/  each gate run's records (`serving.release`)

TFX's Pusher copies a blessed model into such a base; this module adds the labels. Every change
is made of steps a `kill -9` cannot leave half done:

- a version is copied into a hidden folder beside the others (which no server loads) and
  renamed to its number when complete, `release.json` included;
- `models.config` is rewritten through a temporary file and a rename; it only ever names
  versions already on disk and only labels versions it serves. It is the commit point of every
  label change: a server polling it (`--model-config-poll-wait-seconds`) or told to reload it
  (`HandleReloadConfigRequest`) sees the old labels or the new ones;
- `stable_history.json` is written before the config and reconciled with it on every read
  (entries after the config's `stable` are dropped; a `stable` it lacks is appended), so a
  kill between the two writes leaves the old state.

A model serves its `stable` and `canary` versions and the previous stable one, so a rollback
switches to a version that is already loaded.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from tensorflow_serving.config import model_server_config_pb2

from mimic_tf.files import atomic_write_text
from mimic_tf.layout import MODELS_CONFIG_FILE as MODELS_CONFIG
from mimic_tf.vocabulary import CANARY, STABLE
from mimic_tf.vocabulary import RELEASE_LABELS as LABELS
from serving.model_config import (
    MODEL_NAME_PATTERN,
    ModelConfigError,
    model_name_problem,
    next_version,
    read_model_server_config,
    versions_on_disk,
    write_model_server_config,
)

RELEASE_FILE = "release.json"  # lineage, inside each pushed version folder
HISTORY_FILE = "stable_history.json"
RECORDS_DIR = "_releases"  # cannot clash with a model name (those start with a letter or digit)
LOCK_FILE = ".release.lock"
PUSH_TEMPORARY_PREFIX = ".tmp-push-"


class ReleaseError(RuntimeError):
    """A release step that cannot be done; the message names the problem and the fix."""


@dataclasses.dataclass(frozen=True)
class ModelState:
    """One model of a serving base as `models.config` and the disk describe it."""

    name: str
    versions: tuple[int, ...]  # complete versions on disk
    served: tuple[int, ...]  # versions models.config serves
    labels: Mapping[str, int]  # label -> version
    stable_history: tuple[int, ...]  # oldest first; the last one is `stable`

    @property
    def stable(self) -> int | None:
        """The version production clients get."""
        return self.labels.get(STABLE)

    @property
    def canary(self) -> int | None:
        """The version on trial (the newest push)."""
        return self.labels.get(CANARY)

    @property
    def previous_stable(self) -> int | None:
        """The version a rollback returns to."""
        return self.stable_history[-2] if len(self.stable_history) >= 2 else None

    def labels_of(self, version: int) -> list[str]:
        """The labels pointing at `version`, sorted."""
        return sorted(label for label, labelled in self.labels.items() if labelled == version)


def check_model_name(name: str) -> None:
    """Raise ReleaseError unless `name` can be a model folder and URL part."""
    problem = model_name_problem(name)
    if problem:
        raise ReleaseError(problem)


def check_push(name: str, saved_model_dir: str | Path, label: str) -> None:
    """Raise ReleaseError unless `saved_model_dir` can be pushed as `name` with `label`."""
    check_model_name(name)
    if label not in LABELS:
        raise ReleaseError(f"label {label!r} is not one of {', '.join(LABELS)}")
    if not (Path(saved_model_dir) / "saved_model.pb").is_file():
        raise ReleaseError(f"{saved_model_dir} holds no saved_model.pb; pass a SavedModel "
                           "version folder such as runs/EXP/models/NAME/1")


@contextlib.contextmanager
def locked(base: str | Path) -> Iterator[None]:
    """Hold the serving base's lock: one push, promote or rollback at a time."""
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    with open(base / LOCK_FILE, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_config(base: Path) -> model_server_config_pb2.ModelServerConfig:
    path = base / MODELS_CONFIG
    if not path.is_file():
        return model_server_config_pb2.ModelServerConfig()
    try:
        return read_model_server_config(path)
    except ModelConfigError as error:
        raise ReleaseError(f"{error}; fix or delete {path} (the release tool rewrites it)") \
            from None


def _config_entry(config: model_server_config_pb2.ModelServerConfig, name: str):
    return next((model for model in config.model_config_list.config if model.name == name), None)


def _reconcile(history: list[int], stable: int | None) -> tuple[int, ...]:
    """The stable history as `models.config` (the commit point) says it is."""
    if stable is None:
        return ()
    if stable in history:
        last = len(history) - 1 - history[::-1].index(stable)
        return tuple(history[: last + 1])
    return (*history, stable)


def read_state(base: str | Path, name: str) -> ModelState:
    """The versions, labels and stable history of model `name` in the serving base."""
    base = Path(base)
    check_model_name(name)
    entry = _config_entry(_read_config(base), name)
    labels = {label: int(version) for label, version in entry.version_labels.items()} \
        if entry is not None else {}
    served: tuple[int, ...] = ()
    if entry is not None:
        policy = entry.model_version_policy
        if policy.WhichOneof("policy_choice") == "specific":
            served = tuple(sorted(int(v) for v in policy.specific.versions))
    history_path = base / name / HISTORY_FILE
    history = json.loads(history_path.read_text()) if history_path.is_file() else []
    return ModelState(
        name=name,
        versions=tuple(versions_on_disk(base / name)),
        served=served,
        labels=labels,
        stable_history=_reconcile([int(v) for v in history], labels.get(STABLE)),
    )


def model_names(base: str | Path) -> list[str]:
    """The models of a serving base: those in `models.config` and those with versions on disk."""
    base = Path(base)
    named = {model.name for model in _read_config(base).model_config_list.config}
    if base.is_dir():
        named |= {child.name for child in base.iterdir()
                  if MODEL_NAME_PATTERN.match(child.name) and versions_on_disk(child)}
    return sorted(named)


def read_lineage(base: str | Path, name: str, version: int) -> dict[str, Any] | None:
    """The `release.json` of a pushed version (None for a version not pushed by the gate)."""
    path = Path(base) / name / str(version) / RELEASE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _commit(base: Path, name: str, labels: Mapping[str, int], history: tuple[int, ...],
            also_serve: int | None = None) -> None:
    """Write the stable history, then `models.config` (the commit point)."""
    on_disk = set(versions_on_disk(base / name))
    served = set(labels.values()) | set(history[-2:]) | ({also_serve} if also_serve else set())
    missing = sorted(served - on_disk)
    if missing:  # never name a version a server cannot load
        raise ReleaseError(f"model '{name}' versions {missing} are not complete on disk under "
                           f"{base / name}; push them again")
    atomic_write_text(base / name / HISTORY_FILE, json.dumps(list(history)) + "\n")
    config = _read_config(base)
    entry = _config_entry(config, name)
    if entry is None:
        entry = config.model_config_list.config.add(name=name)
    entry.base_path = str((base / name).absolute())
    entry.model_platform = "tensorflow"
    entry.model_version_policy.specific.Clear()
    entry.model_version_policy.specific.versions.extend(sorted(served))
    entry.version_labels.clear()
    for label, version in sorted(labels.items()):
        entry.version_labels[label] = version
    write_model_server_config(config, base / MODELS_CONFIG)


def _fsync_tree(folder: Path) -> None:
    """Flush every file and folder under `folder` to disk (a rename then publishes it whole)."""
    for path in [*sorted(folder.rglob("*")), folder]:
        flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
        descriptor = os.open(path, flags)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def push_version(
    base: str | Path,
    name: str,
    saved_model_dir: str | Path,
    lineage: Mapping[str, Any],
    *,
    label: str = CANARY,
    copy_function: Callable[[str, str], object] = shutil.copy2,
    before_labelling: Callable[[int], None] | None = None,
) -> int:
    """Copy a SavedModel into `<base>/<name>/<next version>/` and label it; return the version.

    `label` canary: the new version becomes `canary` (and `stable` too when the model has no
    stable version yet); stable: it becomes both. `lineage` is written to its `release.json`
    (with `version` added) before the version appears. With `before_labelling`, the version
    is first served without a label and `before_labelling(version)` is called (to wait until a
    live server has loaded it: the real `tensorflow_model_server` refuses a label on a version
    it has not loaded) before the labels move.
    """
    base, saved_model_dir = Path(base), Path(saved_model_dir)
    check_push(name, saved_model_dir, label)
    with locked(base):
        state = read_state(base, name)
        model_dir = base / name
        model_dir.mkdir(parents=True, exist_ok=True)
        for stale in model_dir.glob(f"{PUSH_TEMPORARY_PREFIX}*"):  # left by a killed push
            shutil.rmtree(stale, ignore_errors=True)
        version = next_version(model_dir)
        temporary = model_dir / f"{PUSH_TEMPORARY_PREFIX}{version}-{uuid.uuid4().hex[:8]}"
        try:
            shutil.copytree(saved_model_dir, temporary, copy_function=copy_function)
            (temporary / RELEASE_FILE).unlink(missing_ok=True)
            atomic_write_text(temporary / RELEASE_FILE,
                              json.dumps({**lineage, "version": version}, indent=2) + "\n")
            _fsync_tree(temporary)
            os.rename(temporary, model_dir / str(version))
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise
        labels = dict(state.labels)
        history = state.stable_history
        if before_labelling is not None:
            _commit(base, name, labels, history, also_serve=version)
            before_labelling(version)
        labels[CANARY] = version
        if label == STABLE or state.stable is None:
            labels[STABLE] = version
            history = (*history, version)
        _commit(base, name, labels, history)
    return version


def promote(base: str | Path, name: str) -> ModelState:
    """The `canary` version becomes `stable` (canary keeps pointing at it)."""
    base = Path(base)
    with locked(base):
        state = read_state(base, name)
        if state.canary is None:
            raise ReleaseError(f"model '{name}' has no canary version in {base}; push one first "
                               "(python -m serving.release push ...)")
        if state.canary == state.stable:
            raise ReleaseError(f"model '{name}' version {state.canary} is already stable; "
                               "nothing to promote")
        _commit(base, name, {**state.labels, STABLE: state.canary},
                (*state.stable_history, state.canary))
        return read_state(base, name)


def rollback(base: str | Path, name: str) -> ModelState:
    """`stable` goes back to the previously stable version.

    A `canary` that pointed at the version rolled back from follows `stable`, so no label
    keeps serving it.
    """
    base = Path(base)
    with locked(base):
        state = read_state(base, name)
        previous = state.previous_stable
        if previous is None:
            raise ReleaseError(f"model '{name}' has no previous stable version to roll back to "
                               f"(stable history: {list(state.stable_history) or 'empty'})")
        labels = {**state.labels, STABLE: previous}
        if state.canary == state.stable:
            labels[CANARY] = previous
        _commit(base, name, labels, state.stable_history[:-1])
        return read_state(base, name)
