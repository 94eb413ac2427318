"""What every command-line tool does first: load TensorFlow without its C++ start-up lines.

Importing TensorFlow prints CUDA-stub, oneDNN and cpu_feature_guard lines on stderr, some
before its own log level applies. A CLI calls this before anything imports TensorFlow:

    if __name__ == "__main__":  # before the imports below load TensorFlow
        from mimic_tf.cli import import_tensorflow_quietly

        import_tensorflow_quietly()

TensorFlow's Python warnings (its `tf.function` retracing notes, which every search triggers by
building a new model per trial) are muted too. Both stay when the command line has
`--verbose` or the user set `TF_CPP_MIN_LOG_LEVEL`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mimic_tf.layout import ExperimentLayout

VERBOSE_FLAG = "--verbose"
VERBOSE_HELP = "show TensorFlow's C++ start-up and runtime log lines"


def import_tensorflow_quietly(verbose: bool | None = None) -> None:
    """Import TensorFlow with its C++ logging off, stderr muted during the import and its
    Python logger at ERROR.

    Does nothing but the import when `verbose` (default: `--verbose` is in `sys.argv`) or
    when `TF_CPP_MIN_LOG_LEVEL` is set. Python errors raised by the import still reach stderr.
    """
    verbose = VERBOSE_FLAG in sys.argv if verbose is None else verbose
    if verbose or "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        import tensorflow  # noqa: F401
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # FATAL only, from the moment logging starts
    sys.stderr.flush()
    saved_stderr = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)  # the lines printed before TensorFlow's logging is initialised
    try:
        import tensorflow
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
        os.close(null)
    tensorflow.get_logger().setLevel(logging.ERROR)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """`--run` (a finished run's folder) and `--data`, for the tools that work on one."""
    parser.add_argument("--run", required=True, type=Path,
                        help="the run folder, e.g. runs/default")
    parser.add_argument("--data", help="data source (default: the run's data.source)")
    parser.add_argument(VERBOSE_FLAG, action="store_true", help=VERBOSE_HELP)


def run_layout(parser: argparse.ArgumentParser, args: argparse.Namespace) -> ExperimentLayout:
    """The layout of `--run`; exits with a usage error when it holds no run."""
    from mimic_tf.layout import ExperimentLayout

    layout = ExperimentLayout(args.run)
    if not layout.config_file.is_file():
        parser.error(f"--run {args.run} holds no config.yaml; pass a folder written by "
                     "python -m tuner.run (runs/<experiment>)")
    return layout
