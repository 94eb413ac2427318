"""Every command-line tool: `--help` works and prints no TensorFlow start-up lines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
COMMANDS = [
    "mimic_tf.train_teacher",
    "mimic_tf.publish_teacher",
    "mimic_tf.teacher_card",
    "tuner.run",
    "tuner.publish",
    "tuner.report",
    "tuner.findings",
    "tuner.frontier",
    "tuner.status",
    "tuner.campaign",
    "serving.export",
    "serving.server",
    "serving.compare",
    "serving.release",
]


def run_quietly(*args: str) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items()
                   if key != "TF_CPP_MIN_LOG_LEVEL"}
    environment["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          env=environment, cwd=ROOT, timeout=120)


@pytest.mark.parametrize("module", COMMANDS)
def test_help_prints_usage_and_no_tensorflow_lines(module):
    result = run_quietly("-m", module, "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m ")
    assert result.stderr == ""


def test_tensorflow_lines_are_muted_unless_verbose():
    code = ("from mimic_tf.cli import import_tensorflow_quietly; import_tensorflow_quietly(); "
            "import tensorflow as tf; print(float(tf.constant(2.0) * 3))")
    quiet = run_quietly("-c", code)
    assert quiet.stdout.strip() == "6.0" and quiet.stderr == ""
    verbose = run_quietly("-c", code, "--verbose")
    assert verbose.stdout.strip() == "6.0" and verbose.stderr != ""  # the C++ lines


def test_tensorflow_python_warnings_are_muted_unless_verbose():
    """TensorFlow's Python logger (its retracing notes, one per search's new models)."""
    code = ("from mimic_tf.cli import import_tensorflow_quietly; import_tensorflow_quietly(); "
            "import tensorflow as tf; tf.get_logger().warning('retraced'); "
            "tf.get_logger().error('failed')")
    quiet = run_quietly("-c", code)
    assert "retraced" not in quiet.stderr and "failed" in quiet.stderr
    verbose = run_quietly("-c", code, "--verbose")
    assert "retraced" in verbose.stderr
