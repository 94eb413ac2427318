"""airbench94's training recipe (Jordan 2024) for the nets of `mimic_tf/teachers/airbench.py`.

What turns a member net into a fitted teacher member, each piece the Keras idiom of one of
airbench's techniques (the table in `mimic_tf/teachers/airbench.py`'s docstring says what each
buys):

- `WarmupLinearDecay`: the triangular learning-rate schedule;
- `Lookahead`: the EMA of the weights every few steps, a callback;
- `compile_member`: Nesterov SGD with decoupled weight decay and label-smoothed
  cross-entropy;
- `flip_translate_dataset`: alternating flips and reflect-padded translations;
- `training_plan`: all of the above for one member, what `teachers.train_member` fits.

    plan = training_plan(config, train_images, train_labels, validation_images,
                         validation_labels, member_index=0, seed=0)
    plan.model.fit(plan.train, steps_per_epoch=plan.steps_per_epoch, epochs=plan.epochs,
                   validation_data=plan.validation, callbacks=plan.callbacks)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from mimic_tf import data
from mimic_tf.config import AirbenchConfig
from mimic_tf.runtime import resolve_precision
from mimic_tf.teachers.airbench import build_airbench_member, member_widths

WARMUP_START = 0.2  # the schedule's first rate, as a fraction of the peak


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

    def get_state(self) -> dict[str, list[np.ndarray]]:
        """The moving average, for a resumed training (`mimic_tf.resume`)."""
        return {"ema": self._ema}

    def set_state(self, state: dict[str, list[np.ndarray]]) -> None:
        """Take back a moving average `get_state` gave, after `on_train_begin`."""
        if len(state["ema"]) != len(self._variables):
            raise ValueError(f"the lookahead state has {len(state['ema'])} arrays, "
                             f"the model {len(self._variables)} averaged weights")
        self._ema = [np.array(ema, copy=True) for ema in state["ema"]]

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
    if resolve_precision(config.precision) == "mixed_float16":  # float16 underflows unscaled
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
    num_classes: int,
    first_epoch: int = 0,
) -> tf.data.Dataset:
    """Infinite `(uint8 images [B, H, W, C], one-hot float32 labels [B, classes])` batches,
    from epoch `first_epoch` on (a resumed training's).

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
                                data.shuffled_order(num_examples, seed), first_epoch=first_epoch)
        .map(make_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def one_hot_evaluation_dataset(images: np.ndarray, labels: np.ndarray,
                               batch_size: int = 500, *, num_classes: int
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
    num_classes: int,
    first_epoch: int = 0,
) -> TrainingPlan:
    """The compiled member, its augmented data from epoch `first_epoch` on, and its callbacks
    (lookahead)."""
    model = build_airbench_member(config, train_images, member_index, seed, width_jitter,
                                  num_classes=num_classes)
    steps = data.steps_per_epoch(len(train_labels), config.batch_size)
    total_steps = steps * config.epochs
    compile_member(model, config, total_steps, jit_compile)
    callbacks: list[keras.callbacks.Callback] = []
    if config.lookahead_every > 0:
        callbacks.append(Lookahead(total_steps, config.lookahead_every, config.lookahead_decay))
    train = flip_translate_dataset(
        train_images, train_labels, batch_size=config.batch_size, translate=config.translate,
        alternating_flip=config.alternating_flip, seed=seed * 1000 + member_index,
        num_classes=num_classes, first_epoch=first_epoch,
    )
    return TrainingPlan(
        model=model, train=train,
        validation=one_hot_evaluation_dataset(validation_images, validation_labels,
                                              num_classes=num_classes),
        steps_per_epoch=steps, epochs=config.epochs, callbacks=callbacks,
        batch_size=config.batch_size,
        extra={"widths": member_widths(config, member_index, seed, width_jitter)},
    )
