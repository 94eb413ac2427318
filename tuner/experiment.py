"""`run_experiment`: the paper's experiment end to end, the one call behind `tuner.run`.

    teacher (trained and cached if missing)  ->  transfer logits (computed once, shared)
      ->  one search per (family, depth, budget), its top k tested as it ends
      ->  hard-label baselines (optional), tested likewise  ->  export of each best student
      ->  push through the release gate (release.push)
      ->  the frontier: every trial served and timed (frontier.measure)  ->  report

Every stage reads what the previous one wrote under `<out>/<experiment>/`, so rerunning the
same call continues where it stopped; `overwrite=True` deletes the searches of the cells it
runs (with their logs and exported models) and starts them afresh. The teacher and transfer
set are caches checked by fingerprint and are kept. Searches finished in an earlier run
folder of the experiment can be kept as records and not run again (`keep`, `tuner.search.kept`).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import keras_tuner
import tensorflow as tf

from mimic_tf import runtime
from mimic_tf.clock import StageClock
from mimic_tf.config import ExperimentConfig, save_config
from mimic_tf.data import load_splits
from mimic_tf.files import atomic_write_text
from mimic_tf.layout import ExperimentLayout
from mimic_tf.teachers import ensure_teacher, saved_evaluation_logits
from mimic_tf.teachers.published import read_published_teacher, resolve_folder
from mimic_tf.transfer import build_transfer_set, published_transfer_set, transfer_teacher
from mimic_tf.vocabulary import HARD_LOSS, LANE_BASELINES, LANE_SEARCHES, PICK_FRONTIER
from tuner import artifacts
from tuner.frontier.measure import measure_frontier
from tuner.publish import (
    NoStudentWithinBudget,
    export_best_students,
    push_best_students,
    push_frontier_pick,
)
from tuner.report.build import Report, write_report
from tuner.search import distributed, kept, lanes
from tuner.search.cell_search import (
    SearchContext,
    baseline_cell,
    build_tuner,
    evaluate_top_trials,
    run_search,
)
from tuner.search.cells import HARD_SUFFIX, Cell, planned_cells
from tuner.search.hypermodel import TrainingData
from tuner.search.progress import Progress, format_duration


class UnknownSearchError(ValueError):
    """`only` names no search of the run's plan."""


@dataclasses.dataclass
class ExperimentSummary:
    """What a run did: its folder, its searches, wall time (and each stage's, in the order they
    ran: data, teacher, searches, export, frontier, report) and the report (None on workers)."""

    root: Path
    cells: list[str]
    seconds: float
    report: Report | None
    stage_seconds: dict[str, float] = dataclasses.field(default_factory=dict)


def distribution_strategy() -> tf.distribute.Strategy | None:
    """MirroredStrategy over all GPUs when more than one is visible, else None."""
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return None


def remove_searches(layout: ExperimentLayout, cells: Sequence[Cell]) -> None:
    """Delete the searches of `cells` and of their baselines: folders, logs, exported models."""
    for cell in cells:
        baseline = dataclasses.replace(cell, loss=HARD_LOSS, fixed_widths=None)
        for name in {cell.name, baseline.name}:
            for folder in (layout.search(name).root, layout.search_logs(name), layout.model(name)):
                shutil.rmtree(folder, ignore_errors=True)


