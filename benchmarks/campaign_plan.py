"""Benchmark: a campaign's compute plan, from costs measured on the machine at hand.

A long run (configs/cpu-replication-v2.yaml, run as a campaign across sessions) is planned
from per-epoch costs measured on the machine that runs it; machines change between sessions,
so the plan is a command, not a table copied from an older CPU. For one config it measures,
on random uint8 images with the project's own builders:

  teacher   one airbench member at the config's widths and batch: training and inference
            img/s (the transfer set's passes: one a view, two with flip averaging)
  students  every (family, depth, budget) the config searches, at its default widths and the
            config's student batch: the Distiller's training img/s

each in the dtype policy its `precision` resolves to on this machine (`precision: auto`:
mixed bfloat16 on CPUs with bfloat16 instructions), as the campaign trains them. It turns
them into hours per stage: the members' epochs of the training split (each with a
validation pass), the transfer set (members x views x training images), and each search's
trials x its family's epoch cap x one epoch of the training split, times SPREAD for the
spread of searched widths around the default ones and VALIDATION for the validation pass.
A hard-label baseline trains its cell's best architecture alone: where `--results` (the
campaign's committed results folder) holds that cell's search, the baseline is timed at its
best trial's widths, without the spread (the 2-conv CNN at 1M chose 121/109 filters and its
baseline ran 3.5 times the plan's hours at the default widths); elsewhere it costs as the
mimic search of its cell. The epoch caps are upper bounds (the plateau schedule stops many
trials sooner), so the plan is one too.

A campaign's searches run `--workers` one-thread trials side by side (a chief and one worker
a core). With `--workers N` above 1 the students are measured that way: N processes of this
script, one TensorFlow thread each, time every student at once, and each student's rate is
the slowest process's (a round of trials waits for its last). Each search unit's hours are
then ceil(trials / N) rounds of one trial's epochs.

    python benchmarks/campaign_plan.py                            # cpu-replication-v2
    python benchmarks/campaign_plan.py --config cpu-replication --steps 20
    python benchmarks/campaign_plan.py --teacher-only --steps 10   # a member unit's hours
    python benchmarks/campaign_plan.py --workers 2 --steps 10      # each search unit's hours
    python benchmarks/campaign_plan.py --workers 2 --results results/cpu-replication-v2

Prints the table, then one JSON object last.
"""

from __future__ import annotations

import mimic_tf  # noqa: F401  (first: sets oneDNN's default before TensorFlow loads)

# isort: split

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mimic_tf import runtime
from mimic_tf.budgets import budget_label, default_widths, search_space
from mimic_tf.config import ExperimentConfig, load_config
from mimic_tf.data.spec import CIFAR10
from mimic_tf.teachers import airbench, airbench_recipe
from mimic_tf.transfer import flip_averaged
from tuner.search.cells import HARD_SUFFIX, planned_cells
from tuner.search.kept import best_values, read_rows

CIFAR10_TRAIN_IMAGES = 50_000
FAMILIES = ("mlp", "cnn")
SPREAD = 1.35  # searched widths around the default ones (the 2026-12-01 plan's factor)
VALIDATION = 1.1  # a validation pass after each trial epoch
VALIDATION_IMAGES = 10_000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="cpu-replication-v2", help="config name or path")
    parser.add_argument("--steps", type=int, default=30,
                        help="timed training steps of each model (default 30)")
    parser.add_argument("--teacher-only", action="store_true",
                        help="measure and plan the teacher's stages alone (a member unit is "
                        "sized by them before it starts)")
    parser.add_argument("--workers", type=int, default=1,
                        help="trials a search runs side by side, one thread each (the "
                        "campaign's WORKERS); above 1 the students are timed that way")
    parser.add_argument("--results", type=Path, default=None,
                        help="the campaign's results folder: its finished searches give their "
                        "baselines' architectures (default: none, baselines at the default "
                        "widths)")
    parser.add_argument("--students-only", action="store_true",
                        help=argparse.SUPPRESS)  # one of the --workers processes
    args = parser.parse_args()
    if args.workers < 1:
        parser.error(f"--workers is {args.workers}; give 1 or more trials side by side")
    return args


