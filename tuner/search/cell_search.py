"""One search per cell: the tuner, resume, the top-k test evaluation, the baseline.

    context = SearchContext(config, layout, data, progress=Progress(...))
    tuner = run_search(Cell("mlp", 2, 1e6), context)           # resumes a stopped search
    evaluate_top_trials(cell, tuner, context, keep_best=True)  # test accuracy of the top k,
                                                               # best student kept for export

A search's folder `searches/<cell>/` holds KerasTuner's project (oracle, trials, best-epoch
checkpoints) and four files of ours, each written atomically:

    cell.json         which cell the folder holds (family, depth, budget, loss, fixed widths)
    search.json       what its trials depend on (student settings, tuner, transfer set, seed);
                      a rerun with other settings is refused instead of mixing trials
    evaluation.json   test metrics of the top-k trials, realised widths, the best student
                      (and, once `tuner.publish` ran, its export and push)
    best_student.keras  the student of the best trial that did not diverge

Rerunning continues a search: finished trials are kept, a trial killed mid-way is rerun.
A search can also run in parts (`SearchContext.stop_after_trials`, `tuner.run
--stop-after-trials`): a part ends once that many of its trials have ended and tests every one
of them, so a later part on another machine, from the part's KerasTuner and JSON files alone
(no checkpoints: `tuner.campaign` commits them), ranks and reports them all.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import keras
import keras_tuner
import tensorflow as tf

from mimic_tf.config import ExperimentConfig
from mimic_tf.files import atomic_save_model
from mimic_tf.layout import ExperimentLayout, SearchLayout
from mimic_tf.runtime import steps_per_execution
from mimic_tf.vocabulary import HARD_LOSS
from tuner import artifacts
from tuner.artifacts import Evaluation, TrialRecord
from tuner.search import distributed, kept
from tuner.search.cells import Cell
from tuner.search.hypermodel import StudentHyperModel, TrainingData
from tuner.search.progress import Progress
from tuner.search.settings import check_settings, search_seed, search_settings
from tuner.search.tuners import make_tuner

DIVERGED_ERROR = "every evaluated trial diverged (non-finite loss)"
LOST_ERROR = ("the best trial's weights stayed on the machine that trained it (a search in "
              "parts, continued elsewhere); its test metrics are kept")


@dataclasses.dataclass
class SearchContext:
    """What every search of a run shares: config, folders, datasets, terminal progress."""

    config: ExperimentConfig
    layout: ExperimentLayout
    data: TrainingData
    transfer_fingerprint: str
    teacher: keras.Model | None = None  # online transfer sets only
    progress: Progress | None = None
    strategy: tf.distribute.Strategy | None = None
    stop_after_trials: int | None = None  # end each search's run there: a part of it


def build_tuner(cell: Cell, context: SearchContext) -> keras_tuner.Tuner:
    """The cell's tuner, reloading its project when one exists (a stale baseline restarts)."""
    config, layout = context.config, context.layout
    search = layout.search(cell.name)
    settings = search_settings(config, context.transfer_fingerprint, cell.family)
    previous_cell = artifacts.read_cell(search)
    restart = previous_cell is not None and previous_cell.to_dict() != cell.to_dict()
    if restart and not distributed.is_worker():
        # A baseline pinned to an architecture that is no longer its cell's best.
        print(f"{cell.name}: the best architecture changed; restarting this baseline search")
        shutil.rmtree(layout.search_logs(cell.name), ignore_errors=True)
    else:
        check_settings(search, settings, cell.family)
    hypermodel = StudentHyperModel(
        cell,
        config.student,
        teacher=context.teacher,
        seed=config.seed,
        log_dir=layout.search_logs(cell.name),
        search_dir=search.root,
        progress=context.progress.trial_callback if context.progress else None,
        spec=context.data.spec,
        steps_per_execution=steps_per_execution(context.data.steps_per_epoch),
    )
    tuner = make_tuner(
        config.search.tuner,
        hypermodel,
        directory=search.root.parent,
        project_name=search.name,
        max_trials=config.search.trials,
        max_epochs=config.student.epochs_for(cell.family),
        seed=search_seed(config.seed, cell),
        overwrite=restart and not distributed.is_worker(),
        distribution_strategy=context.strategy,
    )
    if (not distributed.is_worker() and not restart and not tuner.oracle.trials
            and search.oracle_file.is_file()):
        # KerasTuner reloads a project only where it finds its tuner's own file
        # (`<tuner id>.json`), which a search's committed part does not hold, and which a
        # chief names `chief.json` and a lone tuner `tuner0.json`: without this the oracle
        # would start afresh over the earlier parts' trials.
        tuner.oracle.reload()
    if context.stop_after_trials is not None:
        # A part of the search: the oracle stops handing out trials there (its first random
        # points were counted from the whole search's trials above); a later run goes on.
        tuner.oracle.max_trials = min(config.search.trials, context.stop_after_trials)
    if not distributed.is_worker():
        artifacts.write_cell(search, cell)
        artifacts.write_settings(search, settings)
    return tuner


