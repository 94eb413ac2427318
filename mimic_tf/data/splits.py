"""The train / validation / test splits: stratified, seeded, each in a fixed shuffled order.

`load_splits` loads a source (`sources.load_source`), holds `DataConfig.validation_size`
images of its training set out as the validation split, each class in proportion
(`stratified_split`), optionally keeps a stratified fraction of the rest, and shuffles each
split once with `DataConfig.split_seed`. `Splits.fingerprint()` hashes the arrays; the transfer
set's manifest records it, so a change here shows as a stale cache.

    splits = load_splits(DataConfig(source="auto"))  # 40,000 / 10,000 / 10,000 for CIFAR-10
"""

from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np

from mimic_tf.config import DataConfig
from mimic_tf.data.sources import DataError, load_source
from mimic_tf.data.spec import DatasetSpec


@dataclasses.dataclass(frozen=True, eq=False)
class Splits:
    """The train / validation / test splits as uint8 images and int64 labels, in memory."""

    train_images: np.ndarray  # uint8 [N_train, H, W, C]
    train_labels: np.ndarray  # int64 [N_train]
    validation_images: np.ndarray
    validation_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str  # where the images came from, e.g. "folder:/.../cifar10-jpeg.tar.gz"
    class_names: tuple[str, ...]  # one per label, in label order

    ARRAY_NAMES = (
        "train_images", "train_labels", "validation_images", "validation_labels",
        "test_images", "test_labels",
    )

    @property
    def spec(self) -> DatasetSpec:
        """What the images and labels look like: every stage after the data reads it."""
        return DatasetSpec.of_images(self.train_images.shape, self.class_names)

    def fingerprint(self) -> str:
        """sha256 hex digest of every array's name, dtype, shape and bytes (computed once)."""
        cached = self.__dict__.get("_fingerprint")
        if cached is None:
            digest = hashlib.sha256()
            for name in self.ARRAY_NAMES:
                array = np.ascontiguousarray(getattr(self, name))
                digest.update(f"{name}:{array.dtype.str}:{array.shape};".encode())
                digest.update(memoryview(array).cast("B"))
            cached = digest.hexdigest()
            object.__setattr__(self, "_fingerprint", cached)  # a cache, not a field
        return cached


