"""The fast teacher family: airbench94's net (Jordan 2024), in Keras; its training recipe is
`mimic_tf/teachers/airbench_recipe.py`.

"94% on CIFAR-10 in 3.29 seconds on a single GPU" (Keller Jordan, 2024, arXiv:2404.00498)
trains a 2M-parameter VGG-like net to 94% in about 10 epochs. One member here:

    uint8 -> per-channel standardisation (float32)
          -> whiten: conv 2x2 valid to 24 channels, frozen weights, trainable bias -> GELU
          -> group(w1) -> group(w2) -> group(w3) -> max-pool 3 -> linear (no bias) x 1/9
    group(w) = conv3x3 -> max-pool 2 -> BN -> GELU -> conv3x3 -> BN -> GELU

BatchNorm has no scale and a bias only (momentum 0.6, airbench's "fast" statistics); convs
have no bias. Widths default to airbench94's 64/256/256 (1.97M parameters).

Techniques ported, with airbench's own ablation (the `airbench_ablations` table of its
repository: epochs each needs to reach 94% on an A100, each added to the ones above it):

| technique                                   | epochs to 94% | kept here because             |
|---------------------------------------------|---------------|-------------------------------|
| baseline: Nesterov SGD, flip + translate 2  | 35            |                               |
| + whitening first conv (2x2 patch PCA)      | 21            | largest single gain           |
| + dirac (identity) init of every conv       | 18            | free                          |
| + BatchNorm biases at 64x the learning rate | 13.5          | free (a reparametrisation)    |
| + first-conv bias frozen after 3 epochs     | 13.5 (speed)  | dropped: speed only, and tiny |
| + lookahead (EMA every 5 steps)             | 12            | a few numpy ops per 5 steps   |
| + multi-crop test-time augmentation         | 10.8          | flip TTA kept (level 1)       |
| + alternating flip                          | 9.9           | free                          |

`python benchmarks/airbench_ablation.py` measures the techniques on this CPU; the numbers
it printed are in docs/teacher.md.

Keras idiom for each:
- whitening: `whitening_kernel` takes the eigen-decomposition of the covariance of 2x2 patches
  of the standardised training images; kernel = eigenvectors / sqrt(eigenvalues + eps), and
  their negatives (24 filters), so whitened patches have identity covariance.
- dirac: `PartialDirac`, a Keras initializer: output channel i < min(c_in, c_out) copies input
  channel i, the others are drawn as PyTorch's default conv init.
- BN-bias learning rate: `ScaledBias` stores bias / sqrt(64) and multiplies it back, so plain
  SGD moves the bias 64x faster while decoupled weight decay still shrinks it by the same
  fraction per step as every other weight.
- TTA: `HorizontalFlip` in `teachers.build_ensemble`: mean of the logits of an image and its
  mirror, inside the saved ensemble.

The recipe's half (`mimic_tf.teachers.airbench_recipe`):
- schedule: `WarmupLinearDecay`, the rate rising from 0.2x to its peak over the first
  `warmup` of the steps, then falling linearly to `final_rate` of it; Nesterov SGD with
  decoupled weight decay (`weight_decay` x rate each step, Keras' `SGD(weight_decay=...)`).
- lookahead: `Lookahead`, a callback: every 5 steps, ema <- lerp(ema, weights, 1 - decay);
  weights <- ema, with decay ramped in as `0.95**5 * (step / total) ** 3`.
- data: `flip_translate_dataset`: alternating flips (each image is mirrored in every other
  epoch, from a random start) and translations of up to 2 pixels with reflect padding.

    model = build_airbench_member(AirbenchConfig(), splits.train_images, seed=0, num_classes=10)
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from mimic_tf.config import AirbenchConfig
from mimic_tf.runtime import resolve_precision

WHITEN_PATCH = 2  # whitening conv kernel size; 2 * 3 * 2**2 = 24 filters
WHITEN_EPSILON = 5e-4  # added to the eigenvalues before the inverse square root
LOGIT_SCALE = 1.0 / 9.0  # the head's output multiplier (airbench94's scaling_factor)
BATCHNORM_EPSILON = 1e-5


# --------------------------------------------------------------------------------------------
# Layers and initializers
# --------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="mimic_tf")
class ChannelStandardization(keras.layers.Layer):
    """Raw pixels to `(x - mean) / std` per channel, in float32 whatever the policy.

    Formula: `y[..., c] = (x[..., c] - mean[c]) / std[c]`, mean and std of the training set.
    """

    def __init__(self, mean: list[float], std: list[float], **kwargs) -> None:
        super().__init__(**kwargs)
        self.mean = [float(value) for value in mean]
        self.std = [float(value) for value in std]

    def call(self, images):
        pixels = ops.cast(images, "float32")
        standardized = (pixels - ops.array(self.mean, "float32")) / ops.array(self.std, "float32")
        return ops.cast(standardized, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "mean": self.mean, "std": self.std}


@keras.saving.register_keras_serializable(package="mimic_tf")
class ScaledBias(keras.layers.Layer):
    """A per-channel bias stored divided by `scale`: `y = x + scale * b`.

    Under SGD the bias `scale * b` then moves `scale**2` times faster than an ordinary
    weight (airbench's 64x BatchNorm-bias learning rate with `scale = 8`), while decoupled
    weight decay, which shrinks `b` by a fraction, shrinks the bias by that same fraction.
    """

    def __init__(self, scale: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.scale = float(scale)

    def build(self, input_shape) -> None:
        self.bias = self.add_weight(
            shape=(input_shape[-1],), initializer="zeros", name="bias"
        )

    def call(self, inputs):
        return inputs + ops.cast(self.scale * self.bias, inputs.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="mimic_tf")
class PartialDirac(keras.initializers.Initializer):
    """Conv kernels `[kh, kw, c_in, c_out]` whose first min(c_in, c_out) outputs copy inputs.

    Output channel `i < min(c_in, c_out)` is the identity of input channel `i` (a 1 at the
    kernel's centre); the other output channels are drawn from U(-1/sqrt(fan_in),
    1/sqrt(fan_in)), PyTorch's default conv init, as airbench's `Conv.reset_parameters`.
    """

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed

    def __call__(self, shape, dtype=None):
        kernel_height, kernel_width, channels_in, channels_out = shape
        fan_in = kernel_height * kernel_width * channels_in
        limit = 1.0 / math.sqrt(fan_in)
        kernel = np.random.default_rng(self.seed).uniform(-limit, limit, size=shape)
        identity = min(channels_in, channels_out)
        kernel[..., :identity] = 0.0
        channels = np.arange(identity)
        kernel[kernel_height // 2, kernel_width // 2, channels, channels] = 1.0
        return ops.convert_to_tensor(kernel.astype(np.float32), dtype=dtype or "float32")

    def get_config(self) -> dict:
        return {"seed": self.seed}


@keras.saving.register_keras_serializable(package="mimic_tf")
class HorizontalFlip(keras.layers.Layer):
    """Mirror images `[N, H, W, C]` left to right (deterministic, no randomness)."""

    def call(self, images):
        return ops.flip(images, axis=2)

    def compute_output_shape(self, input_shape):
        return input_shape


# --------------------------------------------------------------------------------------------
# Whitening
# --------------------------------------------------------------------------------------------


def channel_statistics(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of uint8 images `[N, H, W, C]`."""
    pixels = np.asarray(images, dtype=np.float64).reshape(-1, images.shape[-1])
    return pixels.mean(axis=0), pixels.std(axis=0)


def image_patches(images: np.ndarray, size: int = WHITEN_PATCH) -> np.ndarray:
    """Every `size x size` patch (stride 1, no padding) as rows `[num_patches, size*size*C]`.

    Each row is flattened in the order of a Keras conv kernel `[kh, kw, C]`.
    """
    windows = np.lib.stride_tricks.sliding_window_view(images, (size, size), axis=(1, 2))
    # windows: [N, H - size + 1, W - size + 1, C, size, size] -> [..., kh, kw, C]
    windows = windows.transpose(0, 1, 2, 4, 5, 3)
    return windows.reshape(-1, size * size * images.shape[-1])


def whitening_kernel(
    standardized_images: np.ndarray, size: int = WHITEN_PATCH, epsilon: float = WHITEN_EPSILON
) -> np.ndarray:
    """A conv kernel `[size, size, C, 2 * size*size*C]` that whitens `size x size` patches.

    With `covariance = patches^T patches / n = V diag(lambda) V^T` (eigen-decomposition,
    largest eigenvalue first), filter j is `V[:, j] / sqrt(lambda_j + epsilon)`, and filter
    `j + size*size*C` its negative (so a following GELU sees both signs). The first half of
    the outputs on the same patches has covariance `diag(lambda / (lambda + epsilon))`,
    near the identity.
    """
    patches = image_patches(np.asarray(standardized_images, np.float64), size)
    covariance = patches.T @ patches / len(patches)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # ascending
    eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
    filters = eigenvectors / np.sqrt(np.maximum(eigenvalues, 0.0) + epsilon)
    channels = standardized_images.shape[-1]
    kernel = filters.reshape(size, size, channels, -1)
    return np.concatenate([kernel, -kernel], axis=-1).astype(np.float32)


# --------------------------------------------------------------------------------------------
# The net
# --------------------------------------------------------------------------------------------


def member_widths(config: AirbenchConfig, member_index: int, seed: int,
                  width_jitter: float) -> list[int]:
    """The three group widths of member `member_index`, jittered by `width_jitter` (0: none)."""
    widths = list(config.widths)
    if width_jitter > 0:
        scales = np.random.default_rng([seed, member_index]).uniform(
            1 - width_jitter, 1 + width_jitter, size=len(widths))
        widths = [max(1, round(width * scale)) for width, scale in zip(widths, scales,
                                                                        strict=True)]
    return widths


def build_airbench_member(
    config: AirbenchConfig,
    train_images: np.ndarray,
    member_index: int = 0,
    seed: int = 0,
    width_jitter: float = 0.0,
    *,
    num_classes: int,
) -> keras.Model:
    """One airbench member; takes uint8 images shaped as `train_images`', returns float32
    logits `[N, num_classes]`.

    `train_images` (uint8) set the input shape, the standardisation statistics and, through
    their first `config.whitening_images` images, the frozen whitening kernel.
    """
    image_shape = tuple(int(side) for side in train_images.shape[1:])
    smallest = min(image_shape[:2])
    if smallest - (WHITEN_PATCH - 1) < 2 ** 3:
        raise ValueError(
            f"airbench members need images of at least {2 ** 3 + WHITEN_PATCH - 1} pixels a "
            f"side (a {WHITEN_PATCH}x{WHITEN_PATCH} whitening conv, then three 2x2 pools); "
            f"these are {image_shape[0]}x{image_shape[1]}: use teacher.family: paper, or "
            "data.image_size to enlarge them")
    policy = resolve_precision(config.precision)
    widths = member_widths(config, member_index, seed, width_jitter)
    bias_scale = math.sqrt(config.bias_lr_scale)
    layer_seed = (seed * 1000 + member_index) * 100
    mean, std = channel_statistics(train_images)

    def conv_init() -> keras.initializers.Initializer:
        nonlocal layer_seed
        layer_seed += 1
        if config.dirac:
            return PartialDirac(seed=layer_seed)
        return keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform",
                                                  seed=layer_seed)

    images = keras.Input(image_shape, dtype="uint8", name="images")
    x = ChannelStandardization(mean.tolist(), std.tolist(), name="standardize",
                               dtype="float32")(images)
    whiten_channels = 2 * WHITEN_PATCH * WHITEN_PATCH * image_shape[-1]
    whiten = keras.layers.Conv2D(
        whiten_channels, WHITEN_PATCH, padding="valid", use_bias=False,
        kernel_initializer=conv_init(), name="whiten", dtype=policy,
    )
    x = whiten(x)
    x = ScaledBias(name="whiten_bias", dtype=policy)(x)
    x = keras.layers.Activation("gelu", name="whiten_gelu", dtype=policy)(x)
    for group, width in enumerate(widths, start=1):
        for conv in (1, 2):
            x = keras.layers.Conv2D(
                width, 3, padding="same", use_bias=False, kernel_initializer=conv_init(),
                name=f"group{group}_conv{conv}", dtype=policy,
            )(x)
            if conv == 1:
                x = keras.layers.MaxPooling2D(2, name=f"group{group}_pool", dtype=policy)(x)
            x = keras.layers.BatchNormalization(
                momentum=config.batchnorm_momentum, epsilon=BATCHNORM_EPSILON, center=False,
                scale=False, name=f"group{group}_norm{conv}", dtype=policy,
            )(x)
            x = ScaledBias(bias_scale, name=f"group{group}_bias{conv}", dtype=policy)(x)
            x = keras.layers.Activation("gelu", name=f"group{group}_gelu{conv}",
                                        dtype=policy)(x)
    x = keras.layers.GlobalMaxPooling2D(name="pool", dtype=policy)(x)  # 3x3 -> 1x1
    layer_seed += 1
    x = keras.layers.Dense(
        num_classes, use_bias=False, name="head", dtype="float32",
        kernel_initializer=keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform",
                                                              seed=layer_seed),
    )(x)
    logits = keras.layers.Rescaling(LOGIT_SCALE, name="logits", dtype="float32")(x)
    model = keras.Model(images, logits, name=f"teacher_member_{member_index:02d}")

    if config.whiten:
        sample = np.asarray(train_images[:config.whitening_images], np.float32)
        whiten.kernel.assign(whitening_kernel((sample - mean) / std))
        whiten.trainable = False  # the bias after it stays trainable
    return model
