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

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from mimic_tf.config import DataConfig
from mimic_tf.data.image_folders import checked_images, load_image_folder, resized
from mimic_tf.data.spec import CIFAR10, DataError, RawArrays

ARCHIVE_NAME = "cifar10-jpeg.tar.gz"  # the shared JPEG copy of CIFAR-10 (shared/data/README.md)
DATA_ENV = "MIMIC_TF_DATA"  # path of an archive or ImageFolder tree to use for source=auto
CACHE_ENV = "MIMIC_TF_CACHE"  # where archives are unpacked and decoded pixels cached
SYNTHETIC_SEED = 0  # synthetic images do not depend on the split seed

class SourceData(NamedTuple):
    """A loaded source: its arrays, where they came from, and the class names (label order)."""

    arrays: RawArrays  # train images, train labels, test images, test labels
    resolved: str  # e.g. "folder:/.../cifar10-jpeg.tar.gz" or "tfds:mnist"
    class_names: tuple[str, ...]


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
        return SourceData(arrays, "synthetic", CIFAR10.class_names)
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
    arrays, class_names = load_image_folder(path, cache, image_size, _how_to_provide_data())
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
        images = images.map(lambda image: resized(image, image_size),
                            num_parallel_calls=tf.data.AUTOTUNE)
    stacked = [np.asarray(image) for image in images.as_numpy_iterator()]
    if not stacked:
        raise DataError(f"{where}: no images")
    shapes = sorted({image.shape for image in stacked})
    if len(shapes) > 1:
        raise DataError(f"{where}: images differ in size ({shapes[0]} and {shapes[-1]}, among "
                        f"{len(shapes)} shapes); set data.image_size: [H, W] to resize them")
    return checked_images(np.stack(stacked).astype(np.uint8), where)


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
    labels = rng.permutation(np.arange(count) % CIFAR10.num_classes).astype(np.int64)
    hues = np.arange(CIFAR10.num_classes) / CIFAR10.num_classes
    colours = 128 + 70 * np.stack(  # one distinct colour per class around mid grey
        [np.cos(2 * np.pi * (hues + shift)) for shift in (0.0, 1 / 3, 2 / 3)], axis=1
    )
    angles = np.pi * np.arange(CIFAR10.num_classes) / CIFAR10.num_classes
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