def finished_trials(tuner: keras_tuner.Tuner) -> list[keras_tuner.engine.trial.Trial]:
    """The trials that ended (completed or failed), as the oracle recorded them."""
    oracle = tuner.oracle
    return [oracle.trials[trial_id] for trial_id in getattr(oracle, "end_order", [])
            if trial_id in oracle.trials]


def run_search(
    cell: Cell, context: SearchContext, index: int = 1, count: int = 1
) -> keras_tuner.Tuner:
    """Run (or continue) the cell's search until it has `config.search.trials` trials."""
    tuner = build_tuner(cell, context)
    finished = 0 if distributed.is_worker() else len(finished_trials(tuner))
    if context.progress is not None:
        context.progress.begin_search(cell, index, count, context.config.search.trials,
                                      finished, best_score(tuner) if finished else None)
        if distributed.is_chief():
            context.progress.print(f"[{cell.name} {index}/{count}] serving the oracle on "
                                   f"port {distributed.oracle_port()}")
    with warnings.catch_warnings():
        # The GP's kernel fit warns on every few-trial search; it is expected, not a fault.
        warnings.filterwarnings("ignore", message=".*close to the specified (lower|upper) bound")
        tuner.search(context.data, verbose=0)
    if context.progress is not None and not distributed.is_worker():
        context.progress.end_search(best_score(tuner))
    return tuner


def best_score(tuner: keras_tuner.Tuner) -> float | None:
    """The best validation accuracy of a search so far."""
    best = ranked_trials(tuner)
    return best[0].score if best else None


def record(trial: keras_tuner.engine.trial.Trial) -> TrialRecord:
    """A live trial as the record `tuner.artifacts` reads from its `trial.json`."""
    return TrialRecord.from_state(trial.get_state())


def ranked_trials(tuner: keras_tuner.Tuner) -> list[keras_tuner.engine.trial.Trial]:
    """Completed trials, best validation accuracy first (`TrialRecord.rank_key`)."""
    records = artifacts.ranked([record(t) for t in tuner.oracle.trials.values()])
    return [tuner.oracle.trials[r.trial_id] for r in records]


def load_trial_model(tuner: keras_tuner.Tuner, trial: keras_tuner.engine.trial.Trial):
    """The Distiller of a trial with its best epoch's weights (SaveBestEpoch's checkpoint).

    Unlike `tuner.load_model` this does not clear the Keras session and collect garbage
    for every model (most of the time of a small trial); callers clear once per search.
    """
    with warnings.catch_warnings():
        # The checkpoint holds the optimizer's slots too; evaluation does not need them.
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        scope = tuner.distribution_strategy.scope() if tuner.distribution_strategy else None
        with scope or contextlib.nullcontext():
            model = tuner.hypermodel.build(trial.hyperparameters)
            search = SearchLayout(Path(tuner.project_dir))
            model.load_weights(search.checkpoint(trial.trial_id))
    return model


class MissingCheckpointError(RuntimeError):
    """A trial to test has neither its checkpoint nor its test metrics."""


