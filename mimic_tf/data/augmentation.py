"""The paper's augmentation: HSV jitter, a left-right flip and a random square crop, seeded.

Urban et al. 2017, section 2: HSV jitter, left-right flip with p = 0.5 and a random square crop
resized back to 32x32. Images of another size get the same crop as a share of each side
(`crop_min` / 32 .. `crop_max` / 32), grayscale images the value jitter only. View `k` of
example `i` is a pure function of `(AugmentConfig.seed, i, k)`, bit-identical whatever batch it
is computed in, so a transfer set stores only the teacher's logits and regenerates the images
from their seeds (`pipelines.view_batches`).

    views = augment(images, example_indices, view_indices=3, config=AugmentConfig())
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import tensorflow as tf

from mimic_tf.config import AugmentConfig

CROP_REFERENCE = 32  # crop_min and crop_max are in pixels of a 32-pixel side (CIFAR-10's)

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
       crop). Deviation: the paper resized with a cubic spline. An H x W image is cropped to
       `S/32 H x S/32 W` and resized back to H x W.

    Grayscale images (one channel) get step 1's value scale and shift only.

    The nine random numbers of an image come from `tf.random.stateless_uniform` (Philox) seeded
    with `fold_in((config.seed, example index), view index)`, so view `k` of image `i` is
    bit-identical however it is batched. Runs XLA-compiled on the CPU (one compile per batch
    size), also on GPU machines: GPU kernels (TF32 matmuls) would give other pixels.

    Args:
        images: uint8 `[B, H, W, C]`, C = 1 or 3 (`[B, 32, 32, 3]` for CIFAR-10).
        example_indices: integer `[B]`, the images' indices in their dataset.
        view_indices: integer `[B]` or a scalar for the whole batch: the augmentation epoch.
        config: the augmentation constants and seed.

    Returns:
        uint8 images of the input's shape.
    """
    images = tf.convert_to_tensor(images)
    shape = tuple(images.shape[1:])
    if (images.dtype != tf.uint8 or images.shape.rank != 4 or None in shape
            or shape[-1] not in (1, 3)):
        raise ValueError(
            f"augment expects uint8 images [B, H, W, C] with C = 1 or 3, got "
            f"{images.dtype.name} {images.shape}"
        )
    example_indices = tf.cast(tf.convert_to_tensor(example_indices), tf.int64)
    view_indices = tf.broadcast_to(
        tf.cast(tf.convert_to_tensor(view_indices), tf.int64), tf.shape(example_indices)
    )
    with tf.device("/device:CPU:0"):  # one code path (XLA:CPU) wherever it is called from
        return _compiled_augment(config, shape)(images, example_indices, view_indices)


@functools.lru_cache(maxsize=64)
def _compiled_augment(config: AugmentConfig, shape: tuple[int, int, int]
                      ) -> Callable[..., tf.Tensor]:
    """The XLA-compiled augmentation for one config and image shape (configs are frozen,
    hence hashable)."""
    config.validate()
    grayscale = shape[-1] == 1
    do_hsv = any((config.value_shift, config.value_scale) if grayscale else
                 (config.hue_shift, config.saturation_shift, config.value_shift,
                  config.saturation_scale, config.value_scale))
    do_geometry = config.flip or config.crop_min < CROP_REFERENCE

    @tf.function(
        jit_compile=True,
        input_signature=[
            tf.TensorSpec([None, *shape], tf.uint8),
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
            pixels = (_jitter_value(pixels, draws, config) if grayscale
                      else _jitter_hsv(pixels, draws, config))
        if do_geometry:
            pixels = _flip_and_crop(pixels, draws, config, shape[:2])
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


def _jitter_value(pixels: tf.Tensor, draws: tf.Tensor, config: AugmentConfig) -> tf.Tensor:
    """A grayscale image's value jitter: scaled and shifted, clipped to [0, 1]."""
    scale = _scale(draws[:, 7], config.value_scale)[..., None]
    shift = _symmetric(draws[:, 8], config.value_shift)[..., None]
    return tf.clip_by_value(pixels * scale + shift, 0.0, 1.0)


def _flip_and_crop(pixels: tf.Tensor, draws: tf.Tensor, config: AugmentConfig,
                   size: tuple[int, int]) -> tf.Tensor:
    """Flip left-right with p = 0.5, crop an S x S square (S/32 of each side of an image of
    another size), resize it back to the image's size (bilinear).

    Bilinear resizing is separable: `out = R_rows @ image @ R_columns^T` with per-image
    `[H, H]` and `[W, W]` interpolation matrices; a flip reverses the rows of `R_columns`. Two
    batched matmuls, which XLA compiles well (tf.image.crop_and_resize has no XLA kernel).
    """
    height, width = size
    side_choices = config.crop_max - config.crop_min + 1
    side = config.crop_min + tf.minimum(tf.floor(draws[:, 1] * side_choices), side_choices - 1)
    rows = side if height == CROP_REFERENCE else side * (height / CROP_REFERENCE)
    columns = side if width == CROP_REFERENCE else side * (width / CROP_REFERENCE)
    top = tf.minimum(tf.floor(draws[:, 2] * (height + 1 - rows)), height - rows)
    left = tf.minimum(tf.floor(draws[:, 3] * (width + 1 - columns)), width - columns)
    row_weights = _resize_matrix(top, rows, height)
    column_weights = _resize_matrix(left, columns, width)
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

