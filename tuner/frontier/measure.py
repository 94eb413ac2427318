"""Measuring the frontier: serve every trained student, time it, and flag the Pareto front.

    rows = measure_frontier(layout, config, test_images, test_labels, spec=splits.spec)

For every completed trial of a run that did not diverge (each search's best and the rest,
hard-label baselines included):

1. the student is rebuilt from the trial's hyperparameters and its best-epoch checkpoint (no
   retraining) and exported once to `frontier/models/<cell>-t<trial>/1/`;
2. its test logits, in process, give its test accuracy and the mimic diagnostics against the
   teacher's test logits (`mimic_tf.diagnostics`);
3. one server process (`serving.release.infra_validation.SandboxServer`, on a loopback port) serves
   every student at once; each is warmed up, then batch-1 latency and batch-32 throughput are
   timed with the students' requests interleaved, so a drift in the machine's load meets all
   of them alike;
4. the Pareto flags (`tuner.frontier.pareto`) mark the students no other dominates: at least as
   accurate and as fast at p99, and strictly better on one.

Writes `frontier.csv`, `frontier.md`, `frontier.png` and `reliability.png` (`tuner.frontier.table`)
and `frontier/measurement.json`, the record a rerun compares with: when the same checkpoints
were measured under the same settings, the stage is skipped. `tuner.run` runs it after the
export (`frontier.measure`); the report then adds the diagnostics to `results.md` and the
figures to TensorBoard.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from mimic_tf.budgets import budget_label
from mimic_tf.config import ExperimentConfig
from mimic_tf.data.spec import DatasetSpec
from mimic_tf.diagnostics import (
    expected_calibration_error,
    mimic_diagnostics,
    reliability_bins,
    softmax,
)
from mimic_tf.files import atomic_write_text
from mimic_tf.flops import forward_flops
from mimic_tf.layout import ExperimentLayout
from mimic_tf.runtime import cpu_name
from mimic_tf.vocabulary import HARD_LOSS, architecture_label
from serving.client import ServingClient
from serving.compare import batch1_durations, interleaved_throughput, percentiles_ms
from serving.export import ExportError, export_student
from serving.release.infra_validation import SandboxError, SandboxServer
from serving.server.model_server import TFSERVING_BINARY
from serving.signatures import METADATA_FILE
from tuner import artifacts
from tuner.artifacts import TrialRecord
from tuner.frontier.pareto import pareto_flags
from tuner.frontier.table import (
    FrontierRow,
    draw_frontier,
    draw_reliability,
    frontier_markdown,
    read_frontier,
    read_measurement,
    write_frontier_csv,
)
from tuner.search.cells import Cell
from tuner.search.hypermodel import StudentHyperModel, fixed_hyperparameters

LATENCY_IMAGES = 64  # distinct test images cycled through the batch-1 requests


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One completed trial to serve: its cell, its record, its rank in the search."""

    cell: Cell
    trial: TrialRecord
    rank: int
    checkpoint: Path

    @property
    def name(self) -> str:
        """The served model name: `<cell>-t<trial id>`."""
        return f"{self.cell.name}-t{self.trial.trial_id}"

    def fingerprint(self) -> str:
        """Which weights: the checkpoint's size and modification time (a rerun trial differs)."""
        status = self.checkpoint.stat()
        return f"{status.st_size}-{status.st_mtime_ns}"


def frontier_candidates(layout: ExperimentLayout) -> list[Candidate]:
    """Every completed, finite trial of every search that has its best-epoch checkpoint."""
    candidates = []
    for cell, search in artifacts.read_searches(layout):
        ranked = artifacts.ranked(artifacts.read_trials(search))
        for rank, trial in enumerate(ranked, start=1):
            checkpoint = search.checkpoint(trial.trial_id)
            if not trial.diverged and checkpoint.is_file():
                candidates.append(Candidate(cell, trial, rank, checkpoint))
    return candidates


def rebuild_student(candidate: Candidate, config: ExperimentConfig,
                    spec: DatasetSpec) -> keras.Model:
    """The trial's student with its best epoch's weights, built as its search built it."""
    hp = fixed_hyperparameters(candidate.trial.hyperparameters)
    distiller = StudentHyperModel(candidate.cell, config.student, seed=config.seed,
                                  spec=spec).build(hp)
    with warnings.catch_warnings():
        # The checkpoint holds the optimizer's slots too; serving does not need them.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        distiller.load_weights(candidate.checkpoint)
    return distiller.student


