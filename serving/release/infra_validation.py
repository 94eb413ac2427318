"""Infra validation: does a candidate SavedModel load in a real model server and answer right?

The role of TFX's InfraValidator, on the project's own server and raw-image signatures:
`SandboxServer` starts a model server in its own process (`python -m serving.server`: the
real `tensorflow_model_server` when it is on the PATH, else the embedded one) on an ephemeral
loopback port, holding only the models it is given; `validate_candidate` waits for the
candidate to reach AVAILABLE, replays its warmup records, then sends Predict, Classify and
GetModelMetadata requests and checks every served output against the same SavedModel run in
this process. The verdict is written as TFX writes it: an `INFRA_BLESSED` or
`INFRA_NOT_BLESSED` file, here holding the reason and the checks as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.config import model_server_config_pb2

from mimic_tf.files import atomic_write_text
from mimic_tf.layout import MODELS_CONFIG_FILE
from serving import tensors
from serving.client import ModelLoadError, ServingClient
from serving.model_config import read_model_server_config, write_model_server_config
from serving.server.servable import read_signature_defs
from serving.signatures import (
    CLASSIFY_SCORES,
    CLASSIFY_SIGNATURE,
    IMAGES_INPUT,
    LOGITS_OUTPUT,
    PREDICT_SIGNATURE,
    WARMUP_FILE,
    encode_image_example,
)

INFRA_BLESSED = "INFRA_BLESSED"
INFRA_NOT_BLESSED = "INFRA_NOT_BLESSED"
CANDIDATE = "candidate"  # the candidate's model name inside the sandbox
OUTPUT_TOLERANCE = 1e-5  # max |served - in-process| accepted for any output


class SandboxError(RuntimeError):
    """The sandboxed server did not start, or a model in it did not become AVAILABLE."""


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SandboxServer:
    """A model server process on a free loopback port serving version 1 of each given model.

        with SandboxServer({"candidate": Path(".../7")}, work_dir) as sandbox:
            client = ServingClient(sandbox.target)

    Args:
        models: model name -> SavedModel folder (linked as `<work_dir>/models/<name>/1`).
        work_dir: where the sandbox's models.config, links and `server.log` go.
        backend: `auto`, `embedded` or `tfserving` (as `python -m serving.server`).
        timeout_s: how long each model may take to become AVAILABLE.
    """

    def __init__(self, models: Mapping[str, str | Path], work_dir: str | Path, *,
                 backend: str = "auto", timeout_s: float = 120.0) -> None:
        self.work_dir = Path(work_dir)
        self.backend = backend
        self.timeout_s = timeout_s
        self.models: dict[str, Path] = {}
        self.port: int | None = None
        self.log_path = self.work_dir / "server.log"
        self._process: subprocess.Popen | None = None
        self._log = None
        self._add_links(models)

    @property
    def target(self) -> str:
        """`127.0.0.1:port` of the sandbox's gRPC API."""
        return f"127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.work_dir / MODELS_CONFIG_FILE

    def _add_links(self, models: Mapping[str, str | Path]) -> None:
        for name, saved_model_dir in models.items():
            link = self.work_dir / "models" / name / "1"
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(Path(saved_model_dir).absolute(), target_is_directory=True)
            self.models[name] = Path(saved_model_dir)
        config = model_server_config_pb2.ModelServerConfig()
        for name in sorted(self.models):
            config.model_config_list.config.add(
                name=name, base_path=str((self.work_dir / "models" / name).absolute()),
                model_platform="tensorflow")
        write_model_server_config(config, self.config_path)

    def start(self) -> SandboxServer:
        """Start the process and wait until every model is AVAILABLE.

        Raises:
            SandboxError: the process exited, or a model failed or timed out (the server's
                last log lines are in the message).
        """
        self.port = free_loopback_port()
        package_root = str(Path(__file__).absolute().parent.parent)
        environment = {**os.environ,
                       "PYTHONPATH": os.pathsep.join(
                           filter(None, [package_root, os.environ.get("PYTHONPATH")]))}
        self._log = open(self.log_path, "ab")
        self._process = subprocess.Popen(
            [sys.executable, "-m", "serving.server", "--model-config", str(self.config_path),
             "--port", str(self.port), "--rest-port", "0", "--backend", self.backend,
             "--file-system-poll-wait-seconds", "0"],
            stdout=self._log, stderr=subprocess.STDOUT, env=environment,
        )
        try:
            self.wait_until_available(list(self.models))
        except SandboxError:
            self.stop()
            raise
        return self

    def wait_until_available(self, names: list[str]) -> None:
        """Block until each model is AVAILABLE (raises SandboxError on failure or timeout)."""
        deadline = time.monotonic() + self.timeout_s
        with ServingClient(self.target, timeout_s=5.0, max_attempts=1) as client:
            for name in names:
                try:
                    client.wait_until_available(
                        name, timeout_s=max(0.0, deadline - time.monotonic()),
                        give_up=self._exited)
                except ModelLoadError as error:
                    raise SandboxError(f"{error}: {self.log_tail()}") from None
                except TimeoutError:
                    raise SandboxError(f"'{name}' was not AVAILABLE within "
                                       f"{self.timeout_s:.0f} s: {self.log_tail()}") from None

    def _exited(self) -> str | None:
        """Why waiting is pointless: the server process exited (None while it runs)."""
        if self._process is None or self._process.poll() is None:
            return None
        return f"the sandboxed server exited with status {self._process.returncode}"

    def add_models(self, models: Mapping[str, str | Path]) -> None:
        """Serve more models: relink, then `HandleReloadConfigRequest` and wait for them."""
        self._add_links(models)
        with ServingClient(self.target, timeout_s=self.timeout_s) as client:
            client.reload_config(read_model_server_config(self.config_path))
        self.wait_until_available(list(models))

    def log_tail(self, lines: int = 8) -> str:
        """The last lines the server wrote, on one line."""
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no server log)"
        return " | ".join(text[-lines:]) or "(empty server log)"

    def stop(self) -> None:
        """SIGTERM the process, then SIGKILL it if it has not exited within 15 s."""
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> SandboxServer:
        return self.start() if self._process is None else self

    def __exit__(self, *exc_info) -> None:
        self.stop()


