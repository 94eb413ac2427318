"""The model manager: which versions of which models are loaded, following `models.config`.

`ModelManager` plays the part of TF Serving's `ServerCore`: for each model in the
`ModelServerConfig` it scans the base path for numeric version folders, serves those its
version policy selects (`latest` 1 by default), loads and warms up new ones before routing
requests to them (AVAILABLE only after warmup), unloads the ones the policy drops (after the
new one is up, so a model is never briefly missing), and repeats every `poll_interval_s` like
`--file_system_poll_wait_seconds`. Requests are resolved by name and version or version label.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path

import grpc
from tensorflow_serving.apis import get_model_status_pb2, model_pb2
from tensorflow_serving.config import model_server_config_pb2

from serving.model_config import (
    BatchingParameters,
    ModelConfigError,
    ModelEntry,
    model_entries,
    read_model_server_config,
    versions_on_disk,
)
from serving.server.admission import ConcurrencyLimit
from serving.server.errors import ServingError, describe_name, load_failure
from serving.server.servable import Servable

logger = logging.getLogger(__name__)

State = get_model_status_pb2.ModelVersionStatus.State


@dataclasses.dataclass(frozen=True)
class VersionState:
    """The state of one version, as `GetModelStatus` reports it."""

    version: int
    state: int  # ModelVersionStatus.State: START, LOADING, AVAILABLE, UNLOADING, END
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""


def describe_request(model_spec: model_pb2.ModelSpec) -> str:
    """TF Serving's wording for the servable a request asks for: `Latest(m)`, `Specific(m, 2)`."""
    choice = model_spec.WhichOneof("version_choice")
    name = describe_name(model_spec.name)
    if choice == "version":
        return f"Specific({name}, {model_spec.version.value})"
    if choice == "version_label":
        return f"Label({name}, {describe_name(model_spec.version_label)})"
    return f"Latest({name})"


