"""Student networks of an exact parameter budget: MLPs (1-5 hidden layers) and CNNs (1-4 conv).

The architectures follow Urban et al. 2017, section 3:

    mlp, depth 1:  linear bottleneck -> ReLU hidden -> logits
    mlp, depth d:  d ReLU hidden layers -> logits
    cnn, depth 1:  conv -> maxpool 3x3 -> linear bottleneck -> ReLU fc -> logits
    cnn, depth 2:  conv -> maxpool -> conv -> maxpool -> ReLU fc -> logits
    cnn, depth 3:  conv -> mp -> conv -> mp -> conv -> mp -> ReLU fc -> logits
    cnn, depth 4:  conv -> mp -> conv -> conv -> mp -> conv -> mp -> ReLU fc -> logits

Convolutions are 5x5 with 'same' padding, pools 2x2 (3x3 stride 2 for one conv layer), ReLU,
Glorot-uniform init times an init scale, no batch norm, no dropout. Every student starts with
`PerImageStandardization`, so it takes raw uint8 images `[N, H, W, C]` as its `spec` describes
them (any size, 1 or 3 channels).

The widths come from `mimic_tf.budgets.solve_widths`: the searched (free) widths as given, the
dependent one solved so the student meets its budget.
"""

from __future__ import annotations

import keras

from mimic_tf.budgets import KERNEL_SIZE, POOL_AFTER, budget_label, solve_widths
from mimic_tf.data.spec import DatasetSpec
from mimic_tf.preprocessing import PerImageStandardization


def _glorot(init_scale: float, seed: int | None) -> keras.initializers.Initializer:
    """Glorot-uniform init with every weight multiplied by `init_scale`."""
    return keras.initializers.VarianceScaling(
        scale=init_scale**2, mode="fan_avg", distribution="uniform", seed=seed
    )


def build_student(
    family: str,
    depth: int,
    budget: float,
    *,
    spec: DatasetSpec,
    input_scale: float = 1.0,
    init_scale: float = 1.0,
    seed: int | None = None,
    dtype_policy: str | None = None,
    dropout: float = 0.0,
    **free_widths: float,
) -> keras.Model:
    """A student of `family` ('mlp' or 'cnn') and `depth` with about `budget` parameters.

    Takes uint8 images `[N, H, W, C]` and returns float32 logits `[N, classes]`, as `spec`
    describes them. `free_widths` are the searched
    widths (`search_space` names them); the dependent width is solved.
    `dtype_policy` ('float32', 'mixed_bfloat16', 'mixed_float16'; None: Keras' global policy)
    sets the hidden layers' dtype policy; standardisation and logits stay float32. `dropout`
    > 0 adds a `Dropout` after every pool and every ReLU hidden layer (the hard-label
    baselines' regularisation, as in the paper's Table 1; no parameters are added).
    """
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout is {dropout}; allowed: a rate in [0, 1)")
    widths = solve_widths(family, depth, budget, spec, **free_widths)
    seeds = iter(range(seed * 100, seed * 100 + 100)) if seed is not None else None

    def init() -> keras.initializers.Initializer:
        return _glorot(init_scale, next(seeds) if seeds is not None else None)

    def dense(units: int, activation: str | None, name: str) -> keras.layers.Dense:
        return keras.layers.Dense(
            units, activation=activation, kernel_initializer=init(), name=name,
            dtype=dtype_policy,
        )

    def regularised(x, name: str):
        if dropout > 0:
            return keras.layers.Dropout(dropout, seed=next(seeds) if seeds else None,
                                        name=f"{name}_dropout", dtype=dtype_policy)(x)
        return x

    def conv(filters: int, name: str) -> keras.layers.Conv2D:
        return keras.layers.Conv2D(
            filters, KERNEL_SIZE, padding="same", activation="relu",
            kernel_initializer=init(), name=name, dtype=dtype_policy,
        )

    images = keras.Input(spec.image_shape, dtype="uint8", name="images")
    x = PerImageStandardization(input_scale, name="standardize")(images)
    if family == "mlp":
        x = keras.layers.Flatten(name="flatten", dtype=dtype_policy)(x)
        if depth == 1:
            x = dense(widths["bottleneck"], None, "bottleneck")(x)
            x = regularised(dense(widths["hidden"], "relu", "hidden")(x), "hidden")
        else:
            for i in range(1, depth + 1):
                x = regularised(dense(widths[f"hidden_{i}"], "relu", f"hidden_{i}")(x),
                                f"hidden_{i}")
    else:
        for i in range(1, depth + 1):
            x = conv(widths[f"filters_{i}"], f"conv_{i}")(x)
            if i in POOL_AFTER[depth]:
                size = 3 if depth == 1 else 2
                x = keras.layers.MaxPooling2D(size, strides=2, padding="same", name=f"pool_{i}",
                                              dtype=dtype_policy)(x)
                x = regularised(x, f"pool_{i}")
        x = keras.layers.Flatten(name="flatten", dtype=dtype_policy)(x)
        if depth == 1:
            x = dense(widths["bottleneck"], None, "bottleneck")(x)
        x = regularised(dense(widths["hidden"], "relu", "hidden")(x), "hidden")
    logits = keras.layers.Dense(
        spec.num_classes, kernel_initializer=init(), dtype="float32", name="logits"
    )(x)
    return keras.Model(images, logits, name=f"{family}{depth}_{budget_label(budget)}")
