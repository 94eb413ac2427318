"""tf.data pipelines: batches of "view k of image i" for every trainer, and evaluation batches.

Teachers, the transfer set (its teacher logits and its students) and airbench members all read
one kind of stream, made by one function, `view_batches`: epoch after epoch, every example
once, in `steps_per_epoch(N, batch_size)` batches (the last may be smaller), each image shown as
its augmented view `k` (`augmentation.augment`, example index = row in `images`). What differs
between callers is only where an epoch's order and view number come from, its `EpochOrder`:

- `shuffled_order(N, seed, first_view)`: epoch `e` shows view `first_view + e` in a permutation
  drawn by TF's stateless Philox shuffle seeded with `(seed, e)`; unbounded views. Teachers
  (`training_dataset`) and airbench members (`airbench_recipe.flip_translate_dataset`) use it.
- `fixed_order(orders, first_view)`: epoch `e` shows view `first_view + e mod K` in the stored
  order `orders[e mod K]`. The transfer set uses it with its NumPy orders
  (`transfer.view_order`), so that `logits[k, i]` is the teacher's output on view `k` of image
  `i` and every student reads the same batches; and, with one row `range(N)`, to compute those
  logits view by view in example order.

Why the order is a parameter and not one scheme: each scheme is part of results already on
disk. A teacher's weights depend on its stateless-shuffle order; the transfer sets under runs/
were built, and their students trained, with the NumPy order. Switching either to the other
would change every batch, so both stay, bit for bit, and everything after the order (batching,
gathering, augmenting, the teacher logits of a view) is written once. `view_batch_indices` is
the index stream underneath, for pipelines with augmentations of their own (airbench).

    train = training_dataset(splits.train_images, splits.train_labels, batch_size=128,
                             augment_config=AugmentConfig(), shuffle_seed=0)
    batches = view_batches(images, labels, batch_size=128, order=fixed_order(orders),
                           augment_config=AugmentConfig(), logits=logits)  # (x, logits, y)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from mimic_tf.config import AugmentConfig
from mimic_tf.data.augmentation import augment

EpochOrder = Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]]
"""`epoch` (int64 scalar) -> `(view` (int64 scalar), `example indices` (int64 `[N]`)): an
epoch's view number and the order its examples are visited in."""


