"""The fast teacher family: airbench94's net and training recipe (Jordan 2024), in Keras.

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
- schedule: `WarmupLinearDecay`, the rate rising from 0.2x to its peak over the first
  `warmup` of the steps, then falling linearly to `final_rate` of it; Nesterov SGD with
  decoupled weight decay (`weight_decay` x rate each step, Keras' `SGD(weight_decay=...)`).
- lookahead: `Lookahead`, a callback: every 5 steps, ema <- lerp(ema, weights, 1 - decay);
  weights <- ema, with decay ramped in as `0.95**5 * (step / total) ** 3`.
- data: `flip_translate_dataset`: alternating flips (each image is mirrored in every other
  epoch, from a random start) and translations of up to 2 pixels with reflect padding.
- TTA: `HorizontalFlip` in `teachers.build_ensemble`: mean of the logits of an image and its
  mirror, inside the saved ensemble.

    model = build_airbench_member(AirbenchConfig(), splits.train_images, seed=0)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from mimic_tf import data
from mimic_tf.config import AirbenchConfig
from mimic_tf.vocabulary import NUM_CLASSES

WHITEN_PATCH = 2  # whitening conv kernel size; 2 * 3 * 2**2 = 24 filters
WHITEN_EPSILON = 5e-4  # added to the eigenvalues before the inverse square root
WARMUP_START = 0.2  # the schedule's first rate, as a fraction of the peak
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
    num_classes: int = NUM_CLASSES,
) -> keras.Model:
    """One airbench member; takes uint8 images shaped as `train_images`' (`[N, 32, 32, 3]` for
    CIFAR-10), returns float32 logits `[N, num_classes]`.

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
    policy = config.precision
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


