"""The release gate and its CLI: infra-validate, evaluate, bless and push a student, with labels.

    python -m serving.release push --candidate runs/EXP/models/NAME/1 --serving-base serving \
        --name NAME [--data auto] [--split validation|test] [--min-accuracy A] \
        [--max-accuracy-drop D] [--max-p99-ms MS] [--max-latency-growth R] [--label canary|stable]
    python -m serving.release promote  --serving-base serving --name NAME   # canary -> stable
    python -m serving.release rollback --serving-base serving --name NAME   # previous stable
    python -m serving.release status   --serving-base serving [--name NAME] [--json]

`release_candidate` is TFX's InfraValidator -> Evaluator -> Pusher on this project's server:
1. infra validation (`serving.infra_validation`): a sandboxed server process holding only the
   candidate must reach AVAILABLE and answer its warmup records, Predict, Classify and
   GetModelMetadata exactly as the SavedModel does in process;
2. evaluation (`serving.evaluator`): the stable version joins the sandbox as the baseline;
   accuracy and agreement over gRPC on the split, p50/p99 batch-1 latency of both interleaved;
   value thresholds, and change thresholds against the baseline;
3. push (`serving.model_base`): only a candidate that passed both is copied into the serving
   base as a new version labelled `canary` (`stable` stays until `promote`), with its lineage.
Every attempt leaves its records in `<serving-base>/_releases/<name>/<attempt>/`.
Exit status: 0 pushed (or done), 1 refused (each failed check printed), 2 usage errors.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import sys
import tempfile
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from serving.client import ServingClient
from serving.evaluator import (
    NOT_BLESSED,
    Blessing,
    Thresholds,
    judge,
    measure_latencies,
    measure_served,
)
from serving.files import atomic_write_text
from serving.infra_validation import (
    CANDIDATE,
    InfraValidation,
    SandboxError,
    SandboxServer,
    validate_candidate,
)
from serving.model_base import (
    CANARY,
    LABELS,
    RECORDS_DIR,
    ModelState,
    ReleaseError,
    check_model_name,
    model_names,
    promote,
    push_version,
    read_lineage,
    read_state,
    rollback,
)
from serving.model_config import read_model_server_config

RESULT_FILE = "result.json"
METADATA_FILE = Path("assets.extra") / "mimic_tf.json"  # written by serving.export
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
    check_model_name(name)
    if label not in LABELS:
        raise ReleaseError(f"--label {label!r} is not one of {', '.join(LABELS)}")
    if not (candidate / "saved_model.pb").is_file():
        raise ReleaseError(f"{candidate} holds no saved_model.pb; pass a SavedModel version "
                           "folder such as runs/EXP/models/NAME/1")
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
    """Tell a running server to reload `<serving-base>/models.config` (and wait for it)."""
    with ServingClient(target, timeout_s=300) as client:
        client.reload_config(read_model_server_config(Path(serving_base) / "models.config"))


def status_rows(serving_base: str | Path, name: str | None = None) -> list[dict[str, Any]]:
    """One row per version of each model: labels, served, and its blessing record."""
    names = [name] if name else model_names(serving_base)
    rows = []
    for model in names:
        state: ModelState = read_state(serving_base, model)
        for version in sorted(set(state.versions) | set(state.served), reverse=True):
            lineage = read_lineage(serving_base, model, version) or {}
            evaluation = lineage.get("evaluation") or {}
            metrics = evaluation.get("candidate") or {}
            rows.append({
                "model": model,
                "version": version,
                "labels": state.labels_of(version),
                "served": version in state.served,
                "pushed_at": lineage.get("pushed_at"),
                "infra": (lineage.get("infra_validation") or {}).get("verdict"),
                "verdict": evaluation.get("verdict"),
                "accuracy": metrics.get("accuracy"),
                "p99_ms": metrics.get("latency_p99_ms"),
                "params": metrics.get("params"),
                "trial": lineage.get("trial_id"),
                "source": lineage.get("run") or lineage.get("candidate"),
            })
    return rows


def format_status(rows: Sequence[Mapping[str, Any]]) -> str:
    """The status rows as a fixed-width table."""
    if not rows:
        return "no models in this serving base; push one with python -m serving.release push\n"
    header = ("model", "version", "labels", "served", "blessing", "accuracy", "p99 ms",
              "params", "pushed at", "source")

    def cells(row):
        def number(value, spec):
            return format(value, spec) if isinstance(value, (int, float)) else "-"
        blessing = "/".join(v for v in (row["infra"], row["verdict"]) if v) or "-"
        return (row["model"], str(row["version"]), ",".join(row["labels"]) or "-",
                "yes" if row["served"] else "no", blessing, number(row["accuracy"], ".4f"),
                number(row["p99_ms"], ".3f"), number(row["params"], ","),
                row["pushed_at"] or "-", str(row["source"] or "-"))

    table = [header, *(cells(row) for row in rows)]
    widths = [max(len(line[column]) for line in table) for column in range(len(header))]
    return "".join("  ".join(value.ljust(width) for value, width in zip(line, widths, strict=True))
                   .rstrip()
                   + "\n" for line in table)


def build_parser() -> argparse.ArgumentParser:
    """The flags of `python -m serving.release` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="python -m serving.release",
        description="Release students TFX-style: infra-validate, evaluate and push into a TF "
                    "Serving model base with canary and stable labels; promote, roll back.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    push = commands.add_parser("push", help="gate a candidate and push it if it passes",
                               description="Infra-validate and evaluate a candidate SavedModel; "
                               "push it as a new version only if every check passes.")
    push.add_argument("--candidate", required=True, type=Path,
                      help="SavedModel version folder, e.g. runs/EXP/models/NAME/1")
    push.add_argument("--serving-base", required=True, type=Path,
                      help="the folder a model server serves (models.config inside)")
    push.add_argument("--name", required=True, help="model name in the serving base")
    push.add_argument("--data", default="auto",
                      help="labelled data: auto | tfds:cifar10 | folder:PATH | synthetic")
    push.add_argument("--split", choices=("validation", "test"), default="validation")
    push.add_argument("--limit", type=int, help="evaluate on the first N images of the split")
    push.add_argument("--min-accuracy", type=float, help="value threshold, e.g. 0.5")
    push.add_argument("--max-accuracy-drop", type=float,
                      help="change threshold against stable, in accuracy units (0.01: a point)")
    push.add_argument("--max-p99-ms", type=float, help="value threshold on batch-1 p99 latency")
    push.add_argument("--max-latency-growth", type=float,
                      help="change threshold: candidate p99 / stable p99, e.g. 1.5")
    push.add_argument("--label", choices=LABELS, default=CANARY,
                      help="label of the pushed version (default canary; stable skips promote)")
    push.add_argument("--latency-requests", type=int, default=500,
                      help="batch-1 requests timed per model")
    push.add_argument("--backend", choices=("auto", "embedded", "tfserving"), default="auto",
                      help="the sandbox's model server")
    push.add_argument("--timeout", type=float, default=120.0,
                      help="seconds the candidate may take to become AVAILABLE")
    push.add_argument("--server", help="host:port of a live server to tell to reload "
                      "models.config after the push (one polling the file needs none)")
    for command, text in (("promote", "the canary version becomes stable"),
                          ("rollback", "stable goes back to the previously stable version")):
        sub = commands.add_parser(command, help=text, description=text)
        sub.add_argument("--serving-base", required=True, type=Path)
        sub.add_argument("--name", required=True)
        sub.add_argument("--server", help="host:port of a live server to tell to reload")
    status = commands.add_parser("status", help="versions, labels and blessing records",
                                 description="Versions, labels and blessing records.")
    status.add_argument("--serving-base", required=True, type=Path)
    status.add_argument("--name")
    status.add_argument("--json", action="store_true", help="print JSON rows")
    return parser


