"""Floating-point operations of a Keras model's forward pass, per image, in closed form.

Counts the multiply-adds of every `Conv2D` and `Dense` layer (2 FLOPs each), the layers that
hold nearly all of a convnet's or an MLP's arithmetic; pooling, normalisation and activations
are left out. Nested functional models (an ensemble's members) are counted once each, as
often as they appear among the layers. Training costs about 3x the forward pass.

    forward_flops(build_student("cnn", 2, 1e6, spec=CIFAR10))   # FLOPs for one 32x32x3 image
"""

from __future__ import annotations

import math

import keras


def _layer_flops(layer: keras.layers.Layer) -> int:
    if isinstance(layer, keras.Model):
        return forward_flops(layer)
    if isinstance(layer, keras.layers.Conv2D):
        output = layer.output.shape  # (None, H, W, C)
        kernel = layer.kernel.shape  # (kh, kw, C_in / groups, C_out)
        return 2 * math.prod(kernel) * output[1] * output[2]
    if isinstance(layer, keras.layers.Dense):
        positions = math.prod(layer.output.shape[1:-1])  # 1 for a flat input
        return 2 * math.prod(layer.kernel.shape) * positions
    return 0


def forward_flops(model: keras.Model) -> int:
    """FLOPs of one image through `model`'s conv and dense layers (a functional model)."""
    return sum(_layer_flops(layer) for layer in model.layers)


TRAINING_FLOPS_PER_FORWARD = 3  # forward, plus the gradients for inputs and for weights
