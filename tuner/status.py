"""Where a run stands: the teacher's members, the transfer set's views, the searches finished.

    python -m tuner.status runs/default                    # or a campaign's run folder
    python -m tuner.status ~/mimic-tf-runs/cpu-replication-v2 --json

Read from the run folder alone, while its stages run or after a stop: what is saved is what a
resume would keep (finished members and the epochs of the member in training, the transfer
set's finished views, finished searches and the trials each has ended). The plan (members,
views, searches) is the run's config: `config.yaml` at the run's root, or the teacher's while
only the teacher stage has run, or `--config`. Exit code 2 when the folder holds no run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mimic_tf.cli import import_tensorflow_quietly
from mimic_tf.config import ConfigError, ExperimentConfig, load_config
from mimic_tf.layout import ExperimentLayout
from tuner import artifacts
from tuner.search import kept
from tuner.search.cells import planned_cells

FAMILIES = ("mlp", "cnn")


def run_config(layout: ExperimentLayout, config: str | None = None) -> ExperimentConfig:
    """`config` when given, else the run's: the root's, else the teacher stage's (whose
    `teacher.members` may be a first stage's smaller ensemble); ConfigError when neither."""
    if config is not None:
        return load_config(config)
    for path in (layout.config_file, layout.teacher / "config.yaml"):
        if path.is_file():
            return load_config(path)
    raise ConfigError(f"{layout.root} holds no run: no config.yaml at its root or in teacher/; "
                      "pass the folder a run wrote (runs/<experiment>)")


def teacher_status(layout: ExperimentLayout, config: ExperimentConfig) -> dict[str, Any]:
    """Members finished of planned, the epoch the member in training resumes from, and the
    ensemble's accuracy once `teacher.json` records all members."""
    from mimic_tf.resume import saved_epoch  # imports Keras: only here

    summary = (json.loads(layout.teacher_summary.read_text())
               if layout.teacher_summary.is_file() else {})
    if config.teacher.published:  # read, not trained: its members are what the folder held
        ensemble = summary.get("ensemble", {})
        return {"published": config.teacher.published, "members": ensemble.get("members"),
                "finished": ensemble.get("members") or 0, "train_seconds": 0.0,
                "test_accuracy": ensemble.get("test_accuracy")}
    planned = config.teacher.ensemble_size
    finished = [index for index in range(planned)
                if (layout.teacher / f"member_{index:02d}.keras").is_file()]
    seconds = 0.0
    for index in finished:
        record_file = layout.teacher / f"member_{index:02d}.json"
        if record_file.is_file():
            seconds += float(json.loads(record_file.read_text()).get("train_seconds", 0.0))
    status: dict[str, Any] = {"members": planned, "finished": len(finished),
                              "train_seconds": round(seconds, 1)}
    training = next((index for index in range(planned) if index not in finished), None)
    if training is not None:
        epochs = (config.teacher.airbench.epochs if config.teacher.family == "airbench"
                  else config.teacher.schedule.epochs)
        backup = layout.teacher / f".backup_member_{training:02d}.npz"
        status["training"] = {"member": training + 1, "epochs_done": saved_epoch(backup),
                              "epochs": epochs}
    ensemble = summary.get("ensemble", {})
    if ensemble.get("members") == planned:
        status["test_accuracy"] = ensemble.get("test_accuracy")
    return status


def transfer_status(layout: ExperimentLayout, config: ExperimentConfig) -> dict[str, Any]:
    """Views with the teacher's logits, of planned (all of them once its manifest is written)."""
    from mimic_tf.transfer import PARTIAL_PROGRESS_FILE

    views = config.transfer.views
    if config.teacher.published:  # the published members' logits: nothing to compute
        return {"views": views, "finished": views, "seconds": None, "published": True}
    manifest = artifacts.read_transfer_manifest(layout)
    if manifest:
        return {"views": views, "finished": views,
                "seconds": manifest.get("logits_seconds")}
    progress = layout.transfer / PARTIAL_PROGRESS_FILE
    record = json.loads(progress.read_text()) if progress.is_file() else {}
    return {"views": views, "finished": int(record.get("views_done", 0)),
            "seconds": record.get("seconds")}


