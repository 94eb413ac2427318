"""`python -m serving.release`: push through the release gate, promote, roll back, show status.

    python -m serving.release push --candidate runs/EXP/models/NAME/1 --serving-base serving \
        --name NAME [--data auto] [--split validation|test] [--min-accuracy A] \
        [--max-accuracy-drop D] [--max-p99-ms MS] [--max-latency-growth R] [--label canary|stable]
    python -m serving.release promote  --serving-base serving --name NAME   # canary -> stable
    python -m serving.release rollback --serving-base serving --name NAME   # previous stable
    python -m serving.release status   --serving-base serving [--name NAME] [--json]

`push` runs `serving.release.gate.release_candidate` (infra validation, evaluation, push);
`promote`, `rollback` and `status` work on the serving base alone
(`serving.release.serving_base`) and do not load TensorFlow. Exit status: 0 done (pushed),
1 refused or nothing to do (each reason printed), 2 usage errors. See docs/serving.md, "Release".
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from serving.release.serving_base import (
    CANARY,
    LABELS,
    MODELS_CONFIG,
    ReleaseError,
    check_model_name,
    promote,
    rollback,
)
from serving.release.status import format_status, status_rows


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
    push.add_argument("--verbose", action="store_true",
                      help="show TensorFlow's C++ start-up and runtime log lines")
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
    # The gate and the data load TensorFlow; status, promote and rollback do not need it.
    from mimic_tf.cli import import_tensorflow_quietly

    import_tensorflow_quietly(args.verbose)
    from mimic_tf.data import DataError, load_splits
    from serving.release.evaluator import Thresholds
    from serving.release.gate import release_candidate

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
            from serving.release.gate import reload_live_server

            reload_live_server(args.server, args.serving_base)
            print(f"{args.server} reloaded {args.serving_base / MODELS_CONFIG}")
        return 0
    except ReleaseError as error:
        print(f"{parser.prog} {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