# --------------------------------------------------------------------------------------------
# Optimisation
# --------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="mimic_tf")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Peak `peak` reached linearly from `0.2 * peak` over `warmup * total_steps` steps,
    then decayed linearly to `final * peak` at `total_steps` (airbench's triangular schedule:
    warm-up 0.23, final 0.07)."""

    def __init__(self, peak: float, total_steps: int, warmup: float, final: float = 0.0) -> None:
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.warmup = float(warmup)
        self.final = float(final)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        total = float(max(self.total_steps, 1))
        warmup_steps = max(self.warmup * total, 1.0)
        rising = WARMUP_START + (1.0 - WARMUP_START) * step / warmup_steps
        falling = self.final + (1.0 - self.final) * (total - step) / max(total - warmup_steps,
                                                                         1.0)
        fraction = ops.where(step < warmup_steps, rising, falling)
        return self.peak * ops.clip(fraction, self.final, 1.0)

    def get_config(self) -> dict:
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup": self.warmup,
                "final": self.final}


class Lookahead(keras.callbacks.Callback):
    """Lookahead with an EMA of the weights (hlb-cifar10, airbench), as a Keras callback.

    Every `every` optimizer steps: `ema <- decay * ema + (1 - decay) * weights`, then
    `weights <- ema`, with `decay = final_decay ** every * (step / total_steps) ** 3`, so it
    starts at 0 (no effect) and grows as the learning rate falls. Covers every float weight,
    BatchNorm statistics included. Training ends with one more sync when its last step is not
    a multiple of `every` (airbench drops those last steps; here they count), so the final
    weights are always the EMA.
    """

    def __init__(self, total_steps: int, every: int = 5, final_decay: float = 0.95) -> None:
        super().__init__()
        self.total_steps = total_steps
        self.every = every
        self.final_decay = final_decay
        self._variables: list = []
        self._ema: list[np.ndarray] = []

    def on_train_begin(self, logs=None) -> None:
        self._variables = [v for v in self.model.weights
                           if "float" in str(v.dtype) and v.trainable]
        self._variables += [v for v in self.model.non_trainable_weights
                            if "float" in str(v.dtype) and "moving" in v.path]
        self._ema = [np.array(keras.ops.convert_to_numpy(v)) for v in self._variables]

    def _step(self) -> int:
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _decay(self, step: int) -> float:
        progress = min(step / max(self.total_steps, 1), 1.0)
        return self.final_decay ** self.every * progress ** 3

    def on_train_batch_end(self, batch, logs=None) -> None:
        step = self._step()
        if step % self.every == 0:
            self._sync(self._decay(step))

    def on_train_end(self, logs=None) -> None:
        step = self._step()
        if self._ema and step % self.every:
            self._sync(self._decay(step))

    def _sync(self, decay: float) -> None:
        for variable, ema in zip(self._variables, self._ema, strict=True):
            ema *= decay
            ema += (1.0 - decay) * keras.ops.convert_to_numpy(variable)
            variable.assign(ema)


def compile_member(model: keras.Model, config: AirbenchConfig, total_steps: int,
                   jit_compile: bool | str = False) -> None:
    """Nesterov SGD, warm-up-then-decay rate, decoupled weight decay, smoothed cross-entropy.

    `jit_compile` is passed to `Model.compile` (`mimic_tf.runtime.resolve_jit_compile`).
    """
    optimizer = keras.optimizers.SGD(
        learning_rate=WarmupLinearDecay(config.learning_rate, total_steps, config.warmup,
                                        config.final_rate),
        momentum=config.momentum, nesterov=True, weight_decay=config.weight_decay,
    )
    if config.precision == "mixed_float16":  # float16 gradients underflow unscaled
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(from_logits=True,
                                                  label_smoothing=config.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        jit_compile=jit_compile,
    )


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def _translate(images: tf.Tensor, offsets: tf.Tensor, pad: int) -> tf.Tensor:
    """Crop windows of the images' size at per-image `offsets` `[B, 2]` out of the
    reflect-padded images."""
    padded = tf.pad(images, [[0, 0], [pad, pad], [pad, pad], [0, 0]], mode="REFLECT")
    rows = offsets[:, 0:1] + tf.range(images.shape[1], dtype=tf.int32)[None, :]
    columns = offsets[:, 1:2] + tf.range(images.shape[2], dtype=tf.int32)[None, :]
    cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(cropped, columns, axis=2, batch_dims=1)


def flip_translate_dataset(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    translate: int,
    alternating_flip: bool,
    seed: int,
    num_classes: int = NUM_CLASSES,
) -> tf.data.Dataset:
    """Infinite `(uint8 images [B, H, W, C], one-hot float32 labels [B, classes])` batches.

    Epoch `e` visits every image once in a permutation seeded by `(seed, e)`. Flips: with
    `alternating_flip`, image i is mirrored in epochs where `e + start_i` is odd (`start_i` a
    seeded coin), so consecutive epochs show both orientations; otherwise a fresh coin per
    view. Translations: a window offset by up to `translate` pixels in each direction out of
    the reflect-padded image. Deterministic for a given seed.
    """
    image_tensor = tf.constant(images)
    label_tensor = tf.constant(np.asarray(labels, np.int64))
    num_examples = len(labels)
    steps = data.steps_per_epoch(num_examples, batch_size)
    start_flip = tf.constant(
        np.random.default_rng([seed, 1]).integers(0, 2, size=num_examples), tf.int64)

    def make_batch(indices, view, epoch, step):
        batch = tf.gather(image_tensor, indices)
        count = tf.shape(indices)[0]
        draw_seed = tf.stack([tf.constant(seed, tf.int64), epoch * steps + step])
        draws = tf.random.stateless_uniform([count, 3], seed=draw_seed, alg="philox")
        if alternating_flip:
            flip = tf.equal((tf.gather(start_flip, indices) + epoch) % 2, 1)
        else:
            flip = draws[:, 0] < 0.5
        batch = tf.where(flip[:, None, None, None], tf.reverse(batch, axis=[2]), batch)
        if translate > 0:
            offsets = tf.cast(tf.floor(draws[:, 1:] * (2 * translate + 1)), tf.int32)
            batch = _translate(batch, tf.minimum(offsets, 2 * translate), translate)
        return batch, tf.one_hot(tf.gather(label_tensor, indices), num_classes)

    return (
        data.view_batch_indices(num_examples, batch_size,
                                data.shuffled_order(num_examples, seed))
        .map(make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def one_hot_evaluation_dataset(images: np.ndarray, labels: np.ndarray,
                               batch_size: int = 500, num_classes: int = NUM_CLASSES
                               ) -> tf.data.Dataset:
    """`data.evaluation_dataset` with one-hot labels (the smoothed loss needs them)."""
    return data.evaluation_dataset(images, labels, batch_size=batch_size).map(
        lambda batch_images, batch_labels: (batch_images,
                                            tf.one_hot(batch_labels, num_classes)))


@dataclasses.dataclass
class TrainingPlan:
    """What `teachers.train_member` needs to fit one member of a family."""

    model: keras.Model
    train: tf.data.Dataset
    validation: tf.data.Dataset
    steps_per_epoch: int
    epochs: int
    callbacks: list[keras.callbacks.Callback]
    batch_size: int
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def training_plan(
    config: AirbenchConfig,
    train_images: np.ndarray,
    train_labels: np.ndarray,
    validation_images: np.ndarray,
    validation_labels: np.ndarray,
    *,
    member_index: int,
    seed: int,
    width_jitter: float = 0.0,
    jit_compile: bool | str = False,
    num_classes: int = NUM_CLASSES,
) -> TrainingPlan:
    """The compiled member, its augmented data and its callbacks (lookahead)."""
    model = build_airbench_member(config, train_images, member_index, seed, width_jitter,
                                  num_classes)
    steps = data.steps_per_epoch(len(train_labels), config.batch_size)
    total_steps = steps * config.epochs
    compile_member(model, config, total_steps, jit_compile)
    callbacks: list[keras.callbacks.Callback] = []
    if config.lookahead_every > 0:
        callbacks.append(Lookahead(total_steps, config.lookahead_every, config.lookahead_decay))
    train = flip_translate_dataset(
        train_images, train_labels, batch_size=config.batch_size, translate=config.translate,
        alternating_flip=config.alternating_flip, seed=seed * 1000 + member_index,
        num_classes=num_classes,
    )
    return TrainingPlan(
        model=model, train=train,
        validation=one_hot_evaluation_dataset(validation_images, validation_labels,
                                              num_classes=num_classes),
        steps_per_epoch=steps, epochs=config.epochs, callbacks=callbacks,
        batch_size=config.batch_size,
        extra={"widths": member_widths(config, member_index, seed, width_jitter)},
    )