def _exported(version_dir: Path, fingerprint: str) -> bool:
    metadata = version_dir / METADATA_FILE
    if not (version_dir / "saved_model.pb").is_file() or not metadata.is_file():
        return False
    lineage = json.loads(metadata.read_text()).get("lineage", {})
    return lineage.get("checkpoint") == fingerprint


def prepare_student(candidate: Candidate, config: ExperimentConfig, layout: ExperimentLayout,
                    test_images: np.ndarray, spec: DatasetSpec
                    ) -> tuple[Path, int, int, np.ndarray]:
    """Export the trial once; return its SavedModel folder, params, FLOPs and test logits."""
    student = rebuild_student(candidate, config, spec)
    version_dir = layout.frontier_models / candidate.name / "1"
    fingerprint = candidate.fingerprint()
    if not _exported(version_dir, fingerprint):
        shutil.rmtree(version_dir.parent, ignore_errors=True)
        export_student(student, layout.frontier_models, candidate.name, version=1,
                       class_names=spec.class_names, warmup_images=test_images[:32], lineage={
                           "run": str(layout.root.absolute()), "search": candidate.cell.name,
                           "trial_id": candidate.trial.trial_id, "checkpoint": fingerprint,
                           "hyperparameters": candidate.trial.hyperparameters,
                           "val_accuracy": candidate.trial.score})
    logits = student_logits(student, test_images)
    return version_dir, int(student.count_params()), forward_flops(student), logits


def student_logits(student: keras.Model, images: np.ndarray, batch_size: int = 500
                   ) -> np.ndarray:
    """The student's logits, in batches, called directly: `predict` would trace a new function
    for every student (and TensorFlow warn about retracing)."""
    return np.concatenate([np.asarray(student(images[start:start + batch_size],
                                              training=False), np.float32)
                           for start in range(0, len(images), batch_size)])


def measurement_conditions(config: ExperimentConfig) -> dict[str, Any]:
    """What the latency figures depend on: the machine, the server and the request counts."""
    server = "tensorflow_model_server" if shutil.which(TFSERVING_BINARY) else \
        "embedded Python gRPC"
    settings = config.frontier
    return {"cpu": cpu_name(), "server": server,
            "server_threads": "intra-op and inter-op threads: auto",
            "batching": "off", "latency_requests": settings.latency_requests,
            "throughput_batch_size": settings.throughput_batch_size}


def _up_to_date(layout: ExperimentLayout, inputs: dict[str, str], settings: dict) -> bool:
    previous = read_measurement(layout)
    return (layout.frontier_csv.is_file() and previous.get("inputs") == inputs
            and previous.get("settings") == settings)


