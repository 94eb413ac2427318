"""Where the images come from: TFDS, an ImageFolder tree or archive of one, or synthetic images.

A `source` string (`DataConfig.source`) names it:

- `tfds:NAME`: any TensorFlow Datasets image classification dataset (an image feature and a
  class-label feature), from a prepared copy (`$TFDS_DATA_DIR` or `~/tensorflow_datasets`)
  or downloaded where the network allows; `tfds:cifar10` is the paper's.
- `folder:PATH`: an ImageFolder tree `PATH/{train,test}/<label>/*.jpg` (any number of label
  folders; `test/` optional), or a `.tar.gz` of one (such as the shared `cifar10-jpeg.tar.gz`).
  An archive is unpacked once into the cache folder (`$MIMIC_TF_CACHE`, default
  `~/.cache/mimic-tf`); decoded pixels are cached there too (`decoded-<key>.npz`, keyed by the
  tree's listing, `DECODER_VERSION` and the resize), so only the first load decodes.
- `synthetic`: small class-dependent CIFAR-shaped images made in memory (tests, smoke runs).
- `auto`: a prepared TFDS cifar10, else `$MIMIC_TF_DATA`, else
  `../shared/data/cifar10-jpeg.tar.gz` next to the checkout, else a TFDS download; `DataError`
  says how to provide data otherwise.

Every source gives raw uint8 images `[N, H, W, C]` (C = 1 for grayscale, 3 for colour) and
int64 labels, train and test (test empty when the source has none), before any splitting
(`splits.load_splits` splits them), and its class names. Images of different sizes need
`data.image_size` (every image is resized to it); otherwise the first image sets the size.

    source = load_source("folder:cifar10-jpeg.tar.gz")
    train_images, train_labels, test_images, test_labels = source.arrays
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from mimic_tf.config import DataConfig
from mimic_tf.files import atomic_path
from mimic_tf.vocabulary import CLASS_NAMES, NUM_CLASSES  # noqa: F401 - re-exported by data

IMAGE_SHAPE = (32, 32, 3)  # CIFAR-10's (synthetic images too)

ARCHIVE_NAME = "cifar10-jpeg.tar.gz"  # the shared JPEG copy of CIFAR-10 (shared/data/README.md)
DATA_ENV = "MIMIC_TF_DATA"  # path of an archive or ImageFolder tree to use for source=auto
CACHE_ENV = "MIMIC_TF_CACHE"  # where archives are unpacked and decoded pixels cached
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
SYNTHETIC_SEED = 0  # synthetic images do not depend on the split seed
DECODER_VERSION = "tf-jpeg-accurate-1"  # part of the decoded-cache key: bump to re-decode

RawArrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


class SourceData(NamedTuple):
    """A loaded source: its arrays, where they came from, and the class names (label order)."""

    arrays: RawArrays  # train images, train labels, test images, test labels
    resolved: str  # e.g. "folder:/.../cifar10-jpeg.tar.gz" or "tfds:mnist"
    class_names: tuple[str, ...]


class DataError(RuntimeError):
    """Data that is missing or malformed; the message says how to provide it."""


def default_cache_dir() -> Path:
    """`$MIMIC_TF_CACHE`, or `~/.cache/mimic-tf`: unpacked archives and decoded pixels."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "mimic-tf"


def load_raw(
    source: str,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    config: DataConfig | None = None,
) -> RawArrays:
    """`(train_images, train_labels, test_images, test_labels)` of a source, before splitting.

    Images uint8 `[N, H, W, C]`, labels int64 `[N]` (50,000 / 10,000 32x32x3 for CIFAR-10).
    `config` sizes `synthetic` (see `make_synthetic`) and sets `image_size`.
    """
    return load_source(source, cache_dir, config=config).arrays


