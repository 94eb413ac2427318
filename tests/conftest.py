"""Shared pytest fixtures: every test starts from the same seeds."""

from __future__ import annotations

import mimic_tf  # noqa: F401  (first: sets oneDNN's default before TensorFlow loads)

# isort: split

import os

import pytest

from mimic_tf.cli import import_tensorflow_quietly

# TensorFlow's C++ start-up lines would reach the terminal from every pytest-xdist worker.
# The log level is this process's only: subprocesses that tests start get the user's own.
_users_log_level = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
import_tensorflow_quietly(verbose=False)
if _users_log_level is None:
    os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)

import keras  # noqa: E402  (after the quiet import of TensorFlow)


@pytest.fixture(autouse=True)
def seeded() -> None:
    """Seed Python, NumPy and the Keras backend (TensorFlow) before each test."""
    keras.utils.set_random_seed(0)
