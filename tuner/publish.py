"""The stages after the searches: export each search's best student, then push it through the gate.

    python -m tuner.publish --run runs/default          # export (retrying failures)
    python -m tuner.publish --run runs/default --push   # ... and push into runs/default/serving
    python -m tuner.publish --run runs/default --push --serving-base /srv/models --min-accuracy 0.5
    python -m tuner.publish --run runs/default --push --pick frontier --max-p99-ms 5
        # one student: the most accurate whose served p99 (tuner.frontier) is within 5 ms

Both stages read only what the searches wrote (`searches/<cell>/evaluation.json` and
`best_student.keras`), so each reruns alone: `tuner.run` calls them at its end, and this CLI
runs them again on a finished run. A stage skips what it has done (the same trial exported; the
same export pushed or refused under the same thresholds) and retries what failed. Records go
back into `evaluation.json`: `exported` (the SavedModel folder, or the error) and `pushed`
(the serving base, the version or the failed checks). Baseline (hard-label) searches are
neither exported nor pushed.

With `--pick frontier` (`release.pick`), one student is pushed instead, under the experiment's
name: of every trial the frontier stage served (`tuner.frontier`, run first when its
measurement is missing or stale), the most accurate on the test split whose measured p99 is
within `--max-p99-ms`. Its record is `frontier/pushed.json`.
"""
# ruff: noqa: E402 (TensorFlow is imported quietly first when run as a command)

from __future__ import annotations

if __name__ == "__main__":  # before the imports below load TensorFlow: no C++ start-up lines
    from mimic_tf.cli import import_tensorflow_quietly

    import_tensorflow_quietly()

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mimic_tf.cli import add_run_arguments, run_layout
from mimic_tf.config import ConfigError, ReleaseConfig, load_config
from mimic_tf.files import atomic_write_text
from mimic_tf.layout import ExperimentLayout
from mimic_tf.vocabulary import PICK_FRONTIER, RELEASE_LABELS, RELEASE_PICKS
from serving.export import ExportError, export_student
from serving.release.evaluator import Thresholds
from serving.release.gate import release_candidate
from tuner import artifacts
from tuner.artifacts import Evaluation
from tuner.frontier.table import FrontierRow


class NoStudentWithinBudget(RuntimeError):
    """No served student meets the latency budget (or none was measured)."""


def published_cells(layout: ExperimentLayout) -> list[str]:
    """The mimic searches of a run (baselines are not exported), by name."""
    return sorted(cell.name for cell, _ in artifacts.read_searches(layout)
                  if not cell.is_baseline)


def student_lineage(layout: ExperimentLayout, name: str,
                    evaluation: Evaluation) -> dict[str, Any]:
    """Where a search's best student came from: run, trial, fingerprints, config, metrics."""
    best = evaluation["best_student"]
    trial = evaluation.get("trials", {}).get(best["trial_id"], {})
    search = artifacts.read_settings(layout.search(name)) or {}
    manifest = artifacts.read_transfer_manifest(layout)
    return {
        "run": str(layout.root.absolute()),
        "search": name,
        "trial_id": best["trial_id"],
        "hyperparameters": best.get("hyperparameters", {}),
        "teacher_fingerprint": (manifest.get("fingerprint") or {}).get("teacher_weights"),
        "transfer_fingerprint": search.get("transfer") or manifest.get("digest"),
        "config_sha256": artifacts.config_sha256(layout),
        "val_accuracy": trial.get("val_accuracy"),
        "test_accuracy": trial.get("test_accuracy"),
        "params": trial.get("params"),
    }


