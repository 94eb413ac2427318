"""Distillation losses: the paper's logit mimic loss and Hinton's knowledge distillation.

Both return one value per example; Keras (or the Distiller) averages over the batch.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mimic_tf")
class MimicLoss(keras.losses.Loss):
    """L2 regression of the teacher's logits (Ba & Caruana 2014; Urban et al. 2017, eq. 1).

    Formula: `loss = mean_over_batch(sum_over_classes(square(student_logits - teacher_logits)))`

    The sum over the 10 classes (not a mean) is the paper's scale: it is 10x Keras'
    `MeanSquaredError` on the same logits. `y_true` holds the teacher's logits.
    """

    def __init__(self, name: str = "mimic_loss", **kwargs) -> None:
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        return mimic_loss(teacher_logits=y_true, student_logits=y_pred)


def mimic_loss(teacher_logits, student_logits):
    """Per-example mimic loss: `sum_over_classes(square(student_logits - teacher_logits))`."""
    teacher_logits = ops.cast(teacher_logits, "float32")
    student_logits = ops.cast(student_logits, "float32")
    return ops.sum(ops.square(student_logits - teacher_logits), axis=-1)


def hard_label_loss(labels, student_logits):
    """Per-example cross-entropy of the student's logits on 0/1 labels."""
    return keras.losses.sparse_categorical_crossentropy(
        labels, ops.cast(student_logits, "float32"), from_logits=True
    )


def knowledge_distillation_loss(
    teacher_logits, student_logits, labels, temperature: float, alpha: float
):
    """Per-example Hinton et al. (2015) distillation loss.

    Formula: `loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))
                     + (1 - alpha) * crossentropy(labels, softmax(student))`

    The `T^2` factor keeps the soft term's gradients on the scale of the hard term's.
    """
    teacher_logits = ops.cast(teacher_logits, "float32")
    student_logits = ops.cast(student_logits, "float32")
    teacher_probabilities = ops.softmax(teacher_logits / temperature, axis=-1)
    teacher_log_probabilities = ops.log_softmax(teacher_logits / temperature, axis=-1)
    student_log_probabilities = ops.log_softmax(student_logits / temperature, axis=-1)
    divergence = ops.sum(
        teacher_probabilities * (teacher_log_probabilities - student_log_probabilities), axis=-1
    )
    soft = temperature**2 * divergence
    return alpha * soft + (1.0 - alpha) * hard_label_loss(labels, student_logits)
