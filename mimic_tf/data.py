"""CIFAR-10 for mimic-tf: loading, the 40k/10k/10k splits, the paper's augmentation, tf.data.

Sources (a `source` string, `DataConfig.source`):

- `tfds:cifar10`: TensorFlow Datasets (downloads where the network allows).
- `folder:PATH`: an ImageFolder tree `PATH/{train,test}/<label>/*.jpg`, or a `.tar.gz` of one
  (such as the shared `cifar10-jpeg.tar.gz`). An archive is unpacked once into the cache
  folder (`$MIMIC_TF_CACHE`, default `~/.cache/mimic-tf`); decoded pixels are cached there too,
  so only the first load decodes the 60,000 JPEGs.
- `synthetic`: small class-dependent images made in memory (tests, smoke runs).
- `auto`: a prepared TFDS copy, else `$MIMIC_TF_DATA`, else `../shared/data/cifar10-jpeg.tar.gz`
  next to the checkout, else a TFDS download; `DataError` says how to provide data otherwise.

Images stay raw uint8 `[N, 32, 32, 3]` everywhere: models standardise them themselves.

Augmentation (Urban et al. 2017, section 2): HSV jitter, left-right flip with p = 0.5 and a
random square crop resized back to 32x32. View `k` of example `i` is a pure function of
`(AugmentConfig.seed, i, k)`, bit-identical whatever batch it is computed in.

    splits = load_splits(DataConfig(source="auto"))
    train = training_dataset(splits.train_images, splits.train_labels, batch_size=128,
                             augment_config=AugmentConfig(), shuffle_seed=0)
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

from mimic_tf.config import AugmentConfig, DataConfig

CLASS_NAMES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 10

ARCHIVE_NAME = "cifar10-jpeg.tar.gz"  # the shared JPEG copy of CIFAR-10 (shared/data/README.md)
DATA_ENV = "MIMIC_TF_DATA"  # path of an archive or ImageFolder tree to use for source=auto
CACHE_ENV = "MIMIC_TF_CACHE"  # where archives are unpacked and decoded pixels cached
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
SYNTHETIC_SEED = 0  # synthetic images do not depend on the split seed
DECODER_VERSION = "tf-jpeg-accurate-1"  # part of the decoded-cache key: bump to re-decode

RawArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class DataError(RuntimeError):
    """Data that is missing or malformed; the message says how to provide it."""


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class Splits:
    """The train / validation / test splits as uint8 images and int64 labels, in memory."""

    train_images: np.ndarray  # uint8 [N_train, 32, 32, 3]
    train_labels: np.ndarray  # int64 [N_train]
    validation_images: np.ndarray
    validation_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: str  # where the images came from, e.g. "folder:/.../cifar10-jpeg.tar.gz"

    ARRAY_NAMES = (
        "train_images", "train_labels", "validation_images", "validation_labels",
        "test_images", "test_labels",
    )

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


def default_cache_dir() -> Path:
    """`$MIMIC_TF_CACHE`, or `~/.cache/mimic-tf`: unpacked archives and decoded pixels."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "mimic-tf"


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
    `config.source`; `cache_dir` overrides `default_cache_dir()`.
    """
    config = config or DataConfig()
    if source is not None:
        config = dataclasses.replace(config, source=source)
    config.validate()
    (train_images, train_labels, test_images, test_labels), resolved = _load_raw_resolved(
        config.source, cache_dir, config
    )
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
    )


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


def load_raw(
    source: str,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    config: DataConfig | None = None,
) -> RawArrays:
    """`(train_images, train_labels, test_images, test_labels)` of a source, before splitting.

    Images uint8 `[N, 32, 32, 3]`, labels int64 `[N]` (50,000 / 10,000 for CIFAR-10).
    `config` only sizes `synthetic` (see `make_synthetic`).
    """
    arrays, _ = _load_raw_resolved(source, cache_dir, config or DataConfig())
    return arrays


def _load_raw_resolved(
    source: str, cache_dir: str | os.PathLike[str] | None, config: DataConfig
) -> tuple[RawArrays, str]:
    """The source's arrays and a description of where they came from."""
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if source == "synthetic":
        arrays = make_synthetic(config.synthetic_examples + config.validation_size,
                                config.synthetic_examples)
        return arrays, "synthetic"
    if source == "tfds:cifar10":
        return _load_tfds(data_dir=None, download=True), "tfds:cifar10"
    if source.startswith("folder:"):
        path = Path(source.removeprefix("folder:")).expanduser().absolute()
        return _load_folder_source(path, cache), f"folder:{path}"
    if source == "auto":
        return _load_auto(cache)
    raise DataError(
        f"unknown data source {source!r}; use 'auto', 'tfds:cifar10', 'folder:PATH' "
        f"(an ImageFolder tree or a .tar.gz of one) or 'synthetic'"
    )


