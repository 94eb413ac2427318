"""ImageFolder trees (`PATH/{train,test}/<label>/*.jpg`) and archives of one, decoded and cached.

An archive is unpacked once into the cache folder (`$MIMIC_TF_CACHE`, default
`~/.cache/mimic-tf`), a tree is decoded once with TensorFlow's accurate JPEG decoder and its
pixels cached beside (`decoded-<key>.npz`, keyed by the tree's listing, `DECODER_VERSION` and
the resize), so only the first load decodes. The `folder:PATH` source (`sources.py`).

    arrays, class_names = load_image_folder(path, cache, image_size=None, how_to_provide_data="")
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

from mimic_tf.data.spec import DataError, RawArrays
from mimic_tf.files import atomic_path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
DECODER_VERSION = "tf-jpeg-accurate-1"  # part of the decoded-cache key: bump to re-decode


def resized(image: tf.Tensor, image_size: tuple[int, int]) -> tf.Tensor:
    """`image` resized to `image_size` (bilinear, antialiased), back to uint8."""
    resized = tf.image.resize(image, image_size, antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def checked_images(images: np.ndarray, where: str) -> np.ndarray:
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise DataError(f"{where}: images have shape {images.shape}, expected [N, H, W, C] "
                        "with C = 1 (grayscale) or 3 (colour)")
    return images


def load_image_folder(path: Path, cache: Path, image_size: tuple[int, int] | None,
                      how_to_provide_data: str) -> tuple[RawArrays, list[str]]:
    """An ImageFolder tree or an archive of one, decoded once and cached; its class names.
    `how_to_provide_data` ends the message of a path that does not exist."""
    if not path.exists():
        raise DataError(
            f"data path '{path}' does not exist. folder:PATH needs an ImageFolder tree "
            f"(PATH/train/<label>/*.jpg and PATH/test/<label>/*.jpg) or a .tar.gz of one, "
            f"e.g. folder:/path/to/cifar10-jpeg.tar.gz.\n{how_to_provide_data}"
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
            f".tar.gz? Copy the archive again or pass an unpacked folder as folder:PATH"
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
            return resized(image, image_size), tf.constant(shape, tf.int32)
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
