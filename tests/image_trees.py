"""Real and made-up ImageFolder trees for the tests of data other than CIFAR-10."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf


def write_digits_tree(root: Path, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as `root/train/<digit>/<n>.png` (8x8x1); returns images, labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.clip(digits.images * 16, 0, 255).astype(np.uint8)[..., None][:limit]
    labels = digits.target.astype(np.int64)[:limit]
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / "train" / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        tf.io.write_file(str(folder / f"{index:04d}.png"), tf.io.encode_png(image))
    return images, labels


def write_colour_tree(root: Path, sizes: dict[str, tuple[int, int]], per_class: int = 4,
                      channels: int = 3) -> None:
    """Random PNGs `root/{train,test}/<class>/*.png` (RGB, or gray with `channels=1`), each
    class at its own size."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for name, (height, width) in sizes.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(per_class):
                image = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
                tf.io.write_file(str(folder / f"{index}.png"), tf.io.encode_png(image))
