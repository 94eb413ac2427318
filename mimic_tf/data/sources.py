"""Where CIFAR-10 comes from: TFDS, an ImageFolder tree or archive of one, or synthetic images.

A `source` string (`DataConfig.source`) names it:

- `tfds:cifar10`: TensorFlow Datasets (downloads where the network allows).
- `folder:PATH`: an ImageFolder tree `PATH/{train,test}/<label>/*.jpg`, or a `.tar.gz` of one
  (such as the shared `cifar10-jpeg.tar.gz`). An archive is unpacked once into the cache
  folder (`$MIMIC_TF_CACHE`, default `~/.cache/mimic-tf`); decoded pixels are cached there too
  (`decoded-<key>.npz`, keyed by the tree's listing and `DECODER_VERSION`), so only the first
  load decodes the 60,000 JPEGs.
- `synthetic`: small class-dependent images made in memory (tests, smoke runs).
- `auto`: a prepared TFDS copy, else `$MIMIC_TF_DATA`, else `../shared/data/cifar10-jpeg.tar.gz`
  next to the checkout, else a TFDS download; `DataError` says how to provide data otherwise.

Every source gives raw uint8 images `[N, 32, 32, 3]` and int64 labels, train and test, before
any splitting (`splits.load_splits` splits them):

    train_images, train_labels, test_images, test_labels = load_raw("folder:cifar10-jpeg.tar.gz")
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

import numpy as np
import tensorflow as tf

from mimic_tf.config import DataConfig
from mimic_tf.files import atomic_path
from mimic_tf.vocabulary import CLASS_NAMES, NUM_CLASSES  # noqa: F401 - re-exported by data

IMAGE_SHAPE = (32, 32, 3)

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

    Images uint8 `[N, 32, 32, 3]`, labels int64 `[N]` (50,000 / 10,000 for CIFAR-10).
    `config` only sizes `synthetic` (see `make_synthetic`).
    """
    arrays, _ = load_source(source, cache_dir, config=config)
    return arrays


def load_source(
    source: str,
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    config: DataConfig | None = None,
) -> tuple[RawArrays, str]:
    """`load_raw`'s arrays and where they came from, e.g. `folder:/.../cifar10-jpeg.tar.gz`."""
    config = config or DataConfig()
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
    beside_checkout = Path(__file__).resolve().parents[3]  # above <checkout>/mimic_tf/data/
    candidates = [beside_checkout / relative]
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

