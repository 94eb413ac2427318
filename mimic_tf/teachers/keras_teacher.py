"""Bring your own teacher: a trained Keras model (`teacher.family: keras`), checked at load.

    teacher = load_keras_teacher(config.teacher, splits.spec)   # uint8 images -> logits

`teacher.path` names a `.keras` file or a SavedModel folder (its `serving_default` signature)
whose model maps a batch of images to one logit per class. mimic-tf never trains it: it wraps
it so that it takes the run's raw uint8 images (cast to float32 and multiplied by
`teacher.pixel_scale` when that is > 0), checks its input shape and output width against the
data, and hands it to the rest of the pipeline as a one-member ensemble.
"""

from __future__ import annotations

from pathlib import Path

import keras
from keras import ops

from mimic_tf.config import TeacherConfig
from mimic_tf.data.spec import DatasetSpec


class TeacherLoadError(RuntimeError):
    """The teacher at `teacher.path` is missing, unreadable or does not fit the data."""


@keras.saving.register_keras_serializable(package="mimic_tf")
class PixelScale(keras.layers.Layer):
    """uint8 pixels to float32 times `scale` (the input convention of a user's teacher)."""

    def __init__(self, scale: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, images):
        return ops.cast(images, "float32") * self.scale

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "scale": self.scale}


def _load(path: Path):
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise TeacherLoadError(f"teacher.path {path} is a folder without saved_model.pb; "
                                   "point it at a .keras file or a SavedModel folder")
        return keras.layers.TFSMLayer(str(path), call_endpoint="serving_default",
                                      name="user_teacher")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as error:  # any unreadable file: the message names it and the fix
        raise TeacherLoadError(f"cannot load the teacher at {path} ({error}); give a .keras "
                               "file saved by model.save or a SavedModel folder") from None


def load_keras_teacher(config: TeacherConfig, spec: DatasetSpec) -> keras.Model:
    """The user's model, taking the run's uint8 images `[N, H, W, C]`, returning logits.

    Raises:
        TeacherLoadError: no file there, an unreadable one, or a model whose input shape or
            output width does not match the data (the message names both and the fix).
    """
    path = Path(config.path).expanduser()
    if not path.exists():
        raise TeacherLoadError(f"teacher.path {path} does not exist; point it at a .keras "
                               "file or a SavedModel folder of your trained model")
    inner = _load(path)
    expected = tuple(spec.image_shape)
    if isinstance(inner, keras.Model) and inner.inputs:
        takes = tuple(inner.inputs[0].shape[1:])
        if len(takes) != 3 or any(want is not None and want != have
                                  for want, have in zip(takes, expected, strict=True)):
            raise TeacherLoadError(
                f"the teacher at {path} takes images {list(takes)}, the data are "
                f"{list(expected)} ({spec.describe()}): set data.image_size to the teacher's "
                "height and width, or give a teacher trained on images like these")
    images = keras.Input(expected, dtype="uint8", name="images")
    pixels = PixelScale(config.pixel_scale, name="pixel_scale")(images) \
        if config.pixel_scale > 0 else images
    try:
        outputs = inner(pixels)
    except Exception as error:  # a SavedModel with another signature, a dtype it refuses...
        raise TeacherLoadError(
            f"the teacher at {path} cannot take {list(expected)} images "
            f"({'float32 x ' + str(config.pixel_scale) if config.pixel_scale else 'uint8'}): "
            f"{error}; check data.image_size and teacher.pixel_scale") from None
    if isinstance(outputs, dict):
        if len(outputs) != 1 and "logits" not in outputs:
            raise TeacherLoadError(f"the teacher at {path} returns {sorted(outputs)}; it must "
                                   "return one tensor of logits (or an output named 'logits')")
        outputs = outputs.get("logits", next(iter(outputs.values())))
    width = outputs.shape[-1]
    if len(outputs.shape) != 2 or width != spec.num_classes:
        raise TeacherLoadError(
            f"the teacher at {path} returns outputs of shape {list(outputs.shape)}, the data "
            f"have {spec.num_classes} classes: it must return [batch, {spec.num_classes}] "
            "logits, one per class in the order of the data's class names")
    logits = keras.layers.Identity(name="logits", dtype="float32")(outputs)
    return keras.Model(images, logits, name="teacher_member_00")
