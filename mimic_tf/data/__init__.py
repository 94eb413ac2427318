"""The images for mimic-tf (CIFAR-10 by default): sources, splits, augmentation, tf.data.

One module per concept; import the names from here (`from mimic_tf.data import load_splits`):

- `sources`: where the images come from (`auto`, `tfds:NAME`, `folder:PATH` with its
  unpacked-archive and decoded-pixel cache under `$MIMIC_TF_CACHE`, `synthetic`) and their
  class names; `DataError`.
- `splits`: the stratified, seeded train / validation / test split and its fingerprint.
- `augmentation`: `augment`, view `k` of image `i` as a pure function of `(seed, i, k)`.
- `pipelines`: `view_batches`, the one stream of "view k of image i" batches that teachers,
  the transfer set and its students read (the order a parameter, see its docstring), and
  in-order evaluation batches.

Images stay raw uint8 `[N, H, W, C]` everywhere (`[N, 32, 32, 3]` for CIFAR-10; `Splits.spec`
describes them): models standardise them themselves.

    splits = load_splits(DataConfig(source="auto"))
    train = training_dataset(splits.train_images, splits.train_labels, batch_size=128,
                             augment_config=AugmentConfig(), shuffle_seed=0)
"""

from mimic_tf.data.augmentation import augment
from mimic_tf.data.pipelines import (
    EpochOrder,
    augmented_views,
    evaluation_dataset,
    fixed_order,
    shuffled_order,
    steps_per_epoch,
    training_dataset,
    view_batch_indices,
    view_batches,
    view_in_example_order,
)
from mimic_tf.data.sources import (
    ARCHIVE_NAME,
    CACHE_ENV,
    CLASS_NAMES,
    DATA_ENV,
    IMAGE_SHAPE,
    NUM_CLASSES,
    DataError,
    RawArrays,
    SourceData,
    default_cache_dir,
    load_raw,
    load_source,
    make_synthetic,
)
from mimic_tf.data.splits import Splits, load_splits, stratified_split

__all__ = [
    "ARCHIVE_NAME", "CACHE_ENV", "CLASS_NAMES", "DATA_ENV", "IMAGE_SHAPE", "NUM_CLASSES",
    "DataError", "EpochOrder", "RawArrays", "SourceData", "Splits", "augment", "default_cache_dir",
    "evaluation_dataset", "fixed_order", "load_raw", "load_source", "load_splits",
    "make_synthetic", "shuffled_order", "steps_per_epoch", "stratified_split",
    "training_dataset", "view_batch_indices", "view_batches", "augmented_views",
    "view_in_example_order",
]