def _how_to_provide_data() -> str:
    return (
        "Provide CIFAR-10 in one of these ways:\n"
        f"  1. export {DATA_ENV}=/path/to/{ARCHIVE_NAME} (or an unpacked ImageFolder tree "
        "with train/<label>/*.jpg and test/<label>/*.jpg);\n"
        f"  2. pass --data folder:/path/to/{ARCHIVE_NAME} (data.source=folder:PATH);\n"
        f"  3. put {ARCHIVE_NAME} in shared/data/ beside the repository checkout "
        "(../shared/data/ from the repository root);\n"
        "  4. where the network allows, run `tfds build cifar10` (or use --data tfds:cifar10);\n"
        "  5. for tests and smoke runs only, --data synthetic."
    )


def _load_auto(cache: Path) -> tuple[RawArrays, str]:
    """Try a prepared TFDS copy, $MIMIC_TF_DATA, the shared archive, then a TFDS download."""
    prepared = _prepared_tfds_dir()
    if prepared is not None:
        return _load_tfds(data_dir=prepared, download=False), "tfds:cifar10"
    configured = os.environ.get(DATA_ENV)
    if configured:
        path = Path(configured).expanduser().absolute()
        if not path.exists():
            raise DataError(
                f"{DATA_ENV}={configured} does not exist; point it at {ARCHIVE_NAME} or an "
                f"ImageFolder tree, or unset it.\n{_how_to_provide_data()}"
            )
        return _load_folder_source(path, cache), f"folder:{path}"
    for candidate in _archive_candidates():
        if candidate.is_file():
            return _load_folder_source(candidate, cache), f"folder:{candidate}"
    try:
        return _load_tfds(data_dir=None, download=True), "tfds:cifar10"
    except DataError as error:
        raise DataError(
            f"no CIFAR-10 found: no prepared TFDS copy, {DATA_ENV} unset, no {ARCHIVE_NAME} "
            f"at {', '.join(str(path) for path in _archive_candidates()) or '(no candidates)'}, "
            f"and the TFDS download failed ({error.__cause__ or error}).\n"
            f"{_how_to_provide_data()}"
        ) from error


def _archive_candidates() -> list[Path]:
    """Where `auto` looks for the shared archive: beside the checkout, then above the CWD."""
    relative = Path("shared") / "data" / ARCHIVE_NAME
    candidates = [Path(__file__).resolve().parents[2] / relative]
    working = Path.cwd().absolute()
    candidates += [directory / relative for directory in (working, *working.parents)]
    return list(dict.fromkeys(candidates))


def _tfds_data_dirs() -> list[Path]:
    configured = os.environ.get("TFDS_DATA_DIR")
    roots = [Path(configured).expanduser()] if configured else []
    return [*roots, Path.home() / "tensorflow_datasets"]


def _prepared_tfds_dir() -> str | None:
    """A TFDS data dir holding a prepared cifar10, found without downloading anything."""
    for root in _tfds_data_dirs():
        if not any((root / "cifar10").glob("*/dataset_info.json")):
            continue  # cheap check first: importing tensorflow_datasets takes seconds
        import tensorflow_datasets as tfds

        try:
            if tfds.builder("cifar10", data_dir=str(root)).is_prepared():
                return str(root)
        except Exception:  # a broken copy is skipped, not fatal
            continue
    return None


