"""The preprocessing layer every model starts with: raw uint8 pixels to standardised floats.

Each image is standardised by its own mean and standard deviation (Urban et al. 2017: no ZCA),
then multiplied by the searched input scale. Because preprocessing is part of the model, every
saved teacher and student takes raw uint8 images `[N, 32, 32, 3]`.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="mimic_tf")
class PerImageStandardization(keras.layers.Layer):
    """Per-image standardisation times an input scale.

    Formula: `y = input_scale * (x - mean(x)) / max(std(x), 1 / sqrt(num_pixels))`,
    mean and std taken over height, width and channels of each image, as
    `tf.image.per_image_standardization` does. Computed in float32 whatever the policy.
    """

    def __init__(self, input_scale: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.input_scale = float(input_scale)

    def call(self, images):
        pixels = ops.cast(images, "float32")
        num_values = ops.cast(ops.prod(ops.shape(pixels)[1:]), "float32")
        mean = ops.mean(pixels, axis=(1, 2, 3), keepdims=True)
        std = ops.std(pixels, axis=(1, 2, 3), keepdims=True)
        std = ops.maximum(std, ops.rsqrt(num_values))
        standardized = self.input_scale * (pixels - mean) / std
        return ops.cast(standardized, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "input_scale": self.input_scale}
