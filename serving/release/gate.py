"""The release gate: TFX's InfraValidator -> Evaluator -> Pusher for one candidate student.

`release_candidate` runs, in order:
1. infra validation (`serving.release.infra_validation`): a sandboxed server process holding
   only the candidate must reach AVAILABLE and answer its warmup records, Predict, Classify and
   GetModelMetadata exactly as the SavedModel does in process;
2. evaluation (`serving.release.evaluator`): the stable version joins the sandbox as the baseline;
   accuracy and agreement over gRPC on the split, p50/p99 batch-1 latency of both interleaved;
   value thresholds, and change thresholds against the baseline;
3. push (`serving.release.serving_base`): only a candidate that passed both is copied into
   the serving base as a new version labelled `canary` (`stable` stays until `promote`), with
   its lineage.
Every attempt leaves its records in `<serving-base>/_releases/<name>/<attempt>/`:
`INFRA_BLESSED` or `INFRA_NOT_BLESSED`, `BLESSED` or `NOT_BLESSED`, `evaluation.json`,
`result.json`. The CLI is `python -m serving.release`.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from mimic_tf.files import atomic_write_text
from serving.client import ServingClient
from serving.model_config import read_model_server_config
from serving.release.evaluator import (
    NOT_BLESSED,
    Blessing,
    Thresholds,
    judge,
    measure_latencies,
    measure_served,
)
from serving.release.infra_validation import (
    CANDIDATE,
    InfraValidation,
    SandboxError,
    SandboxServer,
    validate_candidate,
)
from serving.release.serving_base import (
    CANARY,
    MODELS_CONFIG,
    RECORDS_DIR,
    ReleaseError,
    check_push,
    push_version,
    read_state,
)
from serving.signatures import METADATA_FILE

RESULT_FILE = "result.json"
BASELINE = "baseline"  # the stable version's model name inside the sandbox


@dataclasses.dataclass
class ReleaseOutcome:
    """What the gate decided: pushed (with the version) or refused (with the reasons)."""

    name: str
    pushed: bool
    version: int | None
    reasons: list[str]  # one line per failed check (empty when pushed)
    lines: list[str]  # every check, PASS or FAIL
    records_dir: Path


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def attempt_dir(serving_base: str | Path, name: str) -> Path:
    """A new records folder for one gate run: `_releases/<name>/<UTC time>-<id>/`."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    folder = Path(serving_base) / RECORDS_DIR / name / f"{stamp}-{uuid.uuid4().hex[:6]}"
    folder.mkdir(parents=True)
    return folder


def candidate_metadata(saved_model_dir: str | Path) -> dict[str, Any]:
    """The export metadata of a SavedModel (`assets.extra/mimic_tf.json`), or {}."""
    path = Path(saved_model_dir) / METADATA_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def release_candidate(
    candidate: str | Path,
    serving_base: str | Path,
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    thresholds: Thresholds | None = None,
    *,
    label: str = CANARY,
    data: str = "",
    lineage: Mapping[str, Any] | None = None,
    backend: str = "auto",
    timeout_s: float = 120.0,
    latency_requests: int = 500,
    live_server: str | None = None,
    log=print,
) -> ReleaseOutcome:
    """Run the gate on a candidate SavedModel folder and push it only if it passes.

    Args:
        candidate: a SavedModel version folder (`runs/EXP/models/NAME/1`).
        serving_base: the folder TF Serving serves (its `models.config` is rewritten).
        name: the model name in the serving base.
        images, labels: the evaluation split (uint8 `[N, H, W, C]`, int `[N]`).
        thresholds: what the candidate must meet (None: only served equals in process).
        label: `canary` (default) or `stable` for the pushed version.
        data: where the split came from, for the records.
        lineage: run, trial, hyperparameters, fingerprints... stored with the version, over
            the lineage the candidate's export recorded (`assets.extra/mimic_tf.json`).
        backend: the sandbox's server (`auto`, `embedded`, `tfserving`).
        live_server: `host:port` of a running server to send `HandleReloadConfigRequest`
            after the push (a server polling `models.config` needs none).
        log: where progress lines go.
    """
    candidate, serving_base = Path(candidate).absolute(), Path(serving_base).absolute()
    check_push(name, candidate, label)
    if len(images) == 0 or len(images) != len(labels):
        raise ReleaseError(f"the evaluation split has {len(images)} images and {len(labels)} "
                           "labels; pass a non-empty labelled split")
    thresholds = thresholds or Thresholds()
    started = _utc_now()
    records = attempt_dir(serving_base, name)
    state = read_state(serving_base, name)
    baseline_dir = serving_base / name / str(state.stable) if state.stable else None
    log(f"[{name}] gate: candidate {candidate}; baseline: "
        f"{f'stable version {state.stable}' if baseline_dir else 'none (value thresholds only)'}")

    def refuse(reasons: list[str], lines: list[str]) -> ReleaseOutcome:
        outcome = ReleaseOutcome(name, False, None, reasons, lines, records)
        _write_result(outcome, started)
        return outcome

    blessing: Blessing | None = None
    evaluation_error = ""
    with tempfile.TemporaryDirectory(prefix="mimic-tf-sandbox-") as work_dir:
        sandbox = SandboxServer({CANDIDATE: candidate}, work_dir, backend=backend,
                                timeout_s=timeout_s)
        try:
            sandbox.start()
        except SandboxError as error:
            infra = InfraValidation(False, f"did not load in a sandboxed server: {error}")
        else:
            try:
                with ServingClient(sandbox.target, timeout_s=timeout_s) as client:
                    infra = validate_candidate(client, candidate, images[:8])
                    if infra.blessed:
                        log(f"[{name}] {infra.marker}: {infra.reason}")
                        blessing = _evaluate(client, sandbox, candidate, baseline_dir,
                                             state.stable, images, labels, thresholds, data,
                                             latency_requests)
            except grpc.RpcError as error:
                evaluation_error = (f"the sandboxed server answered {error.code().name}: "
                                    f"{error.details()}")
            except SandboxError as error:
                evaluation_error = f"the baseline did not load in the sandbox: {error}"
            finally:
                sandbox.stop()
        infra.write(records)
    if not infra.blessed:
        line = f"FAIL infra validation: {infra.reason}"
        log(f"[{name}] {infra.marker}: {infra.reason}")
        return refuse([line], [line])
    if blessing is None:
        line = f"FAIL evaluation: {evaluation_error}"
        log(f"[{name}] NOT_BLESSED: {evaluation_error}")
        atomic_write_text(records / NOT_BLESSED, json.dumps({"failed": [line]}) + "\n")
        return refuse([line], [line])
    blessing.write(records)
    lines = [check.line() for check in blessing.checks]
    for line in lines:
        log(f"[{name}]   {line}")
    if not blessing.blessed:
        log(f"[{name}] {blessing.marker}: refused, nothing pushed")
        return refuse([line for line in lines if line.startswith("FAIL")], lines)

    export_metadata = candidate_metadata(candidate)
    version_lineage = {
        **export_metadata.get("lineage", {}),
        **dict(lineage or {}),
        "export": export_metadata,
        "candidate": str(candidate),
        "infra_validation": {"verdict": infra.marker, **infra.checks},
        "evaluation": blessing.to_dict(),
        "gate_started": started,
        "pushed_at": _utc_now(),
        "records": str(records),
    }
    version = push_version(
        serving_base, name, candidate, version_lineage, label=label,
        before_labelling=(lambda new: wait_until_served(live_server, serving_base, name, new))
        if live_server else None)
    outcome = ReleaseOutcome(name, True, version, [], lines, records)
    _write_result(outcome, started)
    new_state = read_state(serving_base, name)
    log(f"[{name}] {blessing.marker}: pushed as version {version} "
        f"(labels: {', '.join(new_state.labels_of(version))})")
    if live_server:
        reload_live_server(live_server, serving_base)
    return outcome


