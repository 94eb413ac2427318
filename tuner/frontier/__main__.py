"""`python -m tuner.frontier --run DIR`: measure a run's accuracy-latency frontier.

    python -m tuner.frontier --run runs/default            # measure (skipped when up to date)
    python -m tuner.frontier --run runs/default --remeasure

`tuner.frontier.measure` says what is measured and written.
"""
# ruff: noqa: E402 (TensorFlow is imported quietly first when run as a command)

from __future__ import annotations

if __name__ == "__main__":  # before the imports below load TensorFlow: no C++ start-up lines
    from mimic_tf.cli import import_tensorflow_quietly

    import_tensorflow_quietly()

import argparse
import sys
from collections.abc import Sequence

from mimic_tf.cli import add_run_arguments, run_layout
from mimic_tf.config import ConfigError, load_config
from tuner.frontier.measure import measure_frontier


def build_parser() -> argparse.ArgumentParser:
    """The flags of `python -m tuner.frontier`."""
    parser = argparse.ArgumentParser(
        prog="python -m tuner.frontier",
        description="Serve every completed trial of a run in one model server and measure "
                    "its accuracy, mimic diagnostics and latency; write frontier.csv, "
                    "frontier.md, frontier.png and reliability.png, and refresh the report.")
    add_run_arguments(parser)
    parser.add_argument("--remeasure", action="store_true",
                        help="measure again even if nothing changed since the last time")
    parser.add_argument("--latency-requests", type=int,
                        help="batch-1 requests timed per student (frontier.latency_requests)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse flags, measure, rewrite the report, print the frontier."""
    parser = build_parser()
    args = parser.parse_args(argv)
    layout = run_layout(parser, args)
    if not layout.transfer_evaluation_logits.is_file():
        parser.error(f"--run {args.run} has no teacher logits "
                     f"({layout.transfer_evaluation_logits}); run python -m tuner.run on it")
    try:
        config = load_config(layout.config_file, overrides={
            "data.source": args.data, "frontier.latency_requests": args.latency_requests})
    except ConfigError as error:
        parser.error(str(error))
    from mimic_tf.data import DataError, load_splits
    from tuner.report.build import write_report

    try:
        splits = load_splits(config.data)
    except DataError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    command = " ".join(["python -m tuner.frontier", *(argv if argv is not None
                                                     else sys.argv[1:])])
    try:
        measure_frontier(layout, config, splits.test_images, splits.test_labels,
                         spec=splits.spec, remeasure=args.remeasure, command=command)
    except RuntimeError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1
    write_report(layout.root)
    if layout.frontier_md.is_file():
        print(layout.frontier_md.read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
