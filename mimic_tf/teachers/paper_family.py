"""The paper's teacher family (Urban et al. 2017, section 2): its net and its training plan.

    standardize -> [conv3x3 x2] -> mp -> drop -> [conv3x3 x2] -> mp -> drop
                -> [conv3x3 x4] -> mp -> drop -> fc -> drop -> fc -> drop -> logits

ReLU everywhere, L2 weight decay on every kernel, widths from `TeacherConfig` (jittered per
member by `width_jitter`); SGD with Nesterov momentum under the paper's plateau schedule, on
the paper's augmentation (`mimic_tf.data.augmentation`), a seed per member.

    model = build_teacher_member(config.teacher, member_index, seed, spec=splits.spec)
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from mimic_tf import data
from mimic_tf.config import ExperimentConfig, TeacherConfig
from mimic_tf.data.spec import DatasetSpec
from mimic_tf.preprocessing import PerImageStandardization
from mimic_tf.schedule import plateau_callbacks
from mimic_tf.teachers.airbench_recipe import TrainingPlan

CONV_GROUPS = (2, 2, 4)  # conv layers per group; a max-pool closes each group


def member_widths(config: TeacherConfig, member_index: int, seed: int) -> tuple[list, list]:
    """The conv and FC widths of member `member_index`, jittered by `config.width_jitter`."""
    conv_widths, fc_widths = list(config.conv_widths), list(config.fc_widths)
    if config.width_jitter > 0:
        rng = np.random.default_rng([seed, member_index])
        jitter = config.width_jitter
        group_scales = rng.uniform(1 - jitter, 1 + jitter, size=len(CONV_GROUPS) + 1)
        group_of_layer = [g for g, size in enumerate(CONV_GROUPS) for _ in range(size)]
        conv_widths = [max(1, round(w * group_scales[g]))
                       for w, g in zip(conv_widths, group_of_layer, strict=True)]
        fc_widths = [max(1, round(w * group_scales[-1])) for w in fc_widths]
    return conv_widths, fc_widths


def build_teacher_member(
    config: TeacherConfig, member_index: int = 0, seed: int = 0, *, spec: DatasetSpec
) -> keras.Model:
    """One CNN of the paper family; takes uint8 images as `spec` describes them, returns
    logits, one per class of `spec`."""
    conv_widths, fc_widths = member_widths(config, member_index, seed)
    regularizer = keras.regularizers.L2(config.weight_decay) if config.weight_decay else None
    layer_seed = (seed * 1000 + member_index) * 100

    def glorot() -> keras.initializers.Initializer:
        nonlocal layer_seed
        layer_seed += 1
        return keras.initializers.GlorotUniform(seed=layer_seed)

    images = keras.Input(spec.image_shape, dtype="uint8", name="images")
    x = PerImageStandardization(name="standardize")(images)
    layer = 0
    for group, size in enumerate(CONV_GROUPS):
        for _ in range(size):
            x = keras.layers.Conv2D(
                conv_widths[layer], 3, padding="same", activation="relu",
                kernel_initializer=glorot(), kernel_regularizer=regularizer,
                name=f"conv_{layer + 1}",
            )(x)
            layer += 1
        x = keras.layers.MaxPooling2D(2, name=f"pool_{group + 1}")(x)
        x = keras.layers.Dropout(config.pool_dropout[group], seed=layer_seed,
                                 name=f"pool_dropout_{group + 1}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for index, units in enumerate(fc_widths, start=1):
        x = keras.layers.Dense(units, activation="relu", kernel_initializer=glorot(),
                               kernel_regularizer=regularizer, name=f"fc_{index}")(x)
        x = keras.layers.Dropout(config.fc_dropout, seed=layer_seed, name=f"fc_dropout_{index}")(x)
    logits = keras.layers.Dense(spec.num_classes, kernel_initializer=glorot(),
                                kernel_regularizer=regularizer, dtype="float32",
                                name="logits")(x)
    return keras.Model(images, logits, name=f"teacher_member_{member_index:02d}")


def paper_training_plan(config: ExperimentConfig, splits: data.Splits, member_index: int,
                jit_compile: bool | str, first_epoch: int) -> TrainingPlan:
    """The paper family's member, its augmented data from epoch `first_epoch` on and its
    plateau schedule."""
    teacher = config.teacher
    model = build_teacher_member(teacher, member_index, config.seed, spec=splits.spec)
    model.compile(
        jit_compile=jit_compile,
        optimizer=keras.optimizers.SGD(teacher.learning_rate, momentum=teacher.momentum,
                                       nesterov=True),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    # Members see different augmented views: the augmentation seed is per member.
    member_augment = dataclasses.replace(
        config.augment, seed=config.augment.seed + 7919 * (member_index + 1)
    )
    train = data.training_dataset(
        splits.train_images, splits.train_labels, batch_size=teacher.batch_size,
        augment_config=member_augment, shuffle_seed=config.seed * 1000 + member_index,
        first_epoch=first_epoch,
    )
    validation = data.evaluation_dataset(
        splits.validation_images, splits.validation_labels, batch_size=500
    )
    return TrainingPlan(
        model=model, train=train, validation=validation,
        steps_per_epoch=data.steps_per_epoch(len(splits.train_labels), teacher.batch_size),
        epochs=teacher.schedule.epochs,
        callbacks=plateau_callbacks(teacher.schedule, monitor="val_accuracy"),
        batch_size=teacher.batch_size,
    )