def export_best_students(layout: ExperimentLayout, names: Sequence[str] | None = None,
                         log: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """Export each search's best student to `models/<search>/<version>/`; return the records.

    A search whose best trial is exported already is skipped; a failed export is retried.
    """
    records = {}
    for name in names if names is not None else published_cells(layout):
        search = layout.search(name)
        evaluation = artifacts.read_evaluation(search)
        best = evaluation.get("best_student")
        if not best:
            continue
        exported = evaluation.get("exported") or {}
        if "error" in best:
            evaluation["exported"] = {"trial_id": best["trial_id"], "error": best["error"]}
        elif exported.get("trial_id") == best["trial_id"] and "path" in exported \
                and (Path(exported["path"]) / "saved_model.pb").is_file():
            records[name] = exported
            continue
        else:
            try:
                path = export_student(search.best_student, layout.models, name,
                                      class_names=artifacts.read_dataset(layout).class_names,
                                      lineage=student_lineage(layout, name, evaluation))
            except (ExportError, OSError, ValueError) as error:
                evaluation["exported"] = {"trial_id": best["trial_id"], "error": str(error)}
                log(f"[{name}] not exported (retried on the next run): {error}")
            else:
                evaluation["exported"] = {"trial_id": best["trial_id"], "path": str(path)}
                log(f"[{name}] exported trial {best['trial_id']} to {path}")
        artifacts.write_evaluation(search, evaluation)
        records[name] = evaluation["exported"]
    return records


def release_thresholds(release: ReleaseConfig) -> Thresholds:
    """The gate's thresholds from the config (0 turns a latency or accuracy floor off)."""
    return Thresholds(
        min_accuracy=release.min_accuracy or None,
        max_accuracy_drop=release.max_accuracy_drop if release.max_accuracy_drop < 1 else None,
        max_p99_ms=release.max_p99_ms or None,
        max_latency_growth=release.max_latency_growth or None,
    )


def serving_base(layout: ExperimentLayout, release: ReleaseConfig) -> Path:
    """`release.serving_base`, or the run's own `serving/` folder."""
    return Path(release.serving_base) if release.serving_base else layout.serving


def push_best_students(
    layout: ExperimentLayout,
    release: ReleaseConfig,
    images: np.ndarray,
    labels: np.ndarray,
    data: str,
    names: Sequence[str] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, Any]]:
    """Put each exported best student through the release gate into the serving base.

    The model name in the serving base is the search's name. A search whose export was pushed
    or refused already under the same thresholds is skipped; anything else is (re)tried.
    """
    base = serving_base(layout, release)
    thresholds = release_thresholds(release)
    records = {}
    for name in names if names is not None else published_cells(layout):
        search = layout.search(name)
        evaluation = artifacts.read_evaluation(search)
        exported = evaluation.get("exported") or {}
        if "path" not in exported:
            continue
        attempt = {"export": exported["path"], "serving_base": str(base.absolute()),
                   "thresholds": thresholds.to_dict(), "label": release.label}
        previous = evaluation.get("pushed") or {}
        if previous.get("attempt") == attempt and previous.get("status") in ("pushed",
                                                                             "refused"):
            records[name] = previous
            continue
        outcome = release_candidate(
            exported["path"], base, name, images, labels, thresholds, label=release.label,
            data=data, backend="auto", latency_requests=release.latency_requests, log=log)
        evaluation["pushed"] = {
            "attempt": attempt,
            "status": "pushed" if outcome.pushed else "refused",
            "version": outcome.version,
            "reasons": outcome.reasons,
            "records": str(outcome.records_dir),
        }
        artifacts.write_evaluation(search, evaluation)
        records[name] = evaluation["pushed"]
    return records


def pick_within_budget(rows: Sequence[FrontierRow], max_p99_ms: float) -> FrontierRow:
    """The most accurate student (test split) whose measured p99 is within `max_p99_ms`.

    Raises:
        NoStudentWithinBudget: none is, naming the fastest student and its p99.
    """
    if not rows:
        raise NoStudentWithinBudget("no served student to pick from: the frontier stage "
                                    "measured none (python -m tuner.frontier --run RUN)")
    inside = [row for row in rows if row.p99_ms <= max_p99_ms]
    if not inside:
        fastest = min(rows, key=lambda row: row.p99_ms)
        raise NoStudentWithinBudget(
            f"no student answers within p99 {max_p99_ms:g} ms: the fastest, {fastest.model} "
            f"({fastest.architecture}, {100 * fastest.test_accuracy:.1f}% test), has p99 "
            f"{fastest.p99_ms:.2f} ms; raise --max-p99-ms to at least that, or push each "
            "search's best with --pick best")
    return max(inside, key=lambda row: (row.test_accuracy, -row.p99_ms))