def stratified_split(
    labels: np.ndarray, validation_size: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Hold out `validation_size` examples, each class in proportion to its frequency.

    Returns `(train_indices, validation_indices)`, both sorted, disjoint and together all of
    `range(len(labels))`. Deterministic in `seed`. Per-class quotas are rounded by largest
    remainder so they add up to `validation_size` exactly.
    """
    labels = np.asarray(labels)
    if not 0 < validation_size < len(labels):
        raise ValueError(
            f"validation_size must be between 1 and {len(labels) - 1} for {len(labels)} "
            f"examples, got {validation_size}"
        )
    chosen = _stratified_choice(labels, validation_size, _generator(seed))
    held_out = np.zeros(len(labels), dtype=bool)
    held_out[chosen] = True
    return np.flatnonzero(~held_out), np.flatnonzero(held_out)


def _generator(seed: int, *stream: int) -> np.random.Generator:
    """A NumPy generator for `seed` (any int, negative too) and an optional stream number."""
    return np.random.default_rng([seed % 2**64, *stream])


def _stratified_choice(labels: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` indices drawn without replacement, class proportions kept (sorted)."""
    classes, class_counts = np.unique(labels, return_counts=True)
    exact = count * class_counts / len(labels)
    quotas = np.floor(exact).astype(np.int64)
    by_remainder = np.argsort(-(exact - quotas), kind="stable")
    quotas[by_remainder[: count - int(quotas.sum())]] += 1
    chosen = []
    for label, quota in zip(classes, quotas, strict=True):
        members = np.flatnonzero(labels == label)
        chosen.append(rng.permutation(members)[:quota])
    return np.sort(np.concatenate(chosen))


def load_splits(
    config: DataConfig | None = None,
    *,
    source: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Splits:
    """Load the source and split it: train / validation (stratified, seeded) / test.

    The validation split is `config.validation_size` images held out of the source's training
    images with `config.split_seed`; `config.train_fraction < 1` then keeps a stratified,
    seeded subset of the rest. Each split is put in a fixed order shuffled with
    `config.split_seed`, so any prefix of it holds every class. `source` overrides
    `config.source`; `cache_dir` overrides `sources.default_cache_dir()`.
    """
    config = config or DataConfig()
    if source is not None:
        config = dataclasses.replace(config, source=source)
    config.validate()
    loaded = load_source(config.source, cache_dir, config=config)
    (train_images, train_labels, test_images, test_labels), resolved = loaded[:2]
    class_names = loaded.class_names
    if config.classes:
        (train_images, train_labels), (test_images, test_labels) = (
            _kept_classes(images, labels, class_names, config.classes, resolved)
            for images, labels in ((train_images, train_labels), (test_images, test_labels)))
        class_names = tuple(config.classes)
    train_images, train_labels, test_images, test_labels = _test_part(
        config, resolved, train_images, train_labels, test_images, test_labels)
    if not config.validation_size < len(train_labels):
        raise DataError(
            f"data.validation_size={config.validation_size} leaves no training images: source "
            f"'{resolved}' has {len(train_labels)}; choose a smaller data.validation_size"
        )
    train_indices, validation_indices = stratified_split(
        train_labels, config.validation_size, config.split_seed
    )
    if config.train_fraction < 1.0:
        keep = max(1, round(config.train_fraction * len(train_indices)))
        subset_rng = _generator(config.split_seed, 1)
        train_indices = train_indices[
            _stratified_choice(train_labels[train_indices], keep, subset_rng)
        ]
    order_rng = _generator(config.split_seed, 2)
    train_indices = order_rng.permutation(train_indices)
    validation_indices = order_rng.permutation(validation_indices)
    test_indices = order_rng.permutation(len(test_labels))
    return Splits(
        train_images=np.ascontiguousarray(train_images[train_indices]),
        train_labels=train_labels[train_indices],
        validation_images=np.ascontiguousarray(train_images[validation_indices]),
        validation_labels=train_labels[validation_indices],
        test_images=np.ascontiguousarray(test_images[test_indices]),
        test_labels=test_labels[test_indices],
        source=resolved,
        class_names=class_names,
    )


def _kept_classes(images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...],
                  keep: tuple[str, ...], resolved: str) -> tuple[np.ndarray, np.ndarray]:
    """The images of the classes `keep`, relabelled 0..len(keep)-1 in that order."""
    unknown = [name for name in keep if name not in class_names]
    if unknown:
        raise DataError(f"data.classes names {unknown}, which source '{resolved}' does not "
                        f"have; its classes are {list(class_names)}")
    mapping = np.full(len(class_names), -1, np.int64)
    for new, name in enumerate(keep):
        mapping[class_names.index(name)] = new
    relabelled = mapping[labels]
    kept = relabelled >= 0
    return images[kept], relabelled[kept]


def _test_part(config: DataConfig, resolved: str, train_images: np.ndarray,
               train_labels: np.ndarray, test_images: np.ndarray, test_labels: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The source's own test part, or `data.test_size` images held out of a source without one
    (stratified, seeded by `data.split_seed`, before the validation split)."""
    if len(test_labels) and config.test_size:
        raise DataError(f"source '{resolved}' has its own test split ({len(test_labels)} "
                        "images); remove data.test_size, which only applies to a source "
                        "without one")
    if len(test_labels):
        return train_images, train_labels, test_images, test_labels
    if not config.test_size:
        raise DataError(f"source '{resolved}' has no test split; set data.test_size: N to hold "
                        f"N of its {len(train_labels)} training images out for testing")
    if not config.test_size < len(train_labels):
        raise DataError(f"data.test_size={config.test_size} leaves no training images: source "
                        f"'{resolved}' has {len(train_labels)}")
    chosen = _stratified_choice(train_labels, config.test_size,
                                _generator(config.split_seed, 3))
    held_out = np.zeros(len(train_labels), dtype=bool)
    held_out[chosen] = True
    return (train_images[~held_out], train_labels[~held_out], train_images[held_out],
            train_labels[held_out])