@dataclasses.dataclass
class InfraValidation:
    """The verdict of infra validation: blessed or not, why, and what was checked."""

    blessed: bool
    reason: str
    checks: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def marker(self) -> str:
        return INFRA_BLESSED if self.blessed else INFRA_NOT_BLESSED

    def write(self, records_dir: str | Path) -> Path:
        """Write `INFRA_BLESSED` or `INFRA_NOT_BLESSED` (reason and checks as JSON)."""
        return atomic_write_text(Path(records_dir) / self.marker, json.dumps(
            {"blessed": self.blessed, "reason": self.reason, "checks": self.checks},
            indent=2) + "\n")


class _Mismatch(Exception):
    pass


def _compare(what: str, served: np.ndarray, expected: np.ndarray, worst: list[float]) -> None:
    if served.shape != expected.shape:
        raise _Mismatch(f"{what}: served shape {list(served.shape)} but in-process shape "
                        f"{list(expected.shape)}")
    difference = float(np.max(np.abs(served.astype(np.float64) - expected))) \
        if served.size else 0.0
    worst.append(difference)
    if not difference <= OUTPUT_TOLERANCE:
        raise _Mismatch(f"{what}: served outputs differ from in-process outputs by "
                        f"{difference:.3g} (> {OUTPUT_TOLERANCE})")


def _replay_warmup(client: ServingClient, saved_model_dir: Path, signatures,
                   worst: list[float]) -> int:
    path = saved_model_dir / WARMUP_FILE
    if not path.is_file():
        return 0
    count = 0
    for record in tf.data.TFRecordDataset(str(path)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        kind = log.WhichOneof("log_type")
        if kind == "predict_log":
            request = log.predict_log.request
            request.model_spec.name = CANDIDATE
            response = client.prediction.Predict(request, timeout=client.timeout_s)
            name = request.model_spec.signature_name or PREDICT_SIGNATURE
            inputs = {key: tf.constant(tensors.to_ndarray(value))
                      for key, value in request.inputs.items()}
            expected = signatures[name](**inputs)
            for key, value in response.outputs.items():
                _compare(f"warmup record {count} output '{key}'", tensors.to_ndarray(value),
                         expected[key].numpy(), worst)
        elif kind == "classify_log":
            request = log.classify_log.request
            request.model_spec.name = CANDIDATE
            client.prediction.Classify(request, timeout=client.timeout_s)
        count += 1
    return count


def validate_candidate(
    client: ServingClient, saved_model_dir: str | Path, probe_images: np.ndarray
) -> InfraValidation:
    """Query the sandboxed candidate (model `candidate`) and compare with in-process outputs.

    Sends the warmup records, then Predict (`probe_images`), Classify (the same images as
    tf.Examples) and GetModelMetadata; any RPC failure or output difference above
    `OUTPUT_TOLERANCE` is INFRA_NOT_BLESSED.
    """
    saved_model_dir = Path(saved_model_dir)
    checks: dict[str, Any] = {}
    try:
        loaded = tf.saved_model.load(str(saved_model_dir))
        signatures = loaded.signatures
        worst: list[float] = []
        checks["warmup_requests"] = _replay_warmup(client, saved_model_dir, signatures, worst)

        served = client.predict(CANDIDATE, probe_images)
        expected = signatures[PREDICT_SIGNATURE](**{IMAGES_INPUT: tf.constant(probe_images)})
        for key, value in served.items():
            _compare(f"Predict output '{key}'", value, expected[key].numpy(), worst)
        checks["predict_outputs"] = sorted(served)

        classified = client.classify(CANDIDATE, probe_images)
        examples = tf.constant([encode_image_example(image) for image in probe_images])
        expected_scores = signatures[CLASSIFY_SIGNATURE](inputs=examples)[CLASSIFY_SCORES]
        _compare("Classify scores", np.array([[score for _, score in row] for row in classified],
                                             dtype=np.float32), expected_scores.numpy(), worst)

        served_signatures = client.signature_defs(CANDIDATE)
        on_disk = read_signature_defs(saved_model_dir)
        if served_signatures != {key: on_disk[key] for key in served_signatures} \
                or set(served_signatures) != set(on_disk):
            raise _Mismatch(f"GetModelMetadata: served signatures {sorted(served_signatures)} "
                            f"differ from the SavedModel's {sorted(on_disk)}")
        checks["signatures"] = sorted(served_signatures)
        checks["probe_images"] = len(probe_images)
        checks["max_abs_output_difference"] = max(worst, default=0.0)
        if LOGITS_OUTPUT not in served:
            raise _Mismatch(f"Predict returned no '{LOGITS_OUTPUT}' output")
    except _Mismatch as mismatch:
        return InfraValidation(False, str(mismatch), checks)
    except grpc.RpcError as error:
        return InfraValidation(False, f"the sandboxed server answered {error.code().name}: "
                                      f"{error.details()}", checks)
    except (OSError, ValueError, KeyError, tf.errors.OpError) as error:
        return InfraValidation(False, f"the candidate does not run in process: {error}", checks)
    return InfraValidation(True, "loaded, warmed up and answered Predict, Classify and "
                                 "GetModelMetadata as it does in process", checks)
