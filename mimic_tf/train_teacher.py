"""CLI: train (or finish training) the teacher ensemble of a config.

    python -m mimic_tf.train_teacher --config configs/default.yaml [--data SOURCE] [--out runs/]

Writes `runs/<experiment>/teacher/`: `member_XX.keras`, `ensemble.keras`, `teacher.json`
(validation and test accuracy of every member and of the ensemble), `config.yaml`, `logs/`.
Members already trained are skipped on rerun.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from mimic_tf.cli import VERBOSE_FLAG, VERBOSE_HELP, import_tensorflow_quietly
from mimic_tf.config import ConfigError, load_config
from mimic_tf.layout import ExperimentLayout


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mimic_tf.train_teacher",
        description="Train the teacher ensemble of an experiment config (resumable).",
    )
    parser.add_argument("--config", default="default",
                        help="YAML config path or a name in configs/ (default: default)")
    parser.add_argument("--data", default=None,
                        help="data source: auto | tfds:cifar10 | folder:PATH | synthetic")
    parser.add_argument("--out", default="runs", help="output root (default: runs/)")
    parser.add_argument("--members", type=int, default=None, help="override teacher.members")
    parser.add_argument("--epochs", type=int, default=None,
                        help="override teacher.schedule.epochs")
    parser.add_argument("--quiet", action="store_true", help="no per-epoch progress bars")
    parser.add_argument(VERBOSE_FLAG, action="store_true", help=VERBOSE_HELP)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(args.config, overrides={
            "data.source": args.data,
            "teacher.members": args.members,
            "teacher.schedule.epochs": args.epochs,
        })
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2

    import_tensorflow_quietly(args.verbose)  # heavy imports after the flags are good
    from mimic_tf.data import DataError, load_splits
    from mimic_tf.teachers import SUMMARY_FILE, TeacherMismatchError, ensure_teacher
    from mimic_tf.teachers.keras_teacher import TeacherLoadError

    layout = ExperimentLayout.for_config(config, args.out)
    started = time.perf_counter()
    try:
        splits = load_splits(config.data)
    except DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    # A progress bar on a terminal, one line per epoch in a log file.
    verbose = 0 if args.quiet else (1 if sys.stdout.isatty() else 2)
    try:
        ensure_teacher(config, splits, layout.teacher, verbose=verbose)
    except (TeacherMismatchError, TeacherLoadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    summary = json.loads((layout.teacher / SUMMARY_FILE).read_text())
    summary["wall_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