def run_experiment(
    config: ExperimentConfig,
    families: Sequence[str] = ("mlp",),
    out: str | Path = "runs",
    *,
    overwrite: bool = False,
    verbose: int = 1,
    progress_class: type[Progress] = Progress,
    command: str | None = None,
    keep: str | Path | None = None,
    only: str | None = None,
    stop_after_trials: int | None = None,
    lane: str | None = None,
    lanes: int = 1,
) -> ExperimentSummary:
    """Run (or continue) the searches of `families` under `config`; returns a summary.

    `progress_class` reports trials (a `Progress` subclass can also measure them);
    `command`, the command line that asked for the run, is listed in `results.md`; `keep`, a
    published results folder of the experiment, names finished searches to keep as records
    instead of running them again (`tuner.search.kept`; KeptSearchError when it cannot be kept);
    `only`, one search of the plan by name (`cnn-d1-b1M`, `cnn-d1-b1M-hard`): that search
    alone runs (a campaign's unit of work), the others stay as they are;
    `stop_after_trials`, end each search's run once that many of its trials have ended (a
    part of it: its trials tested, nothing exported or measured until a later run ends it);
    `lane`, run as one lane of searches side by side (`tuner.search.lanes`: its phase, the
    searches or the baselines): take pending searches until none is left, nothing more;
    `lanes`, how many lanes share them (a lane's ETA counts its share of the trials).

    In a distributed search (KerasTuner's environment variables set) workers run trials
    only; the chief prepares the teacher and transfer set, serves the oracles, evaluates,
    exports, pushes and writes the report.
    """
    distributed.check_environment()
    started = time.perf_counter()
    clock = StageClock()
    layout = ExperimentLayout.for_config(config, out)
    cells = planned_cells(config, families)
    if only is not None and only not in kept.planned_names(config, cells):
        raise UnknownSearchError(f"--only {only}: not a search this run plans; its searches: "
                         f"{', '.join(kept.planned_names(config, cells))}")
    worker = distributed.is_worker()
    leads = not worker and lane is None  # writes the run's records, exports and reports
    baseline_cells = [c for c in cells if config.search.has_baseline(c.family, c.budget)]
    search_count = len(cells) + len(baseline_cells)
    if overwrite and leads:
        remove_searches(layout, cells)
    kept_searches = _kept_searches(layout, config, cells, keep, verbose=verbose and leads)

    # 1. Teacher and transfer set, prepared by the chief (or the only process). A published
    # teacher is checked against the data before anything is written (PublishedTeacherError).
    splits = load_splits(config.data)
    clock.lap("data")
    published = (read_published_teacher(resolve_folder(config.teacher.published), config, splits)
                 if config.teacher.published else None)
    # Searches side by side (search.parallel): the lanes train, this process only reads.
    lane_count = (_lane_count(config, layout, [c.name for c in cells], kept_searches)
                  if leads and only is None and not distributed.is_distributed() else 1)
    side_by_side = lane_count > 1
    if worker:  # one entry a search, mimic cells then baselines, as the chief's ports run
        complete = [_ended(layout, config, kept_searches, name)
                    for name in kept.planned_names(config, cells)]
        if all(complete):  # nothing to train: the chief may still be building the transfer set
            return ExperimentSummary(layout.root, [], time.perf_counter() - started, None)
        distributed.wait_for_chief(distributed.oracle_port(), complete)
    elif leads:
        layout.root.mkdir(parents=True, exist_ok=True)
        save_config(config, layout.config_file)
        if command:
            artifacts.record_command(layout, command)
        artifacts.write_dataset(layout, splits.spec, splits.source)
        facts = runtime.describe(jit_compile={
            family: runtime.resolve_jit_compile(config.student.jit_compile, family)
            for family in families}, precision=runtime.resolve_precision(config.student.precision))
        if side_by_side:
            facts["lanes"] = lane_count
        artifacts.record_runtime(layout, facts)
    # Keras progress bars on a terminal, one line per teacher epoch in a log file.
    teacher_verbose = 0 if not leads or not verbose else (1 if sys.stdout.isatty() else 2)
    if published is not None:  # logits read, not computed: no teacher, no transfer pass
        teacher = None
        if leads:
            summary = published.summary(splits)
            atomic_write_text(layout.teacher_summary, json.dumps(summary, indent=2) + "\n")
            if verbose:
                print(f"teacher: published, {len(published.manifests)} members from "
                      f"{published.folder}, test accuracy "
                      f"{summary['ensemble']['test_accuracy']:.4f} here (not trained)")
        # Each lane makes the views and checks them and says where they differ.
        transfer_set = published_transfer_set(config, splits, published,
                                              verbose=verbose if leads or lane else 0,
                                              directory=layout.transfer if leads else None,
                                              in_memory=not side_by_side, announce=leads)
    else:
        teacher = ensure_teacher(config, splits, layout.teacher, verbose=teacher_verbose)
        transfer_set = build_transfer_set(
            config, splits, teacher, layout.transfer, verbose=verbose if leads else 0,
            evaluation_logits=saved_evaluation_logits(layout.teacher, teacher))
    online = config.transfer.mode == "online"
    context = SearchContext(
        config=config,
        layout=layout,
        data=TrainingData.from_transfer_set(transfer_set, config.student.batch_size),
        transfer_fingerprint=transfer_set.fingerprint,
        teacher=transfer_teacher(teacher, config) if online else None,
        progress=progress_class(_planned_trials(config, _to_search(cells, baseline_cells, only,
                                                                   kept_searches), lanes),
                                max(config.student.epochs_for(f) for f in families),
                                verbose=verbose),
        strategy=distribution_strategy(),
        stop_after_trials=stop_after_trials,
    )
    if not online:
        del teacher
        keras.backend.clear_session()
    clock.lap("teacher (published)" if published is not None else "teacher and transfer set")

    # 2. The searches, then the hard-label baselines of their best architectures; each
    # search's top k tested as soon as it ends, so a stop loses no finished search's result.
    # A kept search is not run: its index (and its oracle's port) stays unused.
    if lane is not None:
        _run_lane(lane, cells, baseline_cells, context, kept_searches)
        return ExperimentSummary(layout.root, [], time.perf_counter() - started, None)
    if side_by_side:
        _search_in_lanes(config, layout, families, out, cells, baseline_cells, kept_searches,
                         log=context.progress.print if verbose else None)
    tuners = {}
    chosen = [cell.name for cell in cells if only in (None, cell.name)]
    for index, cell in enumerate(cells):
        if cell.name not in kept_searches and cell.name in chosen:
            tuners[cell.name] = _search_and_test(cell, context, index, search_count)
    baselines = []
    for offset, cell in enumerate(baseline_cells):
        if only not in (None, cell.name + HARD_SUFFIX):
            continue
        twin = baseline_cell(cell, layout, kept_searches.get(cell.name))
        if twin is None or twin.name in kept_searches:
            continue
        baselines.append(twin)
        tuners[twin.name] = _search_and_test(twin, context, len(cells) + offset, search_count)
    searched = [name for name in chosen if name not in kept_searches]
    clock.lap("searches")
    if worker:
        return ExperimentSummary(layout.root, searched + [c.name for c in baselines],
                                 time.perf_counter() - started, None)

    # 3. Export of the best students and their push through the release gate (not of kept
    # searches: their weights went with their run folder). A part of a search waits for it.
    log = context.progress.print if context.progress is not None else print
    parts = [name for name in tuners if stop_after_trials is not None
             and not artifacts.search_complete(layout.search(name), config.search.trials)]
    if parts:
        log(f"{', '.join(parts)}: {stop_after_trials} of {config.search.trials} trials ended "
            "(a part of the search, its trials tested); the next run goes on, and export, "
            "push and the frontier wait for its end")
        report = write_report(layout.root)
        return ExperimentSummary(layout.root, list(tuners), time.perf_counter() - started,
                                 report)
    mimic_names = searched
    if config.search.export:
        export_best_students(layout, mimic_names, log=log)
    split = config.release.split
    images, labels = getattr(splits, f"{split}_images"), getattr(splits, f"{split}_labels")
    data = f"{splits.source} {split} ({len(images)} images)"
    pick_frontier = config.release.push and config.release.pick == PICK_FRONTIER
    if config.search.export and config.release.push and not pick_frontier:
        push_best_students(layout, config.release, images, labels, data, mimic_names, log=log)
    clock.lap("export")
    # 4. The frontier: every trial served and timed; a frontier release picks from it.
    if config.frontier.measure or pick_frontier:
        rows = measure_frontier(layout, config, splits.test_images, splits.test_labels,
                                spec=splits.spec, command=command or "", log=log)
        if pick_frontier:
            try:
                push_frontier_pick(layout, config.release, rows, images, labels, data, log=log)
            except NoStudentWithinBudget as error:
                log(f"release: {error}")
        clock.lap("frontier")
    report = write_report(layout.root)
    clock.lap("report")
    seconds = time.perf_counter() - started
    if verbose:
        stages = ", ".join(f"{stage} {format_duration(spent)}"
                           for stage, spent in clock.seconds.items())
        print(f"done in {format_duration(seconds)} ({stages}): {report.results_md}")
    return ExperimentSummary(layout.root, searched + [c.name for c in baselines], seconds, report,
                             stage_seconds=clock.seconds)