def steps_per_epoch(num_examples: int, batch_size: int) -> int:
    """Batches in one pass over `num_examples` (the last one may be smaller)."""
    if num_examples < 1 or batch_size < 1:
        raise ValueError(
            f"num_examples and batch_size must be >= 1, got {num_examples} and {batch_size}"
        )
    return -(-num_examples // batch_size)


def shuffled_order(num_examples: int, seed: int, first_view: int = 0) -> EpochOrder:
    """Epoch `e`: view `first_view + e`, in a stateless Philox permutation seeded by `(seed, e)`."""

    def order(epoch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        permutation = tf.random.experimental.stateless_shuffle(
            tf.range(num_examples, dtype=tf.int64),
            seed=tf.stack([tf.constant(seed, tf.int64), epoch]),
            alg="philox",
        )
        return epoch + first_view, permutation

    return order


def fixed_order(orders: np.ndarray, first_view: int = 0) -> EpochOrder:
    """Epoch `e`: view `first_view + e mod K`, in the order `orders[e mod K]` (integer `[K, N]`)."""
    orders = np.asarray(orders)
    if orders.ndim != 2 or not np.issubdtype(orders.dtype, np.integer):
        raise ValueError(f"orders must be integer [views, N], got {orders.dtype} {orders.shape}")
    order_tensor = tf.constant(orders)  # made once, eagerly; the dataset captures it
    views = orders.shape[0]

    def order(epoch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        row = epoch % views
        return row + first_view, tf.cast(tf.gather(order_tensor, row), tf.int64)

    return order


def view_batch_indices(
    num_examples: int, batch_size: int, order: EpochOrder, epochs: int | None = None,
    first_epoch: int = 0,
) -> tf.data.Dataset:
    """`(example indices [B], view, epoch, step)`, batch after batch, epoch after epoch.

    Epoch `e` visits `range(num_examples)` once, in the order `order(e)` gives, in
    `steps_per_epoch(num_examples, batch_size)` batches, the last one possibly smaller; the
    next epoch starts on a fresh batch. `epochs=None` is an infinite stream. The stream starts
    at epoch `first_epoch`: a training resumed there sees what it would have seen.
    """
    steps = steps_per_epoch(num_examples, batch_size)

    def batches_of_epoch(epoch):
        view, permutation = order(epoch)
        return tf.data.Dataset.range(steps).map(
            lambda step: (permutation[step * batch_size:(step + 1) * batch_size], view, epoch,
                          step)
        )

    if epochs is None:
        return tf.data.Dataset.counter(first_epoch, dtype=tf.int64).flat_map(batches_of_epoch)
    # A known length lets Keras's predict stop without an "input ran out of data" warning.
    return (tf.data.Dataset.range(first_epoch, first_epoch + epochs, dtype=tf.int64)
            .flat_map(batches_of_epoch)
            .apply(tf.data.experimental.assert_cardinality(epochs * steps)))


def view_batches(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    order: EpochOrder,
    augment_config: AugmentConfig | None,
    logits: np.ndarray | None = None,
    epochs: int | None = None,
    views: np.ndarray | None = None,
    first_epoch: int = 0,
) -> tf.data.Dataset:
    """Batches of view `k` of image `i`: `(uint8 images [B, H, W, C], int64 labels [B])`.

    The examples and views of `view_batch_indices(N, batch_size, order, epochs,
    first_epoch)`, each image
    augmented as its view (`augment`, example index = row in `images`); with
    `augment_config=None` images pass through unchanged. With `logits` (float32
    `[K, N, classes]`, `logits[k, i]` for view `k` of image `i`) batches are
    `(images, logits [B, classes], labels)`. Deterministic: two datasets built with the same
    arguments yield the same batches. `views` (uint8 `[K, N, H, W, C]`, from
    `augmented_views`) are the same augmented images made once: batches are gathered from
    them instead of augmented again, bit for bit the same, without the augmentation's CPU time.
    """
    image_tensor, label_tensor = _checked_arrays(images, labels)
    num_examples = int(image_tensor.shape[0])
    image_shape = tuple(image_tensor.shape[1:])
    view_tensor = None
    if views is not None:
        if views.ndim != 5 or views.shape[1:] != (num_examples, *image_shape):
            raise ValueError(f"views must be [views, {num_examples}, "
                             f"{', '.join(map(str, image_shape))}], got {views.shape}")
        view_tensor = tf.constant(views.reshape(-1, *image_shape))  # row = view * N + i
    logit_tensor = None
    if logits is not None:
        if logits.ndim != 3 or logits.shape[1] != num_examples:
            raise ValueError(f"logits must be [views, {num_examples}, classes], "
                             f"got {logits.shape}")
        logit_tensor = tf.constant(logits)

    def make_batch(example_indices, view, epoch, step):
        if view_tensor is not None:
            batch_images = tf.gather(view_tensor, view * num_examples + example_indices)
        else:
            batch_images = tf.gather(image_tensor, example_indices)
            if augment_config is not None:
                batch_images = augment(batch_images, example_indices, view, augment_config)
        batch_labels = tf.gather(label_tensor, example_indices)
        if logit_tensor is None:
            return batch_images, batch_labels
        batch_logits = tf.gather(tf.gather(logit_tensor, view), example_indices)
        return batch_images, batch_logits, batch_labels

    return (
        view_batch_indices(num_examples, batch_size, order, epochs, first_epoch)
        .map(make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def view_in_example_order(images: np.ndarray, augment_config: AugmentConfig | None, view: int,
                          batch_size: int) -> tf.data.Dataset:
    """View `view` of every image, once, in example order: uint8 image batches only."""
    num_examples = len(images)
    return view_batches(
        images, np.zeros(num_examples, np.int64), batch_size=batch_size,
        order=fixed_order(np.arange(num_examples)[None], first_view=view), epochs=1,
        augment_config=augment_config,
    ).map(lambda batch_images, _: batch_images)


def augmented_views(images: np.ndarray, augment_config: AugmentConfig, views: int,
                    batch_size: int = 1000) -> np.ndarray:
    """Views `0..views-1` of every image, uint8 `[views, N, H, W, C]`, `augment` made once."""
    result = np.empty((views, *images.shape), np.uint8)
    for view in range(views):
        start = 0
        for batch_images in view_in_example_order(images, augment_config, view,
                                                  batch_size).as_numpy_iterator():
            result[view, start:start + len(batch_images)] = batch_images
            start += len(batch_images)
    return result


def training_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    augment_config: AugmentConfig | None,
    shuffle_seed: int,
    first_view: int = 0,
    first_epoch: int = 0,
) -> tf.data.Dataset:
    """Infinite `(uint8 images [B, H, W, C], int64 labels [B])` batches, epoch after epoch,
    from epoch `first_epoch` on (a resumed training's).

    A teacher's stream: epoch `e` visits every example once, in a permutation seeded by
    `(shuffle_seed, e)`, showing view `first_view + e` of each image (`view_batches` with
    `shuffled_order`). With `augment_config=None` images are passed through unchanged.
    """
    return view_batches(
        images, labels, batch_size=batch_size, augment_config=augment_config,
        order=shuffled_order(len(labels), shuffle_seed, first_view), first_epoch=first_epoch,
    )


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


def _checked_arrays(images: np.ndarray, labels: np.ndarray) -> tuple[tf.Tensor, tf.Tensor]:
    images, labels = np.asarray(images), np.asarray(labels)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be uint8 [N, H, W, C] with C = 1 or 3, got "
                         f"{images.dtype} {images.shape}")
    if labels.shape != (len(images),):
        raise ValueError(f"labels must have shape [{len(images)}], got {labels.shape}")
    if len(images) == 0:
        raise ValueError("no images")
    return tf.convert_to_tensor(images), tf.convert_to_tensor(labels.astype(np.int64))