def _evaluate(client: ServingClient, sandbox: SandboxServer, candidate: Path,
              baseline_dir: Path | None, baseline_version: int | None, images: np.ndarray,
              labels: np.ndarray, thresholds: Thresholds, data: str,
              latency_requests: int) -> Blessing:
    """Metrics of the candidate (and of the baseline, added to the sandbox) and the verdict."""
    if baseline_dir is not None:
        sandbox.add_models({BASELINE: baseline_dir})
    candidate_metrics = measure_served(client, CANDIDATE, candidate, images, labels)
    baseline_metrics = (measure_served(client, BASELINE, baseline_dir, images, labels)
                        if baseline_dir is not None else None)
    names = [CANDIDATE] + ([BASELINE] if baseline_dir is not None else [])
    latencies = measure_latencies(client, names, images, requests=latency_requests)
    candidate_metrics.latency_p50_ms, candidate_metrics.latency_p99_ms = latencies[CANDIDATE]
    if baseline_metrics is not None:
        baseline_metrics.latency_p50_ms, baseline_metrics.latency_p99_ms = latencies[BASELINE]
    return Blessing(judge(candidate_metrics, baseline_metrics, thresholds), candidate_metrics,
                    baseline_metrics, baseline_version, thresholds, data)


def _write_result(outcome: ReleaseOutcome, started: str) -> None:
    atomic_write_text(outcome.records_dir / RESULT_FILE, json.dumps({
        "name": outcome.name, "pushed": outcome.pushed, "version": outcome.version,
        "reasons": outcome.reasons, "checks": outcome.lines, "started": started,
        "finished": _utc_now()}, indent=2) + "\n")


def wait_until_served(target: str, serving_base: str | Path, name: str, version: int,
                      timeout_s: float = 300.0) -> None:
    """Have a live server load `models.config` and wait until `version` is AVAILABLE."""
    reload_live_server(target, serving_base)
    with ServingClient(target) as client:
        client.wait_until_available(name, version=version, timeout_s=timeout_s)


def reload_live_server(target: str, serving_base: str | Path) -> None:
    """Tell a running server to reload `<serving-base>/models.config` (and wait for it).

    Raises:
        ReleaseError: the server could not be reached or refused the config.
    """
    try:
        with ServingClient(target, timeout_s=300) as client:
            client.reload_config(read_model_server_config(Path(serving_base) / MODELS_CONFIG))
    except grpc.RpcError as error:
        raise ReleaseError(f"the server at {target} did not reload the config "
                           f"({error.code().name}: {error.details()}); the serving base is "
                           "updated, and a server polling models.config picks it up") from None