def _load_tfds(data_dir: str | None, download: bool) -> RawArrays:
    """cifar10 through tensorflow_datasets as numpy; any failure becomes a DataError."""
    try:
        import tensorflow_datasets as tfds

        train, test = tfds.load(
            "cifar10", split=["train", "test"], batch_size=-1, as_supervised=True,
            data_dir=data_dir, download=download,
        )
        (train_images, train_labels), (test_images, test_labels) = tfds.as_numpy((train, test))
    except Exception as error:  # network, disk and TFDS errors all end here
        raise DataError(
            f"tensorflow_datasets could not load cifar10 ({type(error).__name__}: {error}).\n"
            f"{_how_to_provide_data()}"
        ) from error
    return (
        _checked_images(np.asarray(train_images, dtype=np.uint8), "tfds:cifar10 train"),
        np.asarray(train_labels, dtype=np.int64),
        _checked_images(np.asarray(test_images, dtype=np.uint8), "tfds:cifar10 test"),
        np.asarray(test_labels, dtype=np.int64),
    )


def _checked_images(images: np.ndarray, where: str) -> np.ndarray:
    if images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
        raise DataError(f"{where}: images have shape {images.shape}, expected [N, 32, 32, 3]")
    return images


# ----- folder:PATH ---------------------------------------------------------------------------


def _load_folder_source(path: Path, cache: Path) -> RawArrays:
    """An ImageFolder tree or an archive of one, decoded once and cached."""
    if not path.exists():
        raise DataError(
            f"data path '{path}' does not exist. folder:PATH needs an ImageFolder tree "
            f"(PATH/train/<label>/*.jpg and PATH/test/<label>/*.jpg) or a .tar.gz of one, "
            f"e.g. folder:/path/to/{ARCHIVE_NAME}.\n{_how_to_provide_data()}"
        )
    if path.is_file():
        if not path.name.endswith(ARCHIVE_SUFFIXES):
            raise DataError(
                f"data path '{path}' is a file but not an archive ({', '.join(ARCHIVE_SUFFIXES)})"
                f"; pass an ImageFolder tree or a .tar.gz of one"
            )
        decoded_dir = _unpacked_archive(path, cache)
        root = _find_tree_root(decoded_dir, described_as=f"archive '{path}'")
    else:
        root = _find_tree_root(path, described_as=f"folder '{path}'")
        key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]
        decoded_dir = cache / "decoded" / f"{root.name}-{key}"
    class_names, entries = _list_tree(root)
    listing = hashlib.sha256(DECODER_VERSION.encode())
    listing.update("\n".join(class_names).encode())
    for relative, label, size, mtime in entries:
        listing.update(f"\n{relative}\t{label}\t{size}\t{mtime}".encode())
    cache_file = decoded_dir / f"decoded-{listing.hexdigest()[:16]}.npz"
    cached = _read_decoded_cache(cache_file)
    if cached is not None:
        return cached
    images = _decode_images([str(root / relative) for relative, _, _, _ in entries])
    labels = np.asarray([label for _, label, _, _ in entries], dtype=np.int64)
    is_train = np.asarray([relative.startswith("train/") for relative, _, _, _ in entries])
    arrays = (images[is_train], labels[is_train], images[~is_train], labels[~is_train])
    _write_decoded_cache(cache_file, arrays)
    return arrays


def _unpacked_archive(archive: Path, cache: Path) -> Path:
    """The folder the archive is unpacked in, unpacking it first if no earlier run did.

    Keyed by the archive's path, size and mtime. Unpacked into a temporary sibling and renamed
    into place, so an interrupted unpack is never mistaken for a complete one.
    """
    status = archive.stat()
    key = hashlib.sha256(
        f"{archive.resolve()}\0{status.st_size}\0{status.st_mtime_ns}".encode()
    ).hexdigest()[:12]
    stem = archive.name
    for suffix in ARCHIVE_SUFFIXES:
        stem = stem.removesuffix(suffix)
    target = cache / f"{stem}-{key}"
    if target.is_dir():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=cache, prefix=f".{target.name}.unpacking-"))
    try:
        _unpack_archive(archive, temporary)
        os.rename(temporary, target)
    except OSError:
        shutil.rmtree(temporary, ignore_errors=True)
        if target.is_dir():  # another process finished first: use its copy
            return target
        raise
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return target


