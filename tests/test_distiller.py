"""The Distiller: closed-form mimic loss, frozen teacher, learning, precision and distribution."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from mimic_tf.data.spec import CIFAR10
from mimic_tf.distiller import Distiller
from mimic_tf.losses import MimicLoss, knowledge_distillation_loss, mimic_loss
from mimic_tf.students import build_student

BATCH = 32


@pytest.fixture
def batch():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (BATCH, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, BATCH).astype(np.int64)
    return images, labels


def sgd(learning_rate=0.01):
    return keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True)


def test_mimic_loss_is_the_sum_over_classes_of_squared_logit_differences():
    rng = np.random.default_rng(1)
    teacher_logits = rng.normal(size=(5, 10)).astype(np.float32)
    student_logits = rng.normal(size=(5, 10)).astype(np.float32)
    per_example = np.sum((student_logits - teacher_logits) ** 2, axis=1)
    # The function the Distiller's train_step calls, then the Keras loss class built on it.
    np.testing.assert_allclose(mimic_loss(teacher_logits, student_logits), per_example,
                               rtol=1e-6)
    expected = np.mean(per_example)
    assert float(MimicLoss()(teacher_logits, student_logits)) == pytest.approx(expected, rel=1e-6)
    mse = float(keras.losses.MeanSquaredError()(teacher_logits, student_logits))
    assert float(MimicLoss()(teacher_logits, student_logits)) == pytest.approx(10 * mse, rel=1e-5)


def test_first_step_loss_equals_the_closed_form(batch):
    images, labels = batch
    student = build_student("mlp", 2, 1.0e5, seed=0, spec=CIFAR10)
    teacher_logits = np.random.default_rng(2).normal(size=(BATCH, 10)).astype(np.float32)
    initial_logits = student.predict(images, verbose=0)
    expected = np.mean(np.sum((initial_logits - teacher_logits) ** 2, axis=1))
    distiller = Distiller(student)
    distiller.compile(optimizer=sgd())
    history = distiller.fit(
        tf.data.Dataset.from_tensors((images, teacher_logits, labels)), epochs=1, verbose=0,
        shuffle=False,
    )
    assert history.history["loss"][0] == pytest.approx(expected, rel=1e-4)
    expected_agreement = np.mean(initial_logits.argmax(1) == teacher_logits.argmax(1))
    assert history.history["agreement"][0] == pytest.approx(expected_agreement)
    assert history.history["accuracy"][0] == pytest.approx(
        np.mean(initial_logits.argmax(1) == labels)
    )


def test_teacher_weights_are_unchanged_after_fit(batch):
    images, labels = batch
    teacher = build_student("cnn", 1, 1.0e5, seed=1, spec=CIFAR10)
    teacher_weights = [w.copy() for w in teacher.get_weights()]
    student = build_student("mlp", 1, 1.0e5, seed=2, spec=CIFAR10)
    student_weights = [w.copy() for w in student.get_weights()]
    distiller = Distiller(student, teacher)
    distiller.compile(optimizer=sgd())
    distiller.fit(tf.data.Dataset.from_tensors((images, labels)).repeat(3), epochs=1, verbose=0,
                  shuffle=False)
    assert not teacher.trainable
    assert all(np.array_equal(a, b) for a, b in zip(teacher_weights, teacher.get_weights(),
                                                    strict=True))
    assert any(not np.array_equal(a, b) for a, b in zip(student_weights, student.get_weights(),
                                                        strict=True))
    assert {id(v) for v in distiller.trainable_variables} == {
        id(v) for v in student.trainable_variables
    }


def test_student_mimicking_a_fixed_random_teacher_lowers_its_loss(batch):
    images, labels = batch
    teacher = build_student("cnn", 2, 1.0e5, seed=5, spec=CIFAR10)
    teacher_logits = teacher.predict(images, verbose=0)
    distiller = Distiller(build_student("mlp", 2, 3.0e5, seed=6, spec=CIFAR10))
    distiller.compile(optimizer=sgd(0.005))
    dataset = tf.data.Dataset.from_tensors((images, teacher_logits, labels)).repeat(10)
    history = distiller.fit(dataset, epochs=4, verbose=0, shuffle=False)
    losses = history.history["loss"]
    assert losses[-1] < 0.5 * losses[0], losses
    assert history.history["agreement"][-1] > history.history["agreement"][0]


@pytest.mark.parametrize("loss", ["kd", "hard"])
def test_other_losses_train(batch, loss):
    images, labels = batch
    teacher_logits = np.random.default_rng(3).normal(size=(BATCH, 10)).astype(np.float32)
    distiller = Distiller(build_student("mlp", 1, 1.0e5, seed=0, spec=CIFAR10), loss=loss,
                          temperature=2.0)
    distiller.compile(optimizer=sgd())
    data = (images, labels) if loss == "hard" else (images, teacher_logits, labels)
    history = distiller.fit(tf.data.Dataset.from_tensors(data).repeat(5), epochs=2, verbose=0,
                            shuffle=False)
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_knowledge_distillation_loss_closed_form():
    teacher_logits = np.array([[2.0, 0.0, -1.0]], np.float32)
    student_logits = np.array([[0.0, 1.0, 0.0]], np.float32)
    temperature, alpha = 2.0, 0.7

    def softmax(z):
        e = np.exp(z - z.max())
        return e / e.sum()

    p = softmax(teacher_logits[0] / temperature)
    q = softmax(student_logits[0] / temperature)
    soft = temperature**2 * np.sum(p * np.log(p / q))
    hard = -np.log(softmax(student_logits[0])[0])
    value = knowledge_distillation_loss(teacher_logits, student_logits, np.array([0]),
                                        temperature, alpha)
    assert float(value[0]) == pytest.approx(alpha * soft + (1 - alpha) * hard, rel=1e-5)


def test_missing_teacher_logits_is_a_clear_error(batch):
    images, labels = batch
    distiller = Distiller(build_student("mlp", 1, 1.0e5, spec=CIFAR10))
    distiller.compile(optimizer=sgd())
    with pytest.raises(ValueError, match="needs teacher logits"):
        distiller.fit(tf.data.Dataset.from_tensors((images, labels)), epochs=1, verbose=0,
                      shuffle=False)


def test_distiller_is_not_saved_but_its_student_is(tmp_path):
    distiller = Distiller(build_student("mlp", 1, 1.0e5, spec=CIFAR10))
    with pytest.raises(NotImplementedError, match="save `distiller.student`"):
        distiller.get_config()
    distiller.save_weights(tmp_path / "unbuilt-is-fine.weights.h5")  # what KerasTuner does
    distiller.student.save(tmp_path / "student.keras")
    restored = keras.saving.load_model(tmp_path / "student.keras")
    assert restored.count_params() == distiller.student.count_params()


def test_mixed_precision_applies_loss_scaling(batch):
    images, labels = batch
    teacher_logits = np.random.default_rng(4).normal(size=(BATCH, 10)).astype(np.float32)
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        student = build_student("cnn", 2, 1.0e5, seed=0, spec=CIFAR10)
        distiller = Distiller(student)
        distiller.compile(optimizer=sgd())
        history = distiller.fit(
            tf.data.Dataset.from_tensors((images, teacher_logits, labels)).repeat(3),
            epochs=2, verbose=0, shuffle=False)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    assert isinstance(distiller.optimizer, keras.optimizers.LossScaleOptimizer)
    assert student.get_layer("conv_1").compute_dtype == "float16"
    assert student.output.dtype == "float32"
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["loss"][-1] < history.history["loss"][0]


def test_mirrored_strategy_gives_the_same_step_as_no_strategy(batch):
    images, labels = batch
    teacher_logits = np.random.default_rng(5).normal(size=(BATCH, 10)).astype(np.float32)
    dataset = tf.data.Dataset.from_tensors((images, teacher_logits, labels))

    def one_step():
        distiller = Distiller(build_student("mlp", 2, 1.0e5, seed=9, spec=CIFAR10))
        distiller.compile(optimizer=sgd())
        distiller.fit(dataset, epochs=1, verbose=0, shuffle=False)
        return distiller.student.get_weights()

    plain = one_step()
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        mirrored = one_step()
    for a, b in zip(plain, mirrored, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