def evaluate_top_trials(
    cell: Cell, tuner: keras_tuner.Tuner, context: SearchContext, keep_best: bool = False,
    count: int | None = None,
) -> Evaluation:
    """Test metrics of the `count` (default `config.search.top_k`) best trials (by
    validation accuracy).

    Each trial's best-epoch checkpoint is evaluated once; later runs reuse the numbers, also
    where the checkpoint is gone (a search in parts, continued on another machine). With
    `keep_best`, the student of the best trial that did not diverge is saved as
    `searches/<cell>/best_student.keras` (the export stage, `tuner.publish`, reads it) unless it
    is there already; `evaluation.json` names it under `best_student`, or says why there is
    none.
    """
    search = context.layout.search(cell.name)
    evaluation = artifacts.read_evaluation(search)
    evaluation["cell"] = cell.to_dict()
    top = ranked_trials(tuner)[: count or context.config.search.top_k]
    diverged = {trial.trial_id: record(trial).diverged for trial in top}
    # The student to keep: the best trial whose training did not diverge.
    best = next((t for t in top if not diverged[t.trial_id]), None) if keep_best else None
    if keep_best and best is None and top:
        evaluation["best_student"] = {"trial_id": top[0].trial_id, "error": DIVERGED_ERROR}
        _report(context, f"[{cell.name}] no student to export: every evaluated trial diverged")
    keras.backend.clear_session()
    for rank, trial in enumerate(top, start=1):
        known = evaluation["trials"].get(trial.trial_id)
        known = known if known is not None and known.get("val_accuracy") == trial.score else None
        needs_saving = trial is best and not _kept(evaluation, search, trial.trial_id)
        if not search.checkpoint(trial.trial_id).is_file():
            if known is None:
                raise MissingCheckpointError(
                    f"[{cell.name}] trial {trial.trial_id} has no checkpoint in {search.root} "
                    "and no test metrics in its evaluation.json: a part of this search ended "
                    "without testing it. Run this search again from its start (tuner.run "
                    f"--only {cell.name} --overwrite)")
            if needs_saving:
                evaluation["best_student"] = {"trial_id": trial.trial_id, "error": LOST_ERROR}
                _report(context, f"[{cell.name}] no student to export: {LOST_ERROR}")
            continue
        if known is not None and not needs_saving:
            continue
        model = load_trial_model(tuner, trial)
        metrics = model.evaluate(context.data.test, verbose=0, return_dict=True)
        evaluation["trials"][trial.trial_id] = {
            "val_accuracy": trial.score,
            "test_accuracy": float(metrics["accuracy"]),
            "test_loss": float(metrics["loss"]),
            "test_agreement": float(metrics.get("agreement", float("nan"))),
            "params": int(model.student.count_params()),
            "widths": cell.realised_widths(trial.hyperparameters.values, context.data.spec),
            "diverged": diverged[trial.trial_id],
        }
        _report(context, f"[{cell.name}] rank {rank}: trial {trial.trial_id} test accuracy "
                         f"{metrics['accuracy']:.4f} (val {trial.score:.4f})")
        if needs_saving:
            atomic_save_model(model.student, search.best_student)
            evaluation["best_student"] = {
                "trial_id": trial.trial_id,
                "path": search.best_student.name,  # relative to the search folder
                "hyperparameters": dict(trial.hyperparameters.values),
            }
        artifacts.write_evaluation(search, evaluation)
        del model
    artifacts.write_evaluation(search, evaluation)
    keras.backend.clear_session()
    return evaluation


def _kept(evaluation: Evaluation, search: SearchLayout, trial_id: str) -> bool:
    """Whether this trial's student is saved as the best one already."""
    best = evaluation.get("best_student") or {}
    return best.get("trial_id") == trial_id and (search.root / best.get("path", "-")).is_file()


def _report(context: SearchContext, line: str) -> None:
    if context.progress is not None:
        context.progress.print(line)


def baseline_cell(cell: Cell, layout: ExperimentLayout,
                  kept_rows: Sequence[Mapping[str, str]] | None = None) -> Cell | None:
    """The hard-label twin of a mimic cell: its best architecture, pinned; None before any.

    `kept_rows`: the cell's rows when its search is kept as records (`tuner.search.kept`): their
    best trial names the architecture, as the kept search stands for the cell in the report."""
    if kept_rows:
        values = kept.best_values(kept_rows)
    else:
        ranked = artifacts.ranked(artifacts.read_trials(layout.search(cell.name)))
        if not ranked:
            return None
        values = ranked[0].hyperparameters
    widths = cell.free_widths(values)
    return Cell(cell.family, cell.depth, cell.budget, loss=HARD_LOSS, fixed_widths=widths)