def _unpack_archive(archive: Path, destination: Path) -> None:
    """Extract every member of a tar archive under `destination` (no links out of it)."""
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(destination, filter="data")
    except (tarfile.TarError, EOFError, OSError) as error:
        raise DataError(
            f"cannot unpack '{archive}' ({type(error).__name__}: {error}); is it a complete "
            f".tar.gz? Copy {ARCHIVE_NAME} again or pass an unpacked folder as folder:PATH"
        ) from error


def _find_tree_root(path: Path, described_as: str) -> Path:
    """The folder holding `train/` and `test/`: `path` itself or one or two levels below."""
    levels = [[path]]
    for _ in range(2):
        levels.append(sorted(child for parent in levels[-1] if parent.is_dir()
                             for child in parent.iterdir() if child.is_dir()))
    for level in levels:
        roots = [folder for folder in level
                 if (folder / "train").is_dir() and (folder / "test").is_dir()]
        if len(roots) == 1:
            return roots[0]
        if len(roots) > 1:
            raise DataError(
                f"{described_as} holds several train/ + test/ trees ({', '.join(map(str, roots))})"
                f"; pass the one to use as folder:PATH"
            )
    raise DataError(
        f"{described_as} has no ImageFolder tree: expected train/<label>/*.jpg and "
        f"test/<label>/*.jpg at its top or one or two levels down"
    )


def _list_tree(root: Path) -> tuple[list[str], list[tuple[str, int, int, int]]]:
    """Class names (sorted folder names) and `(relative path, label, size, mtime_ns)` per image.

    Train images first, then test; within a split by label, then by file name.
    """
    class_names = sorted(entry.name for entry in (root / "train").iterdir() if entry.is_dir())
    test_names = sorted(entry.name for entry in (root / "test").iterdir() if entry.is_dir())
    if not class_names or class_names != test_names:
        raise DataError(
            f"ImageFolder tree '{root}': train/ and test/ must hold the same label folders; "
            f"train has {class_names}, test has {test_names}"
        )
    entries = []
    for split in ("train", "test"):
        for label, name in enumerate(class_names):
            with os.scandir(root / split / name) as scan:
                files = sorted(
                    (entry for entry in scan
                     if entry.is_file() and entry.name.lower().endswith(IMAGE_SUFFIXES)),
                    key=lambda entry: entry.name,
                )
            for entry in files:
                status = entry.stat()
                entries.append(
                    (f"{split}/{name}/{entry.name}", label, status.st_size, status.st_mtime_ns)
                )
        if not any(relative.startswith(f"{split}/") for relative, _, _, _ in entries):
            raise DataError(
                f"ImageFolder tree '{root}': {split}/ holds no images "
                f"({', '.join(IMAGE_SUFFIXES)})"
            )
    return class_names, entries