def _to_search(cells: Sequence[Cell], baseline_cells: Sequence[Cell], only: str | None,
               kept_searches: kept.Rows) -> list[Cell]:
    """The searches this run may train (`only`'s, or all), kept ones left out: the ETA's plan.
    A baseline is named by its mimic cell's name and the hard-label suffix."""
    named = [*((cell, cell.name) for cell in cells),
             *((cell, cell.name + HARD_SUFFIX) for cell in baseline_cells)]
    return [cell for cell, name in named
            if only in (None, name) and name not in kept_searches]


def _planned_trials(config: ExperimentConfig, cells: Sequence[Cell], lanes: int
                    ) -> dict[str, int]:
    """Trials the run (or one of its `lanes` lanes, its share) plans, by family: the ETA."""
    families = Counter(cell.family for cell in cells)
    return {family: -(-count * config.search.trials // lanes)
            for family, count in families.items()}


def _ended(layout: ExperimentLayout, config: ExperimentConfig, kept_searches: kept.Rows,
           name: str) -> bool:
    """Whether search `name` needs no more trials: kept as a record, or complete here."""
    return name in kept_searches or artifacts.search_complete(layout.search(name),
                                                                config.search.trials)


def _lane_count(config: ExperimentConfig, layout: ExperimentLayout, names: Sequence[str],
                kept_searches: kept.Rows) -> int:
    """How many lanes the pending searches of `names` get (1: none, the run's own loop)."""
    if config.search.parallel == 1:
        return 1
    pending = sum(not _ended(layout, config, kept_searches, name) for name in names)
    gpus = len(tf.config.list_logical_devices("GPU"))
    return lanes.lane_count(config.search.parallel, pending, gpus)


def _search_in_lanes(
    config: ExperimentConfig, layout: ExperimentLayout, families: Sequence[str],
    out: str | Path, cells: Sequence[Cell], baseline_cells: Sequence[Cell],
    kept_searches: kept.Rows, log: Callable[[str], None] | None,
) -> None:
    """The pending searches in lanes side by side, then the baselines likewise (where two or
    more are pending). The run's own loop then finds each search ended and reads what the
    lanes measured."""
    phases = ((LANE_SEARCHES, [cell.name for cell in cells]),
              (LANE_BASELINES, [cell.name + HARD_SUFFIX for cell in baseline_cells]))
    for phase, names in phases:
        count = _lane_count(config, layout, names, kept_searches)
        if count > 1:
            lanes.run_lanes(layout, families, out, phase, count, log=log)


def _run_lane(phase: str, cells: Sequence[Cell], baseline_cells: Sequence[Cell],
              context: SearchContext, kept_searches: kept.Rows) -> None:
    """One lane: claim the pending searches of `phase`, costliest first, and run each."""
    search_count = len(cells) + len(baseline_cells)
    if phase == LANE_SEARCHES:
        work = [(cell, cells.index(cell)) for cell in lanes.costliest_first(cells)]
    else:
        twins = [(baseline_cell(cell, context.layout, kept_searches.get(cell.name)),
                  len(cells) + baseline_cells.index(cell))
                 for cell in lanes.costliest_first(baseline_cells)]
        work = [(twin, index) for twin, index in twins if twin is not None]
    for cell, index in work:
        if (_ended(context.layout, context.config, kept_searches, cell.name)
                or not lanes.claim(context.layout, cell.name)):
            continue
        _search_and_test(cell, context, index, search_count)


def _kept_searches(layout: ExperimentLayout, config: ExperimentConfig, cells: Sequence[Cell],
                   keep: str | Path | None, verbose: bool) -> kept.Rows:
    """The searches this run keeps as records: those the folder `keep` adds (written to the
    run folder by the chief or the only process; a worker selects the same ones) and those
    kept before, but for any this run folder has finished itself (its own wins)."""
    selected = kept.select(Path(keep), layout, config, cells) if keep is not None else {}
    if selected and not distributed.is_worker():
        kept.write(layout, selected)
    searches = {name: rows for name, rows in {**kept.kept_rows(layout), **selected}.items()
                if not artifacts.search_complete(layout.search(name), config.search.trials)}
    names = [name for name in kept.planned_names(config, cells) if name in searches]
    if names and verbose:
        print(f"kept {len(names)} finished search{'' if len(names) == 1 else 'es'} of an "
              f"earlier run folder as records ({layout.kept_results}), not run again: "
              f"{', '.join(names)}")
    return searches


def _search_and_test(
    cell: Cell, context: SearchContext, index: int, count: int
) -> keras_tuner.Tuner | None:
    """One search, then (on the chief or the only process) the test evaluation of its top k
    trials, its best student kept for export; `evaluate_top_trials` reuses what it measured."""
    tuner = _search(cell, context, index, count)
    if tuner is not None and not distributed.is_worker():
        trials = context.config.search.trials
        if context.stop_after_trials is not None and not artifacts.search_complete(
                context.layout.search(cell.name), trials):
            # A part: every ended trial tested now, while its checkpoint is on this machine.
            evaluate_top_trials(cell, tuner, context, count=trials)
            return tuner
        keep_best = context.config.search.export and not cell.is_baseline
        evaluate_top_trials(cell, tuner, context, keep_best=keep_best)
    return tuner


def _search(
    cell: Cell, context: SearchContext, index: int, count: int
) -> keras_tuner.Tuner | None:
    """One search, through its own oracle port in a distributed run."""
    search = context.layout.search(cell.name)
    trials = context.config.search.trials
    if distributed.is_worker() and not distributed.worker_should_join(
        index, count, search, trials
    ):
        return None  # complete, or the chief has moved past it
    with distributed.search_port(index):
        if distributed.is_chief() and artifacts.search_complete(search, trials):
            return build_tuner(cell, context)  # nothing to serve: no worker would ask
        return run_search(cell, context, index + 1, count)
