"""The `Distiller`: a Keras model that trains a student to mimic a teacher's logits.

    distiller = Distiller(student, teacher=None)          # teacher logits come from the data
    distiller.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True))
    distiller.fit(transfer_dataset, validation_data=validation_dataset)
    distiller.student.save("student.keras")               # the teacher is never saved with it

Batches are `(images, teacher_logits, labels)` when the teacher's logits were cached, or
`(images, labels)` when a frozen teacher runs inside `train_step` (online mode).
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from mimic_tf.losses import hard_label_loss, knowledge_distillation_loss, mimic_loss
from mimic_tf.vocabulary import LOSSES


class Distiller(keras.Model):
    """Trains `student` on a teacher's logits; gradients reach the student's variables only.

    Losses (`loss=`):
      - `"mimic"`: the paper's L2 on logits,
        `mean_over_batch(sum_over_classes(square(student_logits - teacher_logits)))`;
      - `"kd"`: Hinton's distillation with `temperature` and `alpha` (see `losses.py`);
      - `"hard"`: cross-entropy on 0/1 labels only (the paper's hard-label baselines).

    Metrics: `loss` (the objective above), `accuracy` (student on true labels) and
    `agreement` (top-1 agreement of student and teacher, when teacher logits are known).
    """

    def __init__(
        self,
        student: keras.Model,
        teacher: keras.Model | None = None,
        *,
        loss: str = "mimic",
        temperature: float = 4.0,
        alpha: float = 0.9,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if loss not in LOSSES:
            raise ValueError(f"unknown distillation loss {loss!r}; choose one of {LOSSES}")
        self.student = student
        self.teacher = teacher
        if teacher is not None:
            teacher.trainable = False
        self.loss_name = loss
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.agreement_metric = keras.metrics.Mean(name="agreement")
        # The student is built already; marking the wrapper built lets KerasTuner (and
        # checkpoints) save weights before the first batch.
        self.built = True

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        return [self.loss_tracker, self.accuracy_metric, self.agreement_metric]

    def call(self, images, training: bool = False):
        return self.student(images, training=training)

    def _unpack(self, data):
        """(images, teacher_logits or None, labels) from a cached or an online batch."""
        if len(data) == 3:
            images, teacher_logits, labels = data
        elif len(data) == 2:
            images, labels = data
            teacher_logits = None
            if self.teacher is not None:
                teacher_logits = ops.stop_gradient(self.teacher(images, training=False))
        else:
            raise ValueError(
                "Distiller batches are (images, teacher_logits, labels) or (images, labels); "
                f"got a tuple of {len(data)}"
            )
        if teacher_logits is None and self.loss_name != "hard":
            raise ValueError(
                f"loss '{self.loss_name}' needs teacher logits: pass batches of "
                "(images, teacher_logits, labels) or give the Distiller a teacher"
            )
        return images, teacher_logits, labels

    def _objective(self, teacher_logits, student_logits, labels):
        """Per-example loss of the configured kind."""
        if self.loss_name == "mimic":
            return mimic_loss(teacher_logits, student_logits)
        if self.loss_name == "kd":
            return knowledge_distillation_loss(
                teacher_logits, student_logits, labels, self.temperature, self.alpha
            )
        return hard_label_loss(labels, student_logits)

    def _update_metrics(self, loss, teacher_logits, student_logits, labels) -> dict:
        self.loss_tracker.update_state(loss)
        self.accuracy_metric.update_state(labels, student_logits)
        if teacher_logits is None:
            return {m.name: m.result() for m in (self.loss_tracker, self.accuracy_metric)}
        agrees = ops.equal(ops.argmax(student_logits, -1), ops.argmax(teacher_logits, -1))
        self.agreement_metric.update_state(ops.cast(agrees, "float32"))
        return {m.name: m.result() for m in self.metrics}

    def train_step(self, data):
        # 1. Unpack; the teacher's logits come from the cache or from the frozen teacher,
        #    outside the tape, so no gradient ever reaches the teacher.
        images, teacher_logits, labels = self._unpack(data)

        # 2. Forward the student under the tape: L = mean_i sum_c (g(x_i)_c - z_i,c)^2.
        with tf.GradientTape() as tape:
            student_logits = self.student(images, training=True)
            loss = ops.mean(self._objective(teacher_logits, student_logits, labels))
            # Gradients are summed over replicas; scale for mixed precision if enabled.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled_loss = self.optimizer.scale_loss(loss / replicas)

        # 3. Gradients over the student's variables only.
        student_variables = self.student.trainable_variables
        gradients = tape.gradient(scaled_loss, student_variables)

        # 4. Apply them (the loss-scale optimizer unscales first).
        self.optimizer.apply(gradients, student_variables)

        # 5. Update the metrics.
        return self._update_metrics(loss, teacher_logits, student_logits, labels)

    def test_step(self, data):
        images, teacher_logits, labels = self._unpack(data)
        student_logits = self.student(images, training=False)
        loss = ops.mean(self._objective(teacher_logits, student_logits, labels))
        return self._update_metrics(loss, teacher_logits, student_logits, labels)

    def predict_step(self, data):
        images = data[0] if isinstance(data, (tuple, list)) else data
        return self.student(images, training=False)

    def get_config(self) -> dict:
        raise NotImplementedError(
            "a Distiller is a training wrapper and is not saved: save `distiller.student`"
        )
