"""The teacher ensemble and what it predicts: the mean of its members' logits, flip-averaged.

The ensemble is one Keras model taking uint8 `[N, H, W, C]` whose output is the mean of the
members' logits (pre-softmax), the students' regression target; with `teacher.flip_average`
(airbench's flip test-time augmentation) each member's logits are first averaged over the
image and its mirror.

    ensemble = build_ensemble(members, flip_average=True)
    accuracy(predict_logits(ensemble, splits.test_images), splits.test_labels)
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import keras
import numpy as np

from mimic_tf.layout import TEACHER_EVALUATION_FILE as EVALUATION_FILE
from mimic_tf.teachers.airbench import HorizontalFlip

ENSEMBLE_FILE = "ensemble.keras"


def build_ensemble(members: list[keras.Model], flip_average: bool = False) -> keras.Model:
    """One model whose logits are the mean of the members' logits.

    With `flip_average`, the mean runs over every member on the images and on their mirror
    images (flip test-time augmentation): `mean_m (f_m(x) + f_m(flip(x))) / 2`.
    """
    if not members:
        raise ValueError("an ensemble needs at least one member")
    images = keras.Input(tuple(members[0].inputs[0].shape[1:]), dtype="uint8", name="images")
    views = [images]
    if flip_average:
        views.append(HorizontalFlip(name="mirror")(images))
    member_logits = [member(view, training=False) for member in members for view in views]
    if len(member_logits) == 1:
        logits = keras.layers.Identity(name="ensemble_logits")(member_logits[0])
    else:
        logits = keras.layers.Average(name="ensemble_logits")(member_logits)
    ensemble = keras.Model(images, logits, name="teacher_ensemble")
    ensemble.trainable = False
    return ensemble


def load_model(path: Path) -> keras.Model:
    """Load a `.keras` model saved by mimic-tf (custom layers are registered on import)."""
    return keras.saving.load_model(path, compile=False)


def weights_fingerprint(model: keras.Model) -> str:
    """sha256 over the shapes and bytes of every weight of `model`."""
    digest = hashlib.sha256()
    for weight in model.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        digest.update(f"{weight.path}:{value.shape}:{value.dtype}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def saved_evaluation_logits(directory: str | Path, teacher: keras.Model
                            ) -> dict[str, np.ndarray] | None:
    """The ensemble's validation and test logits that `ensure_teacher` computed, if they are
    `teacher`'s (its weights' fingerprint), else None: the transfer set then needs not
    run the ensemble over both splits again."""
    path = Path(directory) / EVALUATION_FILE
    if not path.is_file():
        return None
    with np.load(path) as saved:
        if str(saved["teacher_weights"]) != weights_fingerprint(teacher):
            return None
        return {"validation": saved["validation"], "test": saved["test"]}


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of logits `[N, 10]` against integer labels `[N]`."""
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def predict_logits(model: keras.Model, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Logits of `model` on uint8 images, in batches, without augmentation."""
    return np.asarray(model.predict(images, batch_size=batch_size, verbose=0), dtype=np.float32)


def plain_and_flip_averaged_logits(
    member: keras.Model, images: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A member's logits on uint8 images, and their mean with its mirror images' logits."""
    plain = predict_logits(member, images)
    mirrored = predict_logits(member, np.ascontiguousarray(images[:, :, ::-1]))
    return plain, (plain + mirrored) / 2


def member_logits(member: keras.Model, images: np.ndarray, flip_average: bool) -> np.ndarray:
    """A member's logits on uint8 images, averaged with its mirror images' if asked."""
    if flip_average:
        return plain_and_flip_averaged_logits(member, images)[1]
    return predict_logits(member, images)