class ModelManager:
    """Loads, serves and unloads model versions as a `ModelServerConfig` says.

    Args:
        config: the models to serve.
        poll_interval_s: seconds between scans of the base paths for new versions; 0 scans
            once, at start (TF Serving's `--file_system_poll_wait_seconds`).
        batching: batch concurrent requests with these parameters; None (the default, as in
            TF Serving) runs each request alone.
        enable_warmup: replay each version's warmup requests before it becomes AVAILABLE.
        config_path: the file the config came from, re-read when it changes if
            `config_poll_interval_s` > 0 (TF Serving's `--model_config_file_poll_wait_seconds`).
        concurrency: without batching, the limit on requests running and waiting at once,
            shared by every version; None: no limit.
    """

    def __init__(
        self,
        config: model_server_config_pb2.ModelServerConfig,
        *,
        poll_interval_s: float = 1.0,
        batching: BatchingParameters | None = None,
        enable_warmup: bool = True,
        config_path: str | Path | None = None,
        config_poll_interval_s: float = 0.0,
        concurrency: ConcurrencyLimit | None = None,
    ) -> None:
        self._entries: dict[str, ModelEntry] = {entry.name: entry for entry in
                                                model_entries(config)}
        self.poll_interval_s = float(poll_interval_s)
        self.batching = batching
        self.concurrency = concurrency
        self.enable_warmup = enable_warmup
        self.config_path = Path(config_path) if config_path else None
        self.config_poll_interval_s = float(config_poll_interval_s)
        # name -> version -> Servable; replaced, never mutated, so readers need no lock.
        self._servables: dict[str, dict[int, Servable]] = {}
        self._states: dict[str, dict[int, VersionState]] = {}
        self._failed: set[tuple[str, int]] = set()
        self._sync_lock = threading.Lock()
        self._stop = threading.Event()
        self._poll_thread: threading.Thread | None = None
        self._config_mtime = self._read_config_mtime()

    @property
    def model_names(self) -> list[str]:
        """The models in the current config."""
        return sorted(self._entries)

    def start(self) -> None:
        """Load the initial versions (blocking), then start polling for new ones."""
        self.poll_once()
        if self.poll_interval_s > 0 or self.config_poll_interval_s > 0:
            self._poll_thread = threading.Thread(
                target=self._poll_forever, name="model-manager-poll", daemon=True
            )
            self._poll_thread.start()

    def stop(self) -> None:
        """Stop polling and unload every version (queued batched requests run first)."""
        self._stop.set()
        if self._poll_thread is not None:
            self._poll_thread.join(timeout=30)
        with self._sync_lock:
            servables, self._servables = self._servables, {}
        for versions in servables.values():
            for servable in versions.values():
                servable.close()

    def poll_once(self) -> None:
        """Scan every model's base path once; load what the policies add, unload what they drop."""
        with self._sync_lock:
            for entry in list(self._entries.values()):
                self._sync_model(entry)

    def reload(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        """Replace the served models with those of `config` (HandleReloadConfigRequest).

        Models no longer listed are unloaded; new ones are loaded before this returns.

        Raises:
            ServingError: INVALID_ARGUMENT when the config is invalid.
        """
        try:
            entries = {entry.name: entry for entry in model_entries(config)}
        except ModelConfigError as error:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from None
        with self._sync_lock:
            # Load what the new config adds before its labels can point there, and unload
            # what it drops only after, so a label always names a loaded version.
            for entry in entries.values():
                self._sync_model(entry, unload=False)
            removed = set(self._entries) - set(entries)
            self._entries = entries
            for name in removed:
                servables = self._servables.get(name, {})
                self._servables = {k: v for k, v in self._servables.items() if k != name}
                self._states = {k: v for k, v in self._states.items() if k != name}
                for servable in servables.values():
                    servable.close()
                logger.info("model '%s' removed from the config; unloaded", name)
            for entry in entries.values():
                self._sync_model(entry)

    def resolve(self, model_spec: model_pb2.ModelSpec) -> Servable:
        """The loaded version a request's `ModelSpec` asks for.

        No version: the highest AVAILABLE one; `version`: that one; `version_label`: the
        version the config's `version_labels` maps it to.

        Raises:
            ServingError: NOT_FOUND for an unknown model or a version not loaded;
                INVALID_ARGUMENT for an unknown version label (as TF Serving).
        """
        name = model_spec.name
        # A reload swaps the labels between loading and unloading versions; reading the
        # labels and the loaded versions once more after a miss sees both sides of one swap.
        for _ in range(2):
            versions = self._servables.get(name)
            if not versions:
                served = ", ".join(self.model_names) or "none"
                raise ServingError(
                    grpc.StatusCode.NOT_FOUND,
                    f"Servable not found for request: {describe_request(model_spec)}; served "
                    f"models: {served}",
                )
            choice = model_spec.WhichOneof("version_choice")
            if choice is None:
                return versions[max(versions)]
            if choice == "version":
                version = model_spec.version.value
            else:
                labels = self._entries[name].version_labels if name in self._entries else {}
                if model_spec.version_label not in labels:
                    raise ServingError(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"Unrecognized servable version label: "
                        f"{describe_name(model_spec.version_label)}; labels of model '{name}': "
                        f"{', '.join(sorted(labels)) or 'none'} (set them with version_labels "
                        "in models.config)",
                    )
                version = labels[model_spec.version_label]
            servable = versions.get(version)
            if servable is not None:
                return servable
        raise ServingError(
            grpc.StatusCode.NOT_FOUND,
            f"Servable not found for request: {describe_request(model_spec)}; available "
            f"versions of '{name}': {', '.join(map(str, sorted(versions)))}",
        )

    def version_states(self, model_spec: model_pb2.ModelSpec) -> list[VersionState]:
        """The states of a model's versions (or of the one version/label asked for).

        Raises:
            ServingError: NOT_FOUND when the model or version is unknown.
        """
        name = model_spec.name
        states = self._states.get(name)
        if name not in self._entries or not states:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND,
                f"Could not find any versions of model {describe_name(name)}"
                + ("" if name in self._entries else f"; served models: "
                   f"{', '.join(self.model_names) or 'none'}"),
            )
        choice = model_spec.WhichOneof("version_choice")
        if choice is None:
            return [states[version] for version in sorted(states)]
        if choice == "version":
            version = model_spec.version.value
        else:
            labels = self._entries[name].version_labels
            if model_spec.version_label not in labels:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Unrecognized servable "
                                   f"version label: {describe_name(model_spec.version_label)}")
            version = labels[model_spec.version_label]
        if version not in states:
            raise ServingError(grpc.StatusCode.NOT_FOUND,
                               f"Could not find version {version} of model {name}")
        return [states[version]]

    def _set_state(self, name: str, state: VersionState) -> None:
        model_states = dict(self._states.get(name, {}))
        model_states[state.version] = state
        self._states = {**self._states, name: model_states}

    def _sync_model(self, entry: ModelEntry, unload: bool = True) -> None:
        on_disk = versions_on_disk(entry.base_path)
        if not on_disk and entry.name not in self._servables:
            logger.warning("no versions of model '%s' found under %s", entry.name,
                           entry.base_path)
        aspired = entry.version_policy.select(on_disk)
        current = self._servables.get(entry.name, {})
        for version in aspired:
            if version not in current and (entry.name, version) not in self._failed:
                self._load(entry, version)
        if not unload:
            return
        current = self._servables.get(entry.name, {})
        for version in [v for v in current if v not in aspired]:
            self._unload(entry.name, version)

    def _load(self, entry: ModelEntry, version: int) -> None:
        self._set_state(entry.name, VersionState(version, State.LOADING))
        logger.info("loading model '%s' version %d from %s", entry.name, version,
                    entry.base_path / str(version))
        try:
            servable = Servable(entry.name, version, entry.base_path / str(version),
                                batching=self.batching, concurrency=self.concurrency)
            if self.enable_warmup:
                records = servable.warmup()
                logger.info("model '%s' version %d: %d warmup requests run", entry.name,
                            version, records)
        except Exception as error:  # a bad version must not stop the others from loading
            failure = load_failure(error)
            logger.error("model '%s' version %d failed to load: %s", entry.name, version,
                         failure.message, exc_info=error)
            self._failed.add((entry.name, version))
            self._set_state(entry.name, VersionState(version, State.END, failure.code,
                                                     failure.message))
            return
        versions = {**self._servables.get(entry.name, {}), version: servable}
        self._servables = {**self._servables, entry.name: versions}
        self._set_state(entry.name, VersionState(version, State.AVAILABLE))
        logger.info("model '%s' version %d AVAILABLE", entry.name, version)

    def _unload(self, name: str, version: int) -> None:
        versions = dict(self._servables.get(name, {}))
        servable = versions.pop(version)
        self._servables = {**self._servables, name: versions}
        self._set_state(name, VersionState(version, State.UNLOADING))
        servable.close()
        self._set_state(name, VersionState(version, State.END))
        logger.info("model '%s' version %d unloaded", name, version)

    def _read_config_mtime(self) -> float | None:
        try:
            return self.config_path.stat().st_mtime if self.config_path else None
        except OSError:
            return None

    def _poll_forever(self) -> None:
        intervals = [i for i in (self.poll_interval_s, self.config_poll_interval_s) if i > 0]
        interval = min(intervals)
        while not self._stop.wait(interval):
            try:
                if self.config_poll_interval_s > 0 and self.config_path is not None:
                    mtime = self._read_config_mtime()
                    if mtime is not None and mtime != self._config_mtime:
                        self._config_mtime = mtime
                        self.reload(read_model_server_config(self.config_path))
                        logger.info("reloaded model config %s", self.config_path)
                if self.poll_interval_s > 0:
                    self.poll_once()
            except Exception:  # keep polling whatever one scan met
                logger.exception("model manager poll failed; retrying in %.1f s", interval)
