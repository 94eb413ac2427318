"""The serving contract of an exported student: signature names, tensor names and dtypes.

Two signatures are exported (see docs/serving.md), shown for CIFAR-10; other data carry their
own image shape, class count and class names (`mimic_tf.data.spec.DatasetSpec`):

    serving_default  (method tensorflow/serving/predict, the Predict RPC)
        inputs   images         uint8   [batch, 32, 32, 3]   raw RGB pixels
        outputs  logits         float32 [batch, 10]
                 probabilities  float32 [batch, 10]          softmax(logits)
                 classes        int64   [batch]              argmax(logits)

    classify         (method tensorflow/serving/classify, the Classify RPC)
        inputs   inputs         string  [batch]              serialized tf.Example, each with
                                                             feature "image/encoded": one PNG,
                                                             JPEG, BMP or GIF of 32x32x3
        outputs  classes        string  [batch, 10]          class names (CIFAR-10 order)
                 scores         float32 [batch, 10]          probabilities

The tensor names of the classify signature are TF Serving's (`tf.saved_model.CLASSIFY_*`), so
`tensorflow_model_server` serves `Classify` on it unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import tensorflow as tf

PREDICT_SIGNATURE = "serving_default"
CLASSIFY_SIGNATURE = "classify"
CLASSIFY_METHOD = "tensorflow/serving/classify"

IMAGES_INPUT = "images"
LOGITS_OUTPUT = "logits"
PROBABILITIES_OUTPUT = "probabilities"
CLASSES_OUTPUT = "classes"

CLASSIFY_INPUTS = "inputs"  # == tf.saved_model.CLASSIFY_INPUTS
CLASSIFY_CLASSES = "classes"  # == tf.saved_model.CLASSIFY_OUTPUT_CLASSES
CLASSIFY_SCORES = "scores"  # == tf.saved_model.CLASSIFY_OUTPUT_SCORES
IMAGE_FEATURE = "image/encoded"

# Files an export carries in its SavedModel folder besides the model.
WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"  # TF Serving replays them
METADATA_FILE = Path("assets.extra") / "mimic_tf.json"  # params, source, lineage



def build_signature_functions(
    model: Callable,
    image_shape: Sequence[int],
    class_names: Sequence[str],
    model_input_dtype: tf.DType = tf.uint8,
) -> dict[str, tuple[Callable, list[tf.TensorSpec]]]:
    """The two signature functions and their input specs, keyed by signature name.

    Args:
        model: the Keras student (called with `training=False`).
        image_shape: `(height, width, channels)` of one image.
        class_names: one name per logit, in logit order.
        model_input_dtype: the dtype the model's input layer takes; uint8 images are cast to it.
    """
    height, width, channels = (int(size) for size in image_shape)
    class_name_tensor = tf.constant([name.encode("utf-8") for name in class_names])

    def logits_of(images: tf.Tensor) -> tf.Tensor:
        if model_input_dtype != tf.uint8:
            images = tf.cast(images, model_input_dtype)
        return tf.cast(model(images, training=False), tf.float32)

    def serve(images: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = logits_of(images)
        return {
            LOGITS_OUTPUT: logits,
            PROBABILITIES_OUTPUT: tf.nn.softmax(logits, axis=-1),
            CLASSES_OUTPUT: tf.argmax(logits, axis=-1, output_type=tf.int64),
        }

    def decode(encoded: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
        return tf.ensure_shape(image, [height, width, channels])

    def classify(inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        features = tf.io.parse_example(
            inputs, {IMAGE_FEATURE: tf.io.FixedLenFeature([], tf.string)}
        )
        images = tf.map_fn(
            decode,
            features[IMAGE_FEATURE],
            fn_output_signature=tf.TensorSpec([height, width, channels], tf.uint8),
        )
        probabilities = tf.nn.softmax(logits_of(images), axis=-1)
        batch_size = tf.shape(inputs)[0]
        return {
            CLASSIFY_CLASSES: tf.tile(class_name_tensor[tf.newaxis, :], [batch_size, 1]),
            CLASSIFY_SCORES: probabilities,
        }

    return {
        PREDICT_SIGNATURE: (
            serve,
            [tf.TensorSpec([None, height, width, channels], tf.uint8, name=IMAGES_INPUT)],
        ),
        CLASSIFY_SIGNATURE: (
            classify,
            [tf.TensorSpec([None], tf.string, name=CLASSIFY_INPUTS)],
        ),
    }


def encode_image_example(image: np.ndarray) -> bytes:
    """One uint8 image `[H, W, C]` as a serialized `tf.Example` for the classify signature.

    The image is PNG-encoded (lossless) into the bytes feature `image/encoded`.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(
            f"expected one uint8 image [height, width, channels], got {image.dtype} "
            f"{list(image.shape)}; pass images[i] of a uint8 [N, height, width, channels] array"
        )
    png = tf.io.encode_png(image).numpy()
    example = tf.train.Example(
        features=tf.train.Features(
            feature={IMAGE_FEATURE: tf.train.Feature(bytes_list=tf.train.BytesList(value=[png]))}
        )
    )
    return example.SerializeToString()
