"""Shared pytest fixtures: every test starts from the same seeds."""

from __future__ import annotations

import keras
import pytest


@pytest.fixture(autouse=True)
def seeded() -> None:
    """Seed Python, NumPy and the Keras backend (TensorFlow) before each test."""
    keras.utils.set_random_seed(0)