def searches_status(layout: ExperimentLayout, config: ExperimentConfig) -> dict[str, Any]:
    """Searches finished of planned (mimic searches and hard-label baselines; those kept
    from an earlier run folder among them, `tuner.search.kept`), and the trials ended of each search
    under way."""
    cells = planned_cells(config, FAMILIES)
    baselines = sum(config.search.has_baseline(c.family, c.budget) for c in cells)
    trials = config.search.trials
    kept_searches = set(kept.kept_rows(layout))
    finished_here, under_way = set(), {}
    for cell, search in artifacts.read_searches(layout):
        if artifacts.search_complete(search, trials):
            finished_here.add(cell.name)
        elif cell.name not in kept_searches:
            under_way[cell.name] = artifacts.trials_ended(search)
    return {"planned": len(cells) + baselines, "mimic": len(cells), "baselines": baselines,
            "finished": len(finished_here | kept_searches),
            "kept": len(kept_searches - finished_here),
            "trials": trials, "under_way": under_way}


def run_status(folder: str | Path, config: str | None = None) -> dict[str, Any]:
    """Every stage's standing in `folder` against `config`'s plan (default: the run's own)."""
    layout = ExperimentLayout(Path(folder).expanduser())
    if not layout.root.is_dir():
        raise ConfigError(f"no run folder {layout.root}; pass the folder a run wrote "
                          "(runs/<experiment>)")
    config = run_config(layout, config)
    return {"run": str(layout.root), "experiment": config.name,
            "teacher": teacher_status(layout, config),
            "transfer": transfer_status(layout, config),
            "searches": searches_status(layout, config)}


def _hours(seconds: float | None) -> str:
    return "" if not seconds else f" ({seconds / 3600:.2f} h)"


def format_status(status: dict[str, Any]) -> str:
    """The status as a few lines for the terminal."""
    teacher, transfer, searches = status["teacher"], status["transfer"], status["searches"]
    line = f"teacher    {teacher['finished']} of {teacher['members']} members done"
    line += _hours(teacher["train_seconds"])
    if "published" in teacher:
        line = (f"teacher    published ({teacher['published']}), not trained here"
                + (f": {teacher['members']} members, test accuracy "
                   f"{teacher['test_accuracy']:.4f}" if teacher.get("test_accuracy") is not None
                   else ""))
    elif "training" in teacher:
        training = teacher["training"]
        line += (f"; member {training['member']} training, {training['epochs_done']} of "
                 f"{training['epochs']} epochs saved")
    elif teacher.get("test_accuracy") is not None:
        line += f"; ensemble test accuracy {teacher['test_accuracy']:.4f}"
    lines = [f"{status['experiment']} ({status['run']})", line,
             (f"transfer   {transfer['views']} views of the published teacher's logits"
              if transfer.get("published") else
              f"transfer   {transfer['finished']} of {transfer['views']} views done"
              + _hours(transfer["seconds"])),
             f"searches   {searches['finished']} of {searches['planned']} done (planned: "
             f"{searches['mimic']} mimic, {searches['baselines']} hard-label baselines)"
             + (f"; {searches['kept']} kept from an earlier run folder" if searches["kept"]
                else "")]
    for name, ended in searches["under_way"].items():
        lines.append(f"           {name}: {ended} of {searches['trials']} trials ended")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuner.status",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("run", help="the run folder (runs/<experiment>)")
    parser.add_argument("--config", default=None,
                        help="the plan to measure against, a config name or path (default: "
                             "the run's own config.yaml)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead")
    args = parser.parse_args(argv)
    import_tensorflow_quietly(False)  # the member backups and the transfer set's files
    try:
        status = run_status(args.run, args.config)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return 0


if __name__ == "__main__":
    sys.exit(main())