def _timed_fit(model, images: np.ndarray, targets, steps: int, batch_size: int) -> float:
    """Training img/s over `steps` steps, after one untimed epoch that pays the tracing."""
    import tensorflow as tf
    from epoch_timer import EpochTimer  # beside this script

    dataset = (tf.data.Dataset.from_tensor_slices((images, *targets)).batch(batch_size)
               .cache().repeat())
    timer = EpochTimer()
    model.fit(dataset, epochs=2, steps_per_epoch=steps, callbacks=[timer], verbose=0)
    return steps * batch_size / timer.seconds[-1]


def _timed_predict(model, images: np.ndarray, batch_size: int) -> float:
    model.predict(images[:batch_size], batch_size=batch_size, verbose=0)
    started = time.perf_counter()
    model.predict(images, batch_size=batch_size, verbose=0)
    return len(images) / (time.perf_counter() - started)


def measure_teacher(config: ExperimentConfig, steps: int) -> dict:
    """Training and inference img/s of the config's teacher member."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    recipe = config.teacher.airbench
    batch = recipe.batch_size
    images = rng.integers(0, 256, (batch * steps, 32, 32, 3), dtype=np.uint8)
    labels = np.eye(10, dtype=np.float32)[rng.integers(0, 10, len(images))]
    member = airbench.build_airbench_member(dataclasses.replace(recipe, lookahead_every=0),
                                            images[:1024], num_classes=10)
    airbench_recipe.compile_member(member, recipe, total_steps=2 * steps)
    costs = {"teacher_train": _timed_fit(member, images, (labels,), steps, batch)}
    print(f"  teacher member {recipe.widths}: {costs['teacher_train']:.0f} img/s training",
          file=sys.stderr, flush=True)
    costs["teacher_predict"] = _timed_predict(member, images, config.transfer.batch_size)
    print(f"  teacher member: {costs['teacher_predict']:.0f} img/s inference",
          file=sys.stderr, flush=True)
    keras.backend.clear_session()
    costs["precision"] = {"teacher": runtime.resolve_precision(recipe.precision)}
    return costs


def baseline_widths(config: ExperimentConfig, results: Path | None) -> dict[str, dict]:
    """The widths each hard-label baseline will train (`<cell>-hard`: its cell's best trial's,
    from `results`' results.csv), for the baselines whose cell has been searched."""
    rows = read_rows(results / "results.csv") if results is not None else {}
    widths = {}
    for cell in planned_cells(config, FAMILIES):
        if config.search.has_baseline(cell.family, cell.budget) and rows.get(cell.name):
            best = best_values(rows[cell.name])
            widths[cell.name + HARD_SUFFIX] = {
                name: best[name] for name in search_space(cell.family, cell.depth, cell.budget)}
    return widths


def measure_students(config: ExperimentConfig, steps: int,
                     results: Path | None = None) -> dict[str, float]:
    """Training img/s of every student the config searches, at its default widths, and of
    each baseline whose architecture `results` names (`baseline_widths`)."""
    import keras

    from mimic_tf.distiller import Distiller
    from mimic_tf.students import build_student

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(1)
    batch = config.student.batch_size
    count = batch * steps
    images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    targets = (rng.normal(size=(count, 10)).astype(np.float32), rng.integers(0, 10, count))
    students = {}
    precision = runtime.resolve_precision(config.student.precision)  # as the searches train
    cells = planned_cells(config, FAMILIES)
    pinned = baseline_widths(config, results)
    models = [(cell.name, cell, default_widths(cell.family, cell.depth, cell.budget))
              for cell in cells]
    models += [(cell.name + HARD_SUFFIX, cell, pinned[cell.name + HARD_SUFFIX])
               for cell in cells if cell.name + HARD_SUFFIX in pinned]
    for name, cell, widths in models:
        student = build_student(cell.family, cell.depth, cell.budget, seed=0,
                                dtype_policy=precision, spec=CIFAR10, **widths)
        model = Distiller(student)
        model.compile(optimizer=keras.optimizers.SGD(0.005, momentum=0.9, nesterov=True))
        students[name] = _timed_fit(model, images, targets, steps, batch)
        print(f"  {name}: {students[name]:.0f} img/s training", file=sys.stderr, flush=True)
        keras.backend.clear_session()
    return students


def measure_students_side_by_side(config_arg: str, steps: int, workers: int,
                                  results: Path | None = None) -> dict[str, float]:
    """Every student's img/s as `workers` one-thread trials side by side: that many processes
    time each student at once; the slowest process's rate counts."""
    command = [sys.executable, __file__, "--config", config_arg, "--steps", str(steps),
               "--students-only"]
    if results is not None:
        command += ["--results", str(results)]
    environment = {**os.environ, "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
    processes = [subprocess.Popen(command, env=environment, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL if number else None, text=True)
                 for number in range(workers)]
    rates = []
    for process in processes:
        output, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"a side-by-side student measurement failed (exit "
                             f"{process.returncode}); run it alone to see why: "
                             f"TF_NUM_INTRAOP_THREADS=1 {' '.join(command)}")
        rates.append(json.loads(output.strip().splitlines()[-1]))
    return {name: min(rate[name] for rate in rates) for name in rates[0]}


def plan(config: ExperimentConfig, costs: dict, workers: int = 1) -> list[dict]:
    """Hours per stage, from the measured img/s and the config's counts (a search's trials
    `workers` at a time)."""
    train = CIFAR10_TRAIN_IMAGES - config.data.validation_size
    members = config.teacher.ensemble_size
    epochs = config.teacher.airbench.epochs
    teacher_epoch = train / costs["teacher_train"] + VALIDATION_IMAGES / costs["teacher_predict"]
    rows = [{"stage": "teacher", "measured": f"{costs['teacher_train']:.0f} img/s training, "
             f"{teacher_epoch:.0f} s an epoch with validation",
             "count": f"{members} members x {epochs} epochs",
             "hours": members * epochs * teacher_epoch / 3600}]
    passes = 2 if flip_averaged(config) else 1  # the image and its mirror
    transfer = members * config.transfer.views * train * passes / costs["teacher_predict"]
    rows.append({"stage": "transfer set",
                 "measured": f"{costs['teacher_predict']:.0f} img/s a member and pass",
                 "count": f"{members} members x {config.transfer.views} views of {train}",
                 "hours": transfer / 3600})
    trials = config.search.trials
    searched = planned_cells(config, FAMILIES)
    units = search_unit_hours(config, costs, workers) if "students_train" in costs else {}
    for family in FAMILIES if units else ():
        cap = config.student.epochs_for(family)
        for budget in config.search.budgets:
            cells = {c.name: costs["students_train"][c.name] for c in searched
                     if c.family == family and c.budget == budget}
            if not cells:
                continue
            hours = sum(math.ceil(trials / workers) * cap * train / rate * SPREAD
                        * VALIDATION / 3600 for rate in cells.values())
            seconds = " / ".join(f"{train / rate:.1f}" for rate in cells.values())
            rows.append({"stage": f"{family.upper()} searches, {budget_label(budget)}",
                         "measured": f"an epoch: {seconds} s (depths in order)",
                         "count": f"{len(cells)} x {trials} trials x {cap} epochs"
                                  + (f", {workers} at a time" if workers > 1 else ""),
                         "hours": hours})
            if config.search.has_baseline(family, budget):
                pinned = sum(name + HARD_SUFFIX in costs["students_train"] for name in cells)
                rows.append({"stage": f"hard-label baselines, {family.upper()} "
                             f"{budget_label(budget)}",
                             "measured": (f"{pinned} of {len(cells)} at their cell's best "
                                          "widths, the rest as the searches above"),
                             "count": f"{len(cells)} x {trials} trials x {cap} epochs",
                             "hours": sum(units[name + HARD_SUFFIX] for name in cells)})
    rows.append({"stage": "in all", "measured": "", "count": "",
                 "hours": sum(row["hours"] for row in rows)})
    return rows


def search_unit_hours(config: ExperimentConfig, costs: dict, workers: int) -> dict[str, float]:
    """Each search unit's hours (its cell's name; `-hard` for a hard-label baseline):
    ceil(trials / workers) rounds, each of one trial's epoch cap at its measured rate, with
    SPREAD and VALIDATION as the stages' rows."""
    train = CIFAR10_TRAIN_IMAGES - config.data.validation_size
    rounds = math.ceil(config.search.trials / workers)
    rates = costs["students_train"]
    hours = {}
    for cell in planned_cells(config, FAMILIES):
        epochs = rounds * config.student.epochs_for(cell.family) * train * VALIDATION / 3600
        hours[cell.name] = epochs / rates[cell.name] * SPREAD
        if config.search.has_baseline(cell.family, cell.budget):
            baseline = cell.name + HARD_SUFFIX  # its architecture pinned: no spread
            hours[baseline] = (epochs / rates[baseline] if baseline in rates
                               else hours[cell.name])
    return hours


def member_unit_hours(config: ExperimentConfig, costs: dict) -> list[float]:
    """Each member's unit, in hours: its epochs (`teacher.member_epochs` where set), each with
    a validation pass, then its published logits (`mimic_tf.publish_teacher`): the K views of
    the training split (twice with flip averaging) and validation and test with and without
    the mirror."""
    train = CIFAR10_TRAIN_IMAGES - config.data.validation_size
    epoch = train / costs["teacher_train"] + VALIDATION_IMAGES / costs["teacher_predict"]
    passes = 2 if flip_averaged(config) else 1
    logits = (config.transfer.views * train * passes + 4 * VALIDATION_IMAGES) / costs[
        "teacher_predict"]
    return [(config.teacher.for_member(index).airbench.epochs * epoch + logits) / 3600
            for index in range(config.teacher.ensemble_size)]


def main() -> None:
    args = parse_args()
    config = load_config(args.config)
    if config.teacher.family != "airbench":
        raise SystemExit(f"{args.config}: teacher.family is {config.teacher.family!r}; this "
                         "plan measures airbench members only")
    if args.students_only:  # one of --workers' processes: its students' rates, as JSON
        print(json.dumps(measure_students(config, args.steps, args.results)))
        return
    facts = runtime.describe()
    print(f"{args.config} on {facts['cpu']}, oneDNN {'on' if facts['onednn'] else 'off'}, "
          f"TensorFlow {facts['tensorflow']}; teacher in "
          f"{runtime.resolve_precision(config.teacher.airbench.precision)}, students in "
          f"{runtime.resolve_precision(config.student.precision)}", file=sys.stderr)
    costs = measure_teacher(config, args.steps)
    if not args.teacher_only:
        if args.workers > 1:
            print(f"  students: {args.workers} one-thread processes side by side",
                  file=sys.stderr, flush=True)
            costs["students_train"] = measure_students_side_by_side(
                args.config, args.steps, args.workers, args.results)
        else:
            costs["students_train"] = measure_students(config, args.steps, args.results)
        costs["precision"]["students"] = runtime.resolve_precision(config.student.precision)
    rows = plan(config, costs, args.workers)
    print("| stage | measured | count | hours |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['stage']} | {row['measured']} | {row['count']} | {row['hours']:.1f} |")
    units = member_unit_hours(config, costs)
    print("a member's unit (training and its published logits): " + ", ".join(
        f"member {index + 1} {hours:.2f} h" for index, hours in enumerate(units)))
    searches = search_unit_hours(config, costs, args.workers) if not args.teacher_only else {}
    if searches:
        print(f"a search's unit ({args.workers} trial(s) side by side, epoch caps): " + ", ".join(
            f"{name} {hours:.2f} h" for name, hours in searches.items()))
    print(json.dumps({"config": args.config, "runtime": facts, "costs": costs, "plan": rows,
                      "member_unit_hours": units, "search_unit_hours": searches,
                      "workers": args.workers, "spread": SPREAD,
                      "validation": VALIDATION}, default=float))


if __name__ == "__main__":
    main()