def push_frontier_pick(
    layout: ExperimentLayout,
    release: ReleaseConfig,
    rows: Sequence[FrontierRow],
    images: np.ndarray,
    labels: np.ndarray,
    data: str,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Push the frontier's pick under the experiment's name through the release gate.

    Skipped when the same student was pushed or refused already under the same thresholds.

    Raises:
        NoStudentWithinBudget: no student is within `release.max_p99_ms`; nothing is pushed.
    """
    pick = pick_within_budget(rows, release.max_p99_ms)
    base = serving_base(layout, release)
    name = layout.root.name
    thresholds = release_thresholds(release)
    candidate = layout.frontier_models / pick.model / "1"
    attempt = {"student": pick.model, "export": str(candidate.absolute()),
               "serving_base": str(base.absolute()), "label": release.label,
               "thresholds": thresholds.to_dict()}
    record_path = layout.frontier / "pushed.json"
    previous = json.loads(record_path.read_text()) if record_path.is_file() else {}
    if previous.get("attempt") == attempt and previous.get("status") in ("pushed", "refused"):
        return previous
    log(f"[{name}] frontier pick within p99 {release.max_p99_ms:g} ms: {pick.model} "
        f"({pick.architecture}, {100 * pick.test_accuracy:.1f}% test, p99 {pick.p99_ms:.2f} ms)")
    outcome = release_candidate(
        candidate, base, name, images, labels, thresholds,
        label=release.label, data=data, backend="auto",
        lineage={"frontier": {"student": pick.model, "test_accuracy": pick.test_accuracy,
                              "p99_ms": pick.p99_ms, "budget_p99_ms": release.max_p99_ms}},
        latency_requests=release.latency_requests, log=log)
    record = {"attempt": attempt, "status": "pushed" if outcome.pushed else "refused",
              "model": name, "version": outcome.version, "reasons": outcome.reasons,
              "records": str(outcome.records_dir)}
    atomic_write_text(record_path, json.dumps(record, indent=2) + "\n")
    return record


def build_parser() -> argparse.ArgumentParser:
    """The flags of `python -m tuner.publish`."""
    parser = argparse.ArgumentParser(
        prog="python -m tuner.publish",
        description="Export each search's best student of a run for TF Serving (retrying "
                    "failed exports) and, with --push, put each through the release gate into "
                    "a serving base.")
    add_run_arguments(parser)
    parser.add_argument("--push", action="store_true",
                        help="also push (the run's release.* config keys, overridden below)")
    parser.add_argument("--serving-base", help="serving base (default: release.serving_base, "
                        "else RUN/serving)")
    parser.add_argument("--label", choices=RELEASE_LABELS, help="label of pushed versions")
    parser.add_argument("--pick", choices=RELEASE_PICKS,
                        help="best: each search's best student (default); frontier: the most "
                        "accurate served student within --max-p99-ms (release.pick)")
    parser.add_argument("--min-accuracy", type=float)
    parser.add_argument("--max-accuracy-drop", type=float)
    parser.add_argument("--max-p99-ms", type=float)
    parser.add_argument("--max-latency-growth", type=float)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, export, push when asked, print one JSON summary."""
    parser = build_parser()
    args = parser.parse_args(argv)
    layout = run_layout(parser, args)
    overrides = {"release.serving_base": args.serving_base, "release.label": args.label,
                 "release.min_accuracy": args.min_accuracy,
                 "release.max_accuracy_drop": args.max_accuracy_drop,
                 "release.max_p99_ms": args.max_p99_ms,
                 "release.max_latency_growth": args.max_latency_growth,
                 "release.pick": args.pick, "data.source": args.data}
    try:
        config = load_config(layout.config_file, overrides=overrides)
    except ConfigError as error:
        parser.error(str(error))
    summary: dict[str, Any] = {"exported": export_best_students(layout)}
    if args.push:
        from mimic_tf.data import DataError, load_splits

        try:
            splits = load_splits(config.data)
        except DataError as error:
            print(f"{parser.prog}: error: {error}", file=sys.stderr)
            return 1
        split = config.release.split
        images, labels = getattr(splits, f"{split}_images"), getattr(splits, f"{split}_labels")
        data = f"{splits.source} {split} ({len(images)} images)"
        if config.release.pick == PICK_FRONTIER:
            from tuner.frontier.measure import measure_frontier

            rows = measure_frontier(layout, config, splits.test_images, splits.test_labels,
                                    spec=splits.spec,
                                    log=lambda line: print(line, file=sys.stderr))
            try:
                summary["pushed"] = push_frontier_pick(
                    layout, config.release, rows, images, labels, data,
                    log=lambda line: print(line, file=sys.stderr))
            except NoStudentWithinBudget as error:
                print(f"{parser.prog}: {error}", file=sys.stderr)
                return 1
        else:
            summary["pushed"] = push_best_students(layout, config.release, images, labels,
                                                   data)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