def measure_frontier(
    layout: ExperimentLayout,
    config: ExperimentConfig,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    *,
    spec: DatasetSpec,
    remeasure: bool = False,
    command: str = "",
    log: Callable[[str], None] = print,
) -> list[FrontierRow]:
    """Serve and measure every completed trial of the run; write the frontier's files.

    `spec` describes the test images and classes (the run's `Splits.spec`).

    Returns the rows (those of the last measurement when nothing changed since).
    """
    started = time.perf_counter()
    candidates = frontier_candidates(layout)
    inputs = {c.name: c.fingerprint() for c in candidates}
    settings = {key: value for key, value in dataclasses.asdict(config.frontier).items()
                if key != "measure"}
    if not remeasure and _up_to_date(layout, inputs, settings):
        log(f"frontier: {len(candidates)} students measured already ({layout.frontier_md})")
        return read_frontier(layout.frontier_csv)
    if not candidates:
        log("frontier: no completed trial to serve")
        return []
    teacher_logits = np.load(layout.transfer_evaluation_logits)["test"]
    labels = np.asarray(test_labels).reshape(-1)

    # 1-2. Each student exported once and evaluated in process.
    log(f"frontier: exporting and evaluating {len(candidates)} students")
    prepared, failed = {}, {}
    for candidate in candidates:
        try:
            prepared[candidate.name] = prepare_student(candidate, config, layout, test_images,
                                                       spec)
        except (ExportError, OSError, ValueError) as error:
            failed[candidate.name] = str(error)
            log(f"frontier: {candidate.name} left out: {error}")
        keras.backend.clear_session()
    served = [c for c in candidates if c.name in prepared]

    # 3. One server for all, the students' requests interleaved.
    names = [c.name for c in served]
    log(f"frontier: serving {len(names)} students in one server to time them")
    sandbox = SandboxServer({name: prepared[name][0] for name in names}, layout.frontier /
                            "server", timeout_s=300.0)
    try:
        sandbox.start()
    except SandboxError as error:
        raise RuntimeError(f"the frontier's server did not start: {error}") from None
    try:
        with ServingClient(sandbox.target) as client:
            latency_images = test_images[:LATENCY_IMAGES]
            durations = batch1_durations(client, names, latency_images,
                                         requests=config.frontier.latency_requests,
                                         warmup=config.frontier.warmup_requests)
            throughput = interleaved_throughput(
                client, names, latency_images, config.frontier.throughput_batch_size,
                config.frontier.throughput_requests)
    finally:
        sandbox.stop()

    # 4. The rows, their Pareto flags, the files.
    conditions = measurement_conditions(config)
    rows, reliability = [], {}
    for candidate in served:
        _, params, flops, logits = prepared[candidate.name]
        diagnostics = mimic_diagnostics(teacher_logits, logits, labels)
        p50, _, p99 = percentiles_ms(durations[candidate.name])
        rows.append(FrontierRow(
            model=candidate.name, cell=candidate.cell.name, family=candidate.cell.family,
            depth=candidate.cell.depth, budget=candidate.cell.budget, loss=candidate.cell.loss,
            trial_id=candidate.trial.trial_id, rank=candidate.rank, params=params, flops=flops,
            val_accuracy=float(candidate.trial.score),
            test_accuracy=float(np.mean(logits.argmax(-1) == labels)),
            agreement=diagnostics["agreement"],
            kl_teacher_student=diagnostics["kl_teacher_student"],
            logit_mse=diagnostics["logit_mse"], ece=diagnostics["ece"],
            p50_ms=p50, p99_ms=p99, throughput=throughput[candidate.name], pareto=False,
            conditions=conditions))
    flags = pareto_flags([(row.test_accuracy, row.p99_ms) for row in rows])
    rows = [dataclasses.replace(row, pareto=flag) for row, flag in zip(rows, flags, strict=True)]

    teacher_probabilities = softmax(teacher_logits)
    teacher = {"accuracy": float(np.mean(teacher_logits.argmax(-1) == labels)),
               "ece": expected_calibration_error(teacher_probabilities, labels)}
    reliability["teacher"] = reliability_bins(teacher_probabilities, labels)
    eces = {"teacher": teacher["ece"]}
    for family_best in best_per_family(rows):
        label = (f"{architecture_label(family_best.family, family_best.depth)}, "
                 f"{budget_label(family_best.budget)}")
        logits = prepared[family_best.model][3]
        reliability[label] = reliability_bins(softmax(logits), labels)
        eces[label] = family_best.ece
    seconds = time.perf_counter() - started
    write_frontier_csv(rows, layout.frontier_csv)
    atomic_write_text(layout.frontier_md, frontier_markdown(
        rows, teacher_accuracy=teacher["accuracy"], seconds=seconds, command=command))
    draw_frontier(rows, layout.frontier_png, teacher_accuracy=teacher["accuracy"],
                  title=f"{layout.root.name}: test accuracy against served p99 latency, "
                        f"{len(rows)} students\n{conditions['server']} server, "
                        f"{conditions['cpu']}, batching off")
    draw_reliability(reliability, eces, layout.reliability_png)
    atomic_write_text(layout.frontier_measurement, json.dumps({
        "inputs": inputs, "settings": settings, "conditions": conditions, "teacher": teacher,
        "failed": failed, "seconds": round(seconds, 1),
        "reliability": reliability}, indent=2) + "\n")
    front = sum(row.pareto for row in rows)
    log(f"frontier: {front} of {len(rows)} students on the front, measured in {seconds:.0f} s: "
        f"{layout.frontier_md}")
    return rows


def best_per_family(rows: Sequence[FrontierRow]) -> list[FrontierRow]:
    """The mimic student of each family with the best validation accuracy."""
    best: dict[str, FrontierRow] = {}
    for row in rows:
        if row.loss != HARD_LOSS and (row.family not in best
                                      or row.val_accuracy > best[row.family].val_accuracy):
            best[row.family] = row
    return [best[family] for family in sorted(best, key=lambda f: f != "mlp")]
