"""The images for mimic-tf: what they look like, sources, splits, augmentation, tf.data.

One module per concept; import the names from here (`from mimic_tf.data import load_splits`):

- `spec`: `DatasetSpec`, the one description of a dataset's images and classes (`CIFAR10`
  the paper's), and `DataError` (NumPy only: budgets and reports import it freely).
- `sources`: where the images come from (`auto`, `tfds:NAME`, `folder:PATH` with its
  unpacked-archive and decoded-pixel cache under `$MIMIC_TF_CACHE`, `synthetic`) and their
  class names; `image_folders`: the `folder:PATH` trees and archives, decoded and cached.
- `splits`: the stratified, seeded train / validation / test split and its fingerprint.
- `augmentation`: `augment`, view `k` of image `i` as a pure function of `(seed, i, k)`.
- `pipelines`: `view_batches`, the one stream of "view k of image i" batches that teachers,
  the transfer set and its students read (the order a parameter, see its docstring), and
  in-order evaluation batches.

Images stay raw uint8 `[N, H, W, C]` everywhere (`Splits.spec` describes them): models
standardise them themselves. May import `mimic_tf`'s config, files and vocabulary; names are
imported from their module on first use (`mimic_tf.namespace`), so `spec` loads without
TensorFlow.

    splits = load_splits(DataConfig(source="auto"))
    train = training_dataset(splits.train_images, splits.train_labels, batch_size=128,
                             augment_config=AugmentConfig(), shuffle_seed=0)
"""

from mimic_tf.namespace import lazy_names

_MODULE_OF = {
    **dict.fromkeys(("CIFAR10", "DataError", "DatasetSpec", "RawArrays"), "spec"),
    "augment": "augmentation",
    **dict.fromkeys(("EpochOrder", "augmented_views", "evaluation_dataset", "fixed_order",
                     "shuffled_order", "steps_per_epoch", "training_dataset",
                     "view_batch_indices", "view_batches", "view_in_example_order"),
                    "pipelines"),
    **dict.fromkeys(("ARCHIVE_NAME", "CACHE_ENV", "DATA_ENV", "SourceData", "default_cache_dir",
                     "load_raw", "load_source", "make_synthetic"), "sources"),
    **dict.fromkeys(("Splits", "load_splits", "stratified_split"), "splits"),
}
__getattr__, __dir__ = lazy_names(__name__, _MODULE_OF)
__all__ = sorted(_MODULE_OF)
