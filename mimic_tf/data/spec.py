"""What a dataset's images and labels look like: the one description every stage reads.

    spec = DatasetSpec(height=8, width=8, channels=1, class_names=tuple("0123456789"))
    spec.image_shape, spec.num_classes, spec.input_values     # (8, 8, 1), 10, 64

Every function that builds, budgets, exports or serves a model takes the spec as an argument:
nothing falls back to CIFAR-10. `CIFAR10` describes the paper's data, for code that means it
(the synthetic source, the paper's tables, benchmarks). A run's own spec is in its
`dataset.json`. Plain data, no TensorFlow: budgets, configs and reports import it freely.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

RawArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""A source's train images, train labels, test images and test labels, before any split."""


class DataError(RuntimeError):
    """Data that is missing or malformed; the message says how to provide it."""


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """Image height, width and channels, and the class names (hence their count)."""

    height: int
    width: int
    channels: int
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if min(self.height, self.width) < 1 or self.channels not in (1, 3):
            raise ValueError(f"images of {self.height}x{self.width}x{self.channels}: height "
                             "and width must be positive and channels 1 (grayscale) or 3 (RGB)")
        if len(self.class_names) < 2 or len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f"class names {list(self.class_names)}: give two or more, "
                             "each once")

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of one image."""
        return (self.height, self.width, self.channels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_values(self) -> int:
        """Pixels times channels: the inputs of an MLP's first layer."""
        return self.height * self.width * self.channels

    def describe(self) -> str:
        """`32x32x3, 10 classes`."""
        return f"{self.height}x{self.width}x{self.channels}, {self.num_classes} classes"

    def to_dict(self) -> dict[str, Any]:
        return {"height": self.height, "width": self.width, "channels": self.channels,
                "class_names": list(self.class_names)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DatasetSpec:
        return cls(int(data["height"]), int(data["width"]), int(data["channels"]),
                   tuple(str(name) for name in data["class_names"]))

    @classmethod
    def of_images(cls, images_shape: Sequence[int], class_names: Sequence[str]) -> DatasetSpec:
        """The description of a `[N, H, W, C]` image array with these classes."""
        _, height, width, channels = images_shape
        return cls(int(height), int(width), int(channels), tuple(class_names))


CIFAR10 = DatasetSpec(32, 32, 3, (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
))