def _push(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not (args.candidate / "saved_model.pb").is_file():
        parser.error(f"--candidate {args.candidate} holds no saved_model.pb; pass a SavedModel "
                     "version folder such as runs/EXP/models/NAME/1")
    if args.limit is not None and args.limit < 1 or args.latency_requests < 1:
        parser.error("--limit and --latency-requests must be positive")
    from mimic_tf.data import DataError, load_splits  # the labelled split; heavy import

    try:
        splits = load_splits(source=args.data)
    except DataError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    images = getattr(splits, f"{args.split}_images")[: args.limit]
    labels = getattr(splits, f"{args.split}_labels")[: args.limit]
    thresholds = Thresholds(args.min_accuracy, args.max_accuracy_drop, args.max_p99_ms,
                            args.max_latency_growth)
    outcome = release_candidate(
        args.candidate, args.serving_base, args.name, images, labels, thresholds,
        label=args.label, data=f"{splits.source} {args.split} ({len(images)} images)",
        backend=args.backend,
        timeout_s=args.timeout, latency_requests=args.latency_requests,
        live_server=args.server)
    if not outcome.pushed:
        print(f"refused: '{args.name}' not pushed ({len(outcome.reasons)} failed check"
              f"{'s' if len(outcome.reasons) != 1 else ''}); records: {outcome.records_dir}")
        for reason in outcome.reasons:
            print(f"  {reason}")
        return 1
    print(f"pushed: '{args.name}' version {outcome.version}; records: {outcome.records_dir}")
    print(format_status(status_rows(args.serving_base, args.name)), end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the subcommand and run it (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command == "push" and not args.serving_base.is_dir():
        parser.error(f"--serving-base {args.serving_base} does not exist; push a model first")
    if args.name is not None:
        try:
            check_model_name(args.name)
        except ReleaseError as error:
            parser.error(str(error))
    try:
        if args.command == "push":
            return _push(args, parser)
        if args.command == "status":
            rows = status_rows(args.serving_base, args.name)
            print(json.dumps(rows, indent=2) if args.json else format_status(rows), end=
                  "\n" if args.json else "")
            return 0
        state = (promote if args.command == "promote" else rollback)(args.serving_base,
                                                                      args.name)
        print(f"{args.command}: '{args.name}' stable is version {state.stable}, canary is "
              f"version {state.canary}")
        if args.server:
            reload_live_server(args.server, args.serving_base)
        return 0
    except ReleaseError as error:
        print(f"{parser.prog} {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
