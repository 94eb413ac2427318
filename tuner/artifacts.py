"""An experiment's files, read and written: typed records over the paths `ExperimentLayout` names.

Every stage of `tuner` opens an experiment's files through these functions and no other code
does; none of them imports TensorFlow, Keras or KerasTuner, so the report and the findings
run without them.

    layout = ExperimentLayout(Path("runs/default"))
    for cell, search in read_searches(layout):       # searches/<cell>/cell.json
        trials = read_trials(search)                  # KerasTuner's trial_<id>/trial.json
        evaluation = read_evaluation(search)          # evaluation.json
    teacher = read_teacher_summary(layout.teacher_summary)

Writes go through `atomic_write_text` (a temporary file, then a rename).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Any, TypedDict

import yaml

from mimic_tf.data.spec import DatasetSpec
from mimic_tf.files import atomic_write_text
from mimic_tf.layout import ExperimentLayout, SearchLayout
from tuner.search.cells import Cell

FAMILY_ORDER = {"mlp": 0, "cnn": 1}  # searches are listed MLPs first, as Table 2 has them


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def _write_json(path: Path, value: Any) -> None:
    atomic_write_text(path, json.dumps(value, indent=2) + "\n")


# --- searches/<cell>/cell.json and search.json ----------------------------------------------


def write_cell(search: SearchLayout, cell: Cell) -> None:
    """Record which cell a search folder holds (read back by `read_cell`)."""
    _write_json(search.cell_file, cell.to_dict())


def read_cell(search: SearchLayout) -> Cell | None:
    """The cell a search folder holds, or None when the folder is not one of ours."""
    if not search.cell_file.is_file():
        return None
    return Cell.from_dict(_read_json(search.cell_file))


def read_searches(layout: ExperimentLayout) -> list[tuple[Cell, SearchLayout]]:
    """The searches under `searches/`, mimic before baselines, then family, depth, budget."""
    found = []
    for search in layout.search_folders():
        cell = read_cell(search)
        if cell is not None:
            found.append((cell, search))
    return sorted(found, key=lambda item: search_order(item[0]))


def search_order(cell: Cell) -> tuple:
    """How reports list searches: mimic before baselines, then family, depth, budget."""
    return (cell.is_baseline, FAMILY_ORDER[cell.family], cell.depth, cell.budget)


def write_settings(search: SearchLayout, settings: dict[str, Any]) -> None:
    """Record what a search's trials depend on (`tuner.search.search_settings`)."""
    _write_json(search.settings_file, settings)


def read_settings(search: SearchLayout) -> dict[str, Any] | None:
    """A search's recorded settings, or None before its first run."""
    return _read_json(search.settings_file) if search.settings_file.is_file() else None


# --- searches/<cell>/evaluation.json ----------------------------------------------------------


class TrialEvaluation(TypedDict):
    """The test metrics of one of a search's top-k trials."""

    val_accuracy: float
    test_accuracy: float
    test_loss: float
    test_agreement: float
    params: int
    widths: dict[str, int]
    diverged: bool


class Evaluation(TypedDict, total=False):
    """`evaluation.json`: the top-k test metrics, the best student, its export and push."""

    cell: dict[str, Any]
    trials: dict[str, TrialEvaluation]  # by trial id
    best_student: dict[str, Any]  # trial_id and path, or trial_id and error
    exported: dict[str, Any]  # trial_id and path (the SavedModel folder), or error
    pushed: dict[str, Any]  # attempt, status, version, reasons, records


def read_evaluation(search: SearchLayout) -> Evaluation:
    """A search's evaluation record; one with no trials before the first evaluation."""
    if not search.evaluation_file.is_file():
        return {"trials": {}}
    return _read_json(search.evaluation_file)


def write_evaluation(search: SearchLayout, evaluation: Evaluation) -> None:
    _write_json(search.evaluation_file, evaluation)


# --- searches/<cell>/trial_<id>/history.json ----------------------------------------------


@dataclasses.dataclass(frozen=True)
class TrialHistory:
    """A finished trial's epochs: each metric's value per epoch run, from the first, and the
    epochs its training was allowed (the schedule may have stopped it before)."""

    epoch_cap: int
    metrics: dict[str, list[float | None]]  # val_accuracy, loss, epoch_seconds, ... per epoch
    train_seconds: float | None = None  # all epochs' wall time (None: some were not timed)

    @property
    def epochs_run(self) -> int:
        return max((len(values) for values in self.metrics.values()), default=0)