def load_source(
    source: str,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    config: DataConfig | None = None,
) -> SourceData:
    """`load_raw`'s arrays, where they came from and the class names."""
    config = config or DataConfig()
    image_size = tuple(config.image_size) or None
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if source == "synthetic":
        arrays = make_synthetic(config.synthetic_examples + config.validation_size,
                                config.synthetic_examples)
        return SourceData(arrays, "synthetic", CLASS_NAMES)
    if source.startswith("tfds:"):
        name = source.removeprefix("tfds:")
        return _tfds_source(name, None, True, image_size)
    if source.startswith("folder:"):
        path = Path(source.removeprefix("folder:")).expanduser().absolute()
        return _folder_source(path, cache, image_size)
    if source == "auto":
        return _load_auto(cache, image_size)
    raise DataError(
        f"unknown data source {source!r}; use 'auto', 'tfds:NAME' (e.g. tfds:cifar10), "
        "'folder:PATH' (an ImageFolder tree or a .tar.gz of one) or 'synthetic'"
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


def _load_auto(cache: Path, image_size: tuple[int, int] | None) -> SourceData:
    """Try a prepared TFDS copy, $MIMIC_TF_DATA, the shared archive, then a TFDS download."""
    prepared = _prepared_tfds_dir("cifar10")
    if prepared is not None:
        return _tfds_source("cifar10", prepared, False, image_size)
    configured = os.environ.get(DATA_ENV)
    if configured:
        path = Path(configured).expanduser().absolute()
        if not path.exists():
            raise DataError(
                f"{DATA_ENV}={configured} does not exist; point it at {ARCHIVE_NAME} or an "
                f"ImageFolder tree, or unset it.\n{_how_to_provide_data()}"
            )
        return _folder_source(path, cache, image_size)
    for candidate in _archive_candidates():
        if candidate.is_file():
            return _folder_source(candidate, cache, image_size)
    try:
        return _tfds_source("cifar10", None, True, image_size)
    except DataError as error:
        raise DataError(
            f"no CIFAR-10 found: no prepared TFDS copy, {DATA_ENV} unset, no {ARCHIVE_NAME} "
            f"at {', '.join(str(path) for path in _archive_candidates()) or '(no candidates)'}, "
            f"and the TFDS download failed ({error.__cause__ or error}).\n"
            f"{_how_to_provide_data()}"
        ) from error


def _folder_source(path: Path, cache: Path, image_size: tuple[int, int] | None) -> SourceData:
    arrays, class_names = _load_folder_source(path, cache, image_size)
    return SourceData(arrays, f"folder:{path}", tuple(class_names))


def _tfds_source(name: str, data_dir: str | None, download: bool,
                 image_size: tuple[int, int] | None) -> SourceData:
    arrays, class_names = _load_tfds(name, data_dir, download, image_size)
    return SourceData(arrays, f"tfds:{name}", tuple(class_names))


def _archive_candidates() -> list[Path]:
    """Where `auto` looks for the shared archive: beside the checkout, then above the CWD."""
    relative = Path("shared") / "data" / ARCHIVE_NAME
    beside_checkout = Path(__file__).resolve().parents[3]  # above <checkout>/mimic_tf/data/
    candidates = [beside_checkout / relative]
    working = Path.cwd().absolute()
    candidates += [directory / relative for directory in (working, *working.parents)]
    return list(dict.fromkeys(candidates))


def _tfds_data_dirs() -> list[Path]:
    configured = os.environ.get("TFDS_DATA_DIR")
    roots = [Path(configured).expanduser()] if configured else []
    return [*roots, Path.home() / "tensorflow_datasets"]


def _prepared_tfds_dir(name: str) -> str | None:
    """A TFDS data dir holding a prepared `name`, found without downloading anything."""
    for root in _tfds_data_dirs():
        if not any((root / name).glob("*/dataset_info.json")):
            continue  # cheap check first: importing tensorflow_datasets takes seconds
        import tensorflow_datasets as tfds

        try:
            if tfds.builder(name, data_dir=str(root)).is_prepared():
                return str(root)
        except Exception:  # a broken copy is skipped, not fatal
            continue
    return None


def _image_and_label_keys(features, name: str) -> tuple[str, str]:
    """The image feature and the class-label feature of a TFDS dataset (DataError if not one)."""
    import tensorflow_datasets as tfds

    images = [key for key, feature in features.items()
              if isinstance(feature, tfds.features.Image)]
    labels = [key for key, feature in features.items()
              if isinstance(feature, tfds.features.ClassLabel)]
    if not images or not labels:
        raise DataError(f"tfds:{name} is not an image classification dataset: it has no "
                        f"{'Image' if not images else 'ClassLabel'} feature (features: "
                        f"{sorted(features)}); use a dataset with an image and a class label")
    return ("image" if "image" in images else images[0],
            "label" if "label" in labels else labels[0])


def _load_tfds(name: str, data_dir: str | None, download: bool,
               image_size: tuple[int, int] | None = None) -> tuple[RawArrays, list[str]]:
    """A TFDS image classification dataset as numpy, with its class names; every failure
    becomes a DataError. A dataset without a test split gives empty test arrays."""
    try:
        import tensorflow_datasets as tfds

        data_dir = data_dir or _prepared_tfds_dir(name)
        builder = tfds.builder(name, data_dir=data_dir)
        if not builder.is_prepared():
            if not download:
                raise DataError(f"tfds:{name} is not prepared in {data_dir}")
            builder.download_and_prepare()
        image_key, label_key = _image_and_label_keys(builder.info.features, name)
        class_names = list(builder.info.features[label_key].names)
        loaded = {}
        for split in ("train", "test"):
            try:
                dataset = builder.as_dataset(split=split, batch_size=None)
            except ValueError:  # TFDS: "Unknown split ..." (a dataset without that part)
                continue
            images = dataset.map(lambda example: example[image_key])
            labels = dataset.map(lambda example: example[label_key])
            loaded[split] = (_stack_images(images, image_size, f"tfds:{name} {split}"),
                             np.fromiter(labels.as_numpy_iterator(), dtype=np.int64))
    except DataError:
        raise
    except Exception as error:  # network, disk and TFDS errors all end here
        raise DataError(
            f"tensorflow_datasets could not load {name} ({type(error).__name__}: {error}).\n"
            f"{_how_to_provide_data()}"
        ) from error
    if "train" not in loaded:
        raise DataError(f"tfds:{name} has no train split (splits: "
                        f"{sorted(builder.info.splits) or 'none listed'}); mimic-tf needs one")
    train_images, train_labels = loaded["train"]
    test_images, test_labels = loaded.get("test", (train_images[:0], train_labels[:0]))
    return (train_images, train_labels, test_images, test_labels), class_names


def _stack_images(images: tf.data.Dataset, image_size: tuple[int, int] | None,
                  where: str) -> np.ndarray:
    """One uint8 `[N, H, W, C]` array of a dataset of images (resized to `image_size`)."""
    if image_size is not None:
        images = images.map(lambda image: _resized(image, image_size),
                            num_parallel_calls=tf.data.AUTOTUNE)
    stacked = [np.asarray(image) for image in images.as_numpy_iterator()]
    if not stacked:
        raise DataError(f"{where}: no images")
    shapes = sorted({image.shape for image in stacked})
    if len(shapes) > 1:
        raise DataError(f"{where}: images differ in size ({shapes[0]} and {shapes[-1]}, among "
                        f"{len(shapes)} shapes); set data.image_size: [H, W] to resize them")
    return _checked_images(np.stack(stacked).astype(np.uint8), where)


def _resized(image: tf.Tensor, image_size: tuple[int, int]) -> tf.Tensor:
    """`image` resized to `image_size` (bilinear, antialiased), back to uint8."""
    resized = tf.image.resize(image, image_size, antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def _checked_images(images: np.ndarray, where: str) -> np.ndarray:
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DataError(f"{where}: images have shape {images.shape}, expected [N, H, W, C] "
                        "with C = 1 (grayscale) or 3 (colour)")
    return images


# ----- folder:PATH ---------------------------------------------------------------------------


def _load_folder_source(path: Path, cache: Path, image_size: tuple[int, int] | None = None
                        ) -> tuple[RawArrays, list[str]]:
    """An ImageFolder tree or an archive of one, decoded once and cached; its class names."""
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
    if image_size is not None:  # a resized copy is cached beside, not over, the original
        listing.update(f"\nresized to {image_size[0]}x{image_size[1]}".encode())
        decoded_dir = decoded_dir / f"resized-{image_size[0]}x{image_size[1]}"
    cache_file = decoded_dir / f"decoded-{listing.hexdigest()[:16]}.npz"
    cached = _read_decoded_cache(cache_file)
    if cached is not None:
        return cached, class_names
    images = _decode_images([str(root / relative) for relative, _, _, _ in entries],
                            image_size)
    labels = np.asarray([label for _, label, _, _ in entries], dtype=np.int64)
    is_train = np.asarray([relative.startswith("train/") for relative, _, _, _ in entries])
    arrays = (images[is_train], labels[is_train], images[~is_train], labels[~is_train])
    _write_decoded_cache(cache_file, arrays)
    return arrays, class_names


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
        roots = [folder for folder in level if (folder / "train").is_dir()]
        if len(roots) == 1:
            return roots[0]
        if len(roots) > 1:
            raise DataError(
                f"{described_as} holds several train/ trees ({', '.join(map(str, roots))})"
                f"; pass the one to use as folder:PATH"
            )
    raise DataError(
        f"{described_as} has no ImageFolder tree: expected train/<label>/*.jpg (and "
        f"optionally test/<label>/*.jpg) at its top or one or two levels down"
    )


def _list_tree(root: Path) -> tuple[list[str], list[tuple[str, int, int, int]]]:
    """Class names (sorted folder names) and `(relative path, label, size, mtime_ns)` per image.

    Train images first, then test; within a split by label, then by file name.
    """
    class_names = sorted(entry.name for entry in (root / "train").iterdir() if entry.is_dir())
    has_test = (root / "test").is_dir()
    test_names = sorted(entry.name for entry in (root / "test").iterdir()
                        if entry.is_dir()) if has_test else class_names
    if len(class_names) < 2 or class_names != test_names:
        raise DataError(
            f"ImageFolder tree '{root}': train/ (and test/, if any) must hold the same two or "
            f"more label folders; train has {class_names}, test has {test_names}"
        )
    entries = []
    for split in ("train", "test") if has_test else ("train",):
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


def _decode_images(paths: Sequence[str], image_size: tuple[int, int] | None = None
                   ) -> np.ndarray:
    """Decode image files to uint8 `[N, H, W, C]` in parallel; DataError names a bad file.

    The first image sets the channels (1 for grayscale, else 3: alpha is dropped) and, without
    `image_size`, the size every other image must have; with it, every image is resized to it.
    JPEGs are decoded with the accurate integer IDCT (as PIL does), other formats by
    `tf.io.decode_image`.
    """
    first = _decode_one(tf.io.read_file(paths[0]), 0, paths[0])
    channels = 1 if first.shape[-1] in (1, 2) else 3
    shape = (*(image_size or first.shape[:2]), channels)

    def decode(path):
        image = _decode_one(tf.io.read_file(path), channels)
        if image_size is not None:
            return _resized(image, image_size), tf.constant(shape, tf.int32)
        size = tf.shape(image)
        good = tf.reduce_all(tf.equal(size, shape))
        image = tf.cond(good, lambda: tf.reshape(image, shape),
                        lambda: tf.zeros(shape, tf.uint8))
        return image, size

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
    bad = np.flatnonzero(np.any(shapes != shape, axis=1))
    if len(bad):
        raise DataError(
            f"image '{paths[bad[0]]}' has shape {tuple(shapes[bad[0]].tolist())}, unlike the "
            f"first image's {shape} ({len(bad)} such images); set data.image_size: [H, W] to "
            "resize every image to one size"
        )
    return np.concatenate(images)


def _decode_one(contents: tf.Tensor, channels: int, path: str | None = None) -> tf.Tensor:
    """One image file's pixels (`channels` 0: as stored)."""
    try:
        return tf.cond(
            tf.io.is_jpeg(contents),
            # TF's default JPEG IDCT (INTEGER_FAST) shifts channel means by about 1; the
            # accurate one matches PIL and libjpeg's defaults bit for bit.
            lambda: tf.io.decode_jpeg(contents, channels=channels,
                                      dct_method="INTEGER_ACCURATE"),
            lambda: tf.io.decode_image(contents, channels=channels, expand_animations=False),
        )
    except tf.errors.OpError as error:
        raise DataError(f"cannot decode image '{path}' ({error.message}); replace or remove "
                        "it") from error


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
        if (images.dtype != np.uint8 or images.ndim != 4
                or images.shape[1:] != train_images.shape[1:]
                or labels.dtype != np.int64 or labels.shape != images.shape[:1]):
            return None
    return train_images, train_labels, test_images, test_labels


def _write_decoded_cache(path: Path, arrays: RawArrays) -> None:
    """Write through a temporary file and a rename; remove older caches of the same tree."""
    with atomic_path(path) as temporary:
        np.savez(temporary, **dict(zip(_CACHE_KEYS, arrays, strict=True)))
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