def _decode_images(paths: Sequence[str]) -> np.ndarray:
    """Decode image files to uint8 `[N, 32, 32, 3]` in parallel; DataError names a bad file.

    JPEGs are decoded with the accurate integer IDCT (as PIL does), other formats by
    `tf.io.decode_image`.
    """

    def decode(path):
        contents = tf.io.read_file(path)
        image = tf.cond(
            tf.io.is_jpeg(contents),
            # TF's default JPEG IDCT (INTEGER_FAST) shifts channel means by about 1; the
            # accurate one matches PIL and libjpeg's defaults bit for bit.
            lambda: tf.io.decode_jpeg(contents, dct_method="INTEGER_ACCURATE"),
            lambda: tf.io.decode_image(contents, expand_animations=False),
        )
        shape = tf.shape(image)
        good = tf.reduce_all(tf.equal(shape, IMAGE_SHAPE))
        image = tf.cond(
            good, lambda: tf.reshape(image, IMAGE_SHAPE), lambda: tf.zeros(IMAGE_SHAPE, tf.uint8)
        )
        return image, shape

    dataset = (
        tf.data.Dataset.from_tensor_slices(list(paths))
        .map(decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .batch(4096)
    )
    images, shapes = [], []
    try:
        for batch_images, batch_shapes in dataset:
            images.append(batch_images.numpy())
            shapes.append(batch_shapes.numpy())
    except tf.errors.OpError:
        for path in paths:  # slow path, only to name the file that cannot be decoded
            try:
                tf.io.decode_image(tf.io.read_file(path), expand_animations=False)
            except tf.errors.OpError as error:
                raise DataError(
                    f"cannot decode image '{path}' ({error.message}); replace or remove it"
                ) from error
        raise
    shapes = np.concatenate(shapes)
    bad = np.flatnonzero(np.any(shapes != IMAGE_SHAPE, axis=1))
    if len(bad):
        raise DataError(
            f"image '{paths[bad[0]]}' has shape {tuple(shapes[bad[0]].tolist())}, expected "
            f"{IMAGE_SHAPE} ({len(bad)} such images); CIFAR-10 images are 32x32 RGB"
        )
    return np.concatenate(images)


_CACHE_KEYS = ("train_images", "train_labels", "test_images", "test_labels")


def _read_decoded_cache(path: Path) -> RawArrays | None:
    """The cached arrays, or None when there is no usable cache (then decode again)."""
    if not path.is_file():
        return None
    try:
        with np.load(path) as stored:
            arrays = tuple(stored[key] for key in _CACHE_KEYS)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None
    train_images, train_labels, test_images, test_labels = arrays
    for images, labels in ((train_images, train_labels), (test_images, test_labels)):
        if (images.dtype != np.uint8 or images.shape[1:] != IMAGE_SHAPE
                or labels.dtype != np.int64 or labels.shape != images.shape[:1]):
            return None
    return train_images, train_labels, test_images, test_labels


def _write_decoded_cache(path: Path, arrays: RawArrays) -> None:
    """Write through a temporary file and a rename; remove older caches of the same tree."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz")
    try:
        with os.fdopen(handle, "wb") as stream:
            np.savez(stream, **dict(zip(_CACHE_KEYS, arrays, strict=True)))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    for stale in path.parent.glob("decoded-*.npz"):
        if stale != path:
            stale.unlink(missing_ok=True)


# ----- synthetic -----------------------------------------------------------------------------


def make_synthetic(
    num_train: int, num_test: int, seed: int = SYNTHETIC_SEED
) -> RawArrays:
    """Class-dependent 32x32 images a small model learns in a few epochs.

    Class `c` has its own mean colour and stripes at angle `c * 18` degrees with a random phase,
    plus uniform pixel noise in [-40, 40]. Labels are balanced (round robin, then shuffled).
    Deterministic in `seed`; train and test images are different draws.
    """
    return (*_synthetic_split(num_train, (seed, 0)), *_synthetic_split(num_test, (seed, 1)))


def _synthetic_split(count: int, seed: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(count) % NUM_CLASSES).astype(np.int64)
    hues = np.arange(NUM_CLASSES) / NUM_CLASSES
    colours = 128 + 70 * np.stack(  # one distinct colour per class around mid grey
        [np.cos(2 * np.pi * (hues + shift)) for shift in (0.0, 1 / 3, 2 / 3)], axis=1
    )
    angles = np.pi * np.arange(NUM_CLASSES) / NUM_CLASSES
    rows, columns = np.meshgrid(np.arange(32, dtype=np.float32), np.arange(32, dtype=np.float32),
                                indexing="ij")
    phase = rng.uniform(0, 2 * np.pi, size=(count, 1, 1)).astype(np.float32)
    along = (np.cos(angles[labels])[:, None, None] * columns
             + np.sin(angles[labels])[:, None, None] * rows).astype(np.float32)
    stripes = np.float32(40) * np.sin(np.float32(2 * np.pi / 8) * along + phase)
    images = stripes[..., None] + colours[labels][:, None, None, :].astype(np.float32)
    images += rng.integers(-40, 41, size=images.shape, dtype=np.int8)  # uniform pixel noise
    np.clip(images, 0, 255, out=images)
    return images.astype(np.uint8), labels


# --------------------------------------------------------------------------------------------
# Augmentation
# --------------------------------------------------------------------------------------------

_NUM_DRAWS = 9  # flip, crop side, crop row, crop column, hue, sat scale, sat shift, val scale/shift


def augment(
    images: tf.Tensor,
    example_indices: tf.Tensor,
    view_indices: tf.Tensor | int,
    config: AugmentConfig,
) -> tf.Tensor:
    """View `view_indices[b]` of example `example_indices[b]`: the paper's augmentation.

    In order, per image (Urban et al. 2017, section 2):

    1. HSV jitter, hue in [0, 1): `hue = (hue + U(-Dh, Dh)) mod 1`,
       `sat = clip(sat * U(1/(1+As), 1+As) + U(-Ds, Ds), 0, 1)`,
       `val = clip(val * U(1/(1+Av), 1+Av) + U(-Dv, Dv), 0, 1)`.
    2. Left-right flip with p = 0.5 (if `config.flip`).
    3. A square crop of side `S ~ U{crop_min..crop_max}` at a uniform position, resized back to
       32x32 with bilinear interpolation (half-pixel centres, as `tf.image.resize` on the
       crop). Deviation: the paper resized with a cubic spline.

    The nine random numbers of an image come from `tf.random.stateless_uniform` (Philox) seeded
    with `fold_in((config.seed, example index), view index)`, so view `k` of image `i` is
    bit-identical however it is batched. Runs XLA-compiled on the CPU (one compile per batch
    size), also on GPU machines: GPU kernels (TF32 matmuls) would give other pixels.

    Args:
        images: uint8 `[B, 32, 32, 3]`.
        example_indices: integer `[B]`, the images' indices in their dataset.
        view_indices: integer `[B]` or a scalar for the whole batch: the augmentation epoch.
        config: the augmentation constants and seed.

    Returns:
        uint8 `[B, 32, 32, 3]`.
    """
    images = tf.convert_to_tensor(images)
    if images.dtype != tf.uint8 or not images.shape.is_compatible_with([None, *IMAGE_SHAPE]):
        raise ValueError(
            f"augment expects uint8 images [B, 32, 32, 3], got {images.dtype.name} "
            f"{images.shape}"
        )
    images = tf.ensure_shape(images, [None, *IMAGE_SHAPE])
    example_indices = tf.cast(tf.convert_to_tensor(example_indices), tf.int64)
    view_indices = tf.broadcast_to(
        tf.cast(tf.convert_to_tensor(view_indices), tf.int64), tf.shape(example_indices)
    )
    with tf.device("/device:CPU:0"):  # one code path (XLA:CPU) wherever it is called from
        return _compiled_augment(config)(images, example_indices, view_indices)


@functools.lru_cache(maxsize=64)
def _compiled_augment(config: AugmentConfig) -> Callable[..., tf.Tensor]:
    """The XLA-compiled augmentation for one config (configs are frozen, hence hashable)."""
    config.validate()
    do_hsv = any((config.hue_shift, config.saturation_shift, config.value_shift,
                  config.saturation_scale, config.value_scale))
    do_geometry = config.flip or config.crop_min < IMAGE_SHAPE[0]

    @tf.function(
        jit_compile=True,
        input_signature=[
            tf.TensorSpec([None, *IMAGE_SHAPE], tf.uint8),
            tf.TensorSpec([None], tf.int64),
            tf.TensorSpec([None], tf.int64),
        ],
    )
    def augment_batch(images, example_indices, view_indices):
        if not (do_hsv or do_geometry):
            return images
        draws = _example_uniforms(config.seed, example_indices, view_indices)
        pixels = tf.cast(images, tf.float32) * (1.0 / 255.0)
        if do_hsv:
            pixels = _jitter_hsv(pixels, draws, config)
        if do_geometry:
            pixels = _flip_and_crop(pixels, draws, config)
        return tf.cast(tf.clip_by_value(tf.round(pixels * 255.0), 0.0, 255.0), tf.uint8)

    return augment_batch


def _example_uniforms(seed: int, example_indices: tf.Tensor, view_indices: tf.Tensor):
    """`[B, 9]` uniforms in [0, 1): a stateless Philox stream per (seed, example, view)."""
    base_seeds = tf.stack(
        [tf.fill(tf.shape(example_indices), tf.constant(seed, tf.int64)), example_indices], axis=1
    )

    def draw(seed_and_view):
        base_seed, view = seed_and_view
        example_seed = tf.random.experimental.stateless_fold_in(base_seed, view, alg="philox")
        return tf.random.stateless_uniform([_NUM_DRAWS], seed=example_seed, alg="philox")

    return tf.map_fn(draw, (base_seeds, view_indices), fn_output_signature=tf.float32)


def _symmetric(draw: tf.Tensor, half_width: float) -> tf.Tensor:
    """U(-half_width, half_width) from U(0, 1), shaped to broadcast over [B, H, W]."""
    return ((2.0 * draw - 1.0) * half_width)[:, None, None]


def _scale(draw: tf.Tensor, amount: float) -> tf.Tensor:
    """U(1 / (1 + amount), 1 + amount) from U(0, 1), shaped to broadcast over [B, H, W]."""
    low, high = 1.0 / (1.0 + amount), 1.0 + amount
    return (low + draw * (high - low))[:, None, None]


def _jitter_hsv(pixels: tf.Tensor, draws: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """Shift hue (wrapping), scale and shift saturation and value (clipped to [0, 1])."""
    hue, saturation, value = tf.unstack(tf.image.rgb_to_hsv(pixels), axis=-1)
    hue = tf.math.floormod(hue + _symmetric(draws[:, 4], config.hue_shift), 1.0)
    saturation = tf.clip_by_value(
        saturation * _scale(draws[:, 5], config.saturation_scale)
        + _symmetric(draws[:, 6], config.saturation_shift), 0.0, 1.0,
    )
    value = tf.clip_by_value(
        value * _scale(draws[:, 7], config.value_scale)
        + _symmetric(draws[:, 8], config.value_shift), 0.0, 1.0,
    )
    return tf.image.hsv_to_rgb(tf.stack([hue, saturation, value], axis=-1))


def _flip_and_crop(pixels: tf.Tensor, draws: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """Flip left-right with p = 0.5, crop an S x S square, resize it to 32x32 (bilinear).

    Bilinear resizing is separable: `out = R_rows @ image @ R_columns^T` with per-image `[32, 32]`
    interpolation matrices; a flip reverses the rows of `R_columns`. Two batched matmuls, which
    XLA compiles well (tf.image.crop_and_resize has no XLA kernel).
    """
    size = IMAGE_SHAPE[0]
    side_choices = config.crop_max - config.crop_min + 1
    side = config.crop_min + tf.minimum(tf.floor(draws[:, 1] * side_choices), side_choices - 1)
    top = tf.minimum(tf.floor(draws[:, 2] * (size + 1 - side)), size - side)
    left = tf.minimum(tf.floor(draws[:, 3] * (size + 1 - side)), size - side)
    row_weights = _resize_matrix(top, side, size)
    column_weights = _resize_matrix(left, side, size)
    if config.flip:
        flipped = draws[:, 0] < 0.5
        column_weights = tf.where(
            flipped[:, None, None], tf.reverse(column_weights, axis=[1]), column_weights
        )
    pixels = tf.einsum("boy,byxc->boxc", row_weights, pixels)
    return tf.einsum("bpx,boxc->bopc", column_weights, pixels)


def _resize_matrix(start: tf.Tensor, side: tf.Tensor, size: int) -> tf.Tensor:
    """`[B, size, size]` weights: output pixel o samples source pixels [start, start + side)."""
    outputs = tf.range(size, dtype=tf.float32)[None, :]
    start, side = start[:, None], side[:, None]
    position = start + (outputs + 0.5) * side / size - 0.5  # half-pixel centres
    position = tf.clip_by_value(position, start, start + side - 1.0)
    lower = tf.floor(position)
    fraction = position - lower
    upper = tf.minimum(lower + 1.0, start + side - 1.0)
    return (tf.one_hot(tf.cast(lower, tf.int32), size) * (1.0 - fraction)[..., None]
            + tf.one_hot(tf.cast(upper, tf.int32), size) * fraction[..., None])


# --------------------------------------------------------------------------------------------
# tf.data pipelines
# --------------------------------------------------------------------------------------------


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Batches in one pass over `num_examples` (the last one may be smaller)."""
    if num_examples < 1 or batch_size < 1:
        raise ValueError(
            f"num_examples and batch_size must be >= 1, got {num_examples} and {batch_size}"
        )
    return -(-num_examples // batch_size)


def _checked_arrays(images: np.ndarray, labels: np.ndarray) -> tuple[tf.Tensor, tf.Tensor]:
    images, labels = np.asarray(images), np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"images must be uint8 [N, 32, 32, 3], got {images.dtype} {images.shape}")
    if labels.shape != (len(images),):
        raise ValueError(f"labels must have shape [{len(images)}], got {labels.shape}")
    if len(images) == 0:
        raise ValueError("no images")
    return tf.convert_to_tensor(images), tf.convert_to_tensor(labels.astype(np.int64))


def training_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    augment_config: AugmentConfig | None,
    shuffle_seed: int,
    first_view: int = 0,
) -> tf.data.Dataset:
    """Infinite `(uint8 images [B, 32, 32, 3], int64 labels [B])` batches, epoch after epoch.

    Epoch `e` visits every example once, in a permutation seeded by `(shuffle_seed, e)`, in
    `steps_per_epoch(N, batch_size)` batches (the last may be smaller), showing augmented view
    `first_view + e` of each image (`augment`, example index = row in `images`). With
    `augment_config=None` images are passed through unchanged. Deterministic: two datasets
    built with the same arguments yield the same batches.
    """
    image_tensor, label_tensor = _checked_arrays(images, labels)

    def make_batch(example_indices, epoch, step):
        batch_images = tf.gather(image_tensor, example_indices)
        if augment_config is not None:
            view = epoch + first_view
            batch_images = augment(batch_images, example_indices, view, augment_config)
        return batch_images, tf.gather(label_tensor, example_indices)

    return (
        shuffled_epoch_batches(int(image_tensor.shape[0]), batch_size, shuffle_seed)
        .map(make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def shuffled_epoch_batches(num_examples: int, batch_size: int, seed: int) -> tf.data.Dataset:
    """Infinite `(example indices [B], epoch, step)`: epoch after epoch, batch after batch.

    Epoch `e` visits `range(num_examples)` once in a permutation seeded by `(seed, e)`
    (stateless Philox), in `steps_per_epoch(num_examples, batch_size)` batches, the last one
    possibly smaller. The order every training pipeline here shares.
    """
    steps = steps_per_epoch(num_examples, batch_size)

    def batches_of_epoch(epoch):
        order = tf.random.experimental.stateless_shuffle(
            tf.range(num_examples, dtype=tf.int64),
            seed=tf.stack([tf.constant(seed, tf.int64), epoch]),
            alg="philox",
        )
        return tf.data.Dataset.range(steps).map(
            lambda step: (order[step * batch_size:(step + 1) * batch_size], epoch, step)
        )

    return tf.data.Dataset.counter(dtype=tf.int64).flat_map(batches_of_epoch)


def evaluation_dataset(
    images: np.ndarray, labels: np.ndarray, *, batch_size: int
) -> tf.data.Dataset:
    """`(uint8 images, int64 labels)` batches in order, one pass, unaugmented."""
    image_tensor, label_tensor = _checked_arrays(images, labels)
    steps = steps_per_epoch(int(image_tensor.shape[0]), batch_size)

    def make_batch(step):
        start = step * batch_size
        return image_tensor[start:start + batch_size], label_tensor[start:start + batch_size]

    return tf.data.Dataset.range(steps).map(make_batch).prefetch(tf.data.AUTOTUNE)