def write_trial_history(search: SearchLayout, trial_id: str, history: TrialHistory) -> None:
    _write_json(search.trial_history(trial_id), dataclasses.asdict(history))


def read_trial_history(search: SearchLayout, trial_id: str) -> TrialHistory | None:
    """The trial's history, or None for a trial still running or recorded before there was one."""
    path = search.trial_history(trial_id)
    if not path.is_file():
        return None
    record = _read_json(path)
    return TrialHistory(
        epoch_cap=int(record["epoch_cap"]),
        metrics={name: [None if value is None else float(value) for value in values]
                 for name, values in record["metrics"].items()},
        train_seconds=record.get("train_seconds"),
    )


# --- KerasTuner's files, read as the plain JSON they are --------------------------------------


@dataclasses.dataclass(frozen=True)
class TrialRecord:
    """One trial as KerasTuner recorded it (`trial.json`, or `Trial.get_state()`)."""

    trial_id: str
    status: str  # COMPLETED, FAILED, RUNNING, ...
    score: float | None  # the objective, validation accuracy
    hyperparameters: dict[str, Any]  # the values drawn for the trial
    last_val_loss: float | None  # the last epoch's validation loss

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TrialRecord:
        metrics = (state.get("metrics") or {}).get("metrics") or {}
        observations = (metrics.get("val_loss") or {}).get("observations") or []
        last = max(observations, key=lambda o: o["step"])["value"] if observations else None
        return cls(
            trial_id=str(state["trial_id"]),
            status=state["status"],
            score=state.get("score"),
            hyperparameters=dict((state.get("hyperparameters") or {}).get("values") or {}),
            last_val_loss=None if not last else sum(last) / len(last),
        )

    @property
    def completed(self) -> bool:
        """A trial that ended with a score: one of the ranked trials."""
        return self.status == "COMPLETED" and self.score is not None

    @property
    def diverged(self) -> bool:
        """True when the loss turned non-finite (`DivergenceGuard` scored it at chance)."""
        return self.last_val_loss is not None and not math.isfinite(self.last_val_loss)

    def rank_key(self) -> tuple:
        """Sort key: best validation accuracy first, then trials that did not diverge, then id."""
        return (-self.score, self.diverged, self.trial_id)


def read_trials(search: SearchLayout) -> list[TrialRecord]:
    """Every trial KerasTuner recorded in a search folder."""
    return [TrialRecord.from_state(_read_json(path)) for path in search.trial_files()]


def ranked(trials: list[TrialRecord]) -> list[TrialRecord]:
    """The completed trials, best first (`TrialRecord.rank_key`): rank 1 is the best."""
    return sorted((t for t in trials if t.completed), key=TrialRecord.rank_key)


def _oracle_state(search: SearchLayout) -> dict[str, Any]:
    """KerasTuner's oracle state of a search folder; empty where there is none yet."""
    try:
        return _read_json(search.oracle_file)
    except (OSError, ValueError):
        return {}


def ended_trials(search: SearchLayout) -> int:
    """How many trials a search's oracle has ended (0: none, or no oracle yet)."""
    return len(_oracle_state(search).get("end_order", []))


def search_complete(search: SearchLayout, max_trials: int) -> bool:
    """True when a search's oracle has ended `max_trials` trials and none is pending."""
    state = _oracle_state(search)
    return (
        bool(state)
        and not state.get("ongoing_trials")
        and not state.get("retry_queue")
        and len(state.get("end_order", [])) >= max_trials
    )


def trials_ended(search: SearchLayout) -> int:
    """How many trials a search's oracle has ended (completed, failed or invalid); 0 before
    its oracle first saved."""
    try:
        return len(_read_json(search.oracle_file).get("end_order", []))
    except (OSError, ValueError):
        return 0


# --- teacher/teacher.json, transfer/manifest.json, config.yaml, commands.txt ---------------


@dataclasses.dataclass(frozen=True)
class TeacherSummary:
    """What the report and the findings show of the teacher (`teacher.json`)."""

    source: str | None  # where the images came from
    members: int | None  # CNNs in the ensemble
    params: int
    test_accuracy: float | None
    validation_accuracy: float | None
    # How TensorFlow trained the members (CPU, oneDNN, XLA): the first member's record.
    runtime: dict[str, Any] = dataclasses.field(default_factory=dict)
    family: str | None = None  # paper | airbench | keras (the user's own model)
    path: str | None = None  # family keras: where the user's model is
    # Each member's training time (s, summed over resumes); None where its record has none.
    member_train_seconds: tuple[float | None, ...] = ()
    weights_sha256: str | None = None  # the ensemble's weights, to the bit (older: none)
    # A published teacher's: its folder, the commits and CPUs that made it (None: trained here)
    loaded_from: dict[str, Any] | None = None


