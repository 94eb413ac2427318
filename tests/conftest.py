"""Shared pytest fixtures: every test starts from the same seeds."""

from __future__ import annotations

import mimic_tf  # noqa: F401  (first: sets oneDNN's default before TensorFlow loads)

# isort: split

import keras
import pytest


@pytest.fixture(autouse=True)
def seeded() -> None:
    """Seed Python, NumPy and the Keras backend (TensorFlow) before each test."""
    keras.utils.set_random_seed(0)