def read_teacher_summary(path: Path) -> TeacherSummary | None:
    """The teacher's record at `path`, None when there is none."""
    if not path.is_file():
        return None
    record = _read_json(path)
    ensemble = record.get("ensemble") or {}
    return TeacherSummary(
        source=record.get("source"),
        members=ensemble.get("members"),
        params=ensemble.get("params", 0),
        test_accuracy=ensemble.get("test_accuracy"),
        validation_accuracy=ensemble.get("validation_accuracy"),
        runtime=next((m["runtime"] for m in record.get("members", []) if "runtime" in m),
                     record.get("runtime", {})),
        family=record.get("family"),
        path=next((m["path"] for m in record.get("members", []) if "path" in m), None),
        member_train_seconds=tuple(m.get("train_seconds") for m in record.get("members", [])),
        weights_sha256=ensemble.get("weights_sha256"),
        loaded_from=record.get("loaded_from"),
    )


def read_data_source(layout: ExperimentLayout) -> str:
    """Where this run's images came from: `dataset.json`, else the teacher's record (runs
    before that file had it), else the saved config's data.source. A published teacher's
    record names the images it was made from, on the machine that made it: not this run's."""
    if layout.dataset_file.is_file():
        source = _read_json(layout.dataset_file).get("source")
        if source:
            return str(source)
    teacher = read_teacher_summary(layout.teacher_summary)
    if teacher is not None and teacher.source:
        return str(teacher.source)
    if layout.config_file.is_file():
        config = yaml.safe_load(layout.config_file.read_text()) or {}
        return str(config.get("data", {}).get("source", "unknown"))
    return "unknown"


def read_transfer_manifest(layout: ExperimentLayout) -> dict[str, Any]:
    """The transfer set's manifest (fingerprints, digest); empty before it is built."""
    path = layout.transfer_manifest
    return _read_json(path) if path.is_file() else {}


def config_sha256(layout: ExperimentLayout) -> str:
    """SHA-256 of the saved `config.yaml` (of nothing when there is none), for lineage."""
    path = layout.config_file
    return hashlib.sha256(path.read_bytes() if path.is_file() else b"").hexdigest()


def read_commands(layout: ExperimentLayout) -> list[str]:
    """The command lines that made the experiment's searches, oldest first."""
    path = layout.commands_file
    return [line for line in path.read_text().splitlines() if line] if path.is_file() else []


def record_command(layout: ExperimentLayout, command: str) -> None:
    """Add a command line to `commands.txt` (once), for the report's provenance."""
    known = read_commands(layout)
    if command not in known:
        atomic_write_text(layout.commands_file, "\n".join([*known, command]) + "\n")


def read_runtimes(layout: ExperimentLayout) -> list[dict[str, Any]]:
    """The runtime setups (CPU, oneDNN, XLA per family) that ran the searches, oldest first."""
    return _read_json(layout.runtime_file) if layout.runtime_file.is_file() else []


def record_runtime(layout: ExperimentLayout, facts: dict[str, Any]) -> None:
    """Add a runtime setup to `runtime.json` (once), for the report's provenance."""
    known = read_runtimes(layout)
    if facts not in known:
        _write_json(layout.runtime_file, [*known, facts])


def write_dataset(layout: ExperimentLayout, spec: DatasetSpec, source: str) -> None:
    """Record what the run's images and classes look like (`dataset.json`)."""
    _write_json(layout.dataset_file, {**spec.to_dict(), "source": source})


class MissingDatasetError(FileNotFoundError):
    """A run folder without `dataset.json`: what its images and classes are is not known."""


def read_dataset(layout: ExperimentLayout) -> DatasetSpec:
    """The run's images and classes, as `tuner.run` recorded them (`dataset.json`)."""
    if not layout.dataset_file.is_file():
        raise MissingDatasetError(
            f"{layout.dataset_file} is missing, so the run's image shape and class names are "
            f"not known; run `python -m tuner.run --config {layout.root.name}` again (it "
            "writes the file before any search), or pass the class names yourself")
    return DatasetSpec.from_dict(_read_json(layout.dataset_file))
