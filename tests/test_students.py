"""Students land on their parameter budget for every family, depth and budget."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mimic_tf.budgets import BudgetError, count_parameters, search_space, solve_widths
from mimic_tf.data.spec import CIFAR10, DatasetSpec
from mimic_tf.students import build_student
from mimic_tf.vocabulary import DEPTHS as FAMILIES

ARCHITECTURES = [(family, depth) for family, depths in FAMILIES.items() for depth in depths]
BUDGETS = [1.0e5, 3.16e5, 1.0e6, 3.16e6, 1.0e7, 3.16e7]


def corner_widths(family, depth, budget):
    """Every combination of low, middle and high for each free width."""
    space = search_space(family, depth, budget)
    choices = [(low, (low * high) ** 0.5, high) for low, high in space.values()]
    for combination in itertools.product(*choices):
        widths = dict(zip(space, combination, strict=True))
        if not (family == "mlp" and depth > 1):
            widths = {name: round(value) for name, value in widths.items()}
        yield widths


@pytest.mark.parametrize("family,depth", ARCHITECTURES)
@pytest.mark.parametrize("budget", BUDGETS)
def test_solver_meets_every_budget_with_free_widths_anywhere_in_range(family, depth, budget):
    for widths in corner_widths(family, depth, budget):
        solved = solve_widths(family, depth, budget, CIFAR10, **widths)
        params = count_parameters(family, depth, solved, CIFAR10)
        assert abs(params - budget) <= 0.005 * budget, (widths, solved, params)


@pytest.mark.parametrize("family,depth", ARCHITECTURES)
def test_built_model_matches_the_closed_form_count(family, depth):
    budget = 3.0e5
    model = build_student(family, depth, budget, seed=0, spec=CIFAR10)
    solved = solve_widths(family, depth, budget, CIFAR10)
    assert model.count_params() == count_parameters(family, depth, solved, CIFAR10)
    assert abs(model.count_params() - budget) <= 0.005 * budget


OTHER_DATA = [
    DatasetSpec(8, 8, 1, tuple("0123456789")),  # scikit-learn's digits
    DatasetSpec(24, 24, 3, CIFAR10.class_names[:5]),  # a CIFAR-10 subset, resized
    DatasetSpec(28, 21, 1, ("a", "b", "c")),  # odd sides: the pools round up
]


@pytest.mark.parametrize("family,depth", ARCHITECTURES)
@pytest.mark.parametrize("spec", OTHER_DATA, ids=DatasetSpec.describe)
def test_other_image_shapes_and_class_counts_build_on_budget(family, depth, spec):
    budget = 1.0e5
    model = build_student(family, depth, budget, seed=0, spec=spec)
    assert model.input_shape == (None, *spec.image_shape)
    assert model.output_shape == (None, spec.num_classes)
    solved = solve_widths(family, depth, budget, spec)
    assert model.count_params() == count_parameters(family, depth, solved, spec)
    assert abs(model.count_params() - budget) <= 0.005 * budget
    images = np.zeros((2, *spec.image_shape), np.uint8)
    assert model(images).shape == (2, spec.num_classes)


def test_cifar10_is_the_default_description():
    for family, depth in ARCHITECTURES:
        solved = solve_widths(family, depth, 3.16e5, CIFAR10)
        assert solved == solve_widths(family, depth, 3.16e5, CIFAR10)
        assert count_parameters(family, depth, solved, CIFAR10) == count_parameters(
            family, depth, solved, CIFAR10)


def test_a_bad_description_is_refused():
    with pytest.raises(ValueError, match="channels 1"):
        DatasetSpec(32, 32, 4, CIFAR10.class_names)
    with pytest.raises(ValueError, match="two or more"):
        DatasetSpec(32, 32, 3, ("only",))


def test_pinned_parameter_counts():
    # The paper's rule: FC solved for 2 conv, bottleneck for 1 hidden layer.
    cnn = build_student("cnn", 2, 1.0e6, filters_1=64, filters_2=64, spec=CIFAR10)
    assert [layer.name for layer in cnn.layers] == [
        "images", "standardize", "conv_1", "pool_1", "conv_2", "pool_2", "flatten",
        "hidden", "logits",
    ]
    # conv1 4,864 + conv2 (5*5*64 + 1) * f2 + fc (8*8*f2 + 1) * hidden + logits
    hidden = cnn.get_layer("hidden").units
    filters_2 = cnn.get_layer("conv_2").filters  # nudged a little to absorb rounding
    assert abs(filters_2 - 64) <= 16
    assert cnn.count_params() == (
        4_864 + 1_601 * filters_2 + (64 * filters_2 + 1) * hidden + (hidden + 1) * 10
    )
    assert abs(cnn.count_params() - 1.0e6) <= 1_000
    mlp = build_student("mlp", 1, 1.0e6, hidden=1000, spec=CIFAR10)
    bottleneck = mlp.get_layer("bottleneck").units
    assert mlp.count_params() == 3_073 * bottleneck + (bottleneck + 1) * 1000 + 10_010
    assert mlp.get_layer("bottleneck").activation.__name__ == "linear"


def test_one_large_budget_builds_exactly():
    model = build_student("mlp", 2, 3.16e7, seed=0, spec=CIFAR10)
    assert abs(model.count_params() - 3.16e7) <= 0.005 * 3.16e7


def test_no_room_for_the_dependent_layer_is_a_clear_error():
    with pytest.raises(BudgetError, match="lower the free widths or raise the budget"):
        build_student("cnn", 3, 1.0e5, filters_1=300, filters_2=300, filters_3=300, spec=CIFAR10)


def test_unknown_family_depth_or_width_is_rejected():
    with pytest.raises(ValueError, match="unknown student family"):
        build_student("transformer", 1, 1e6, spec=CIFAR10)
    with pytest.raises(ValueError, match="depth 1..4"):
        build_student("cnn", 5, 1e6, spec=CIFAR10)
    with pytest.raises(ValueError, match="free widths are"):
        build_student("cnn", 2, 1e6, filters_3=10, spec=CIFAR10)


def test_student_takes_uint8_images_and_returns_float32_logits():
    model = build_student("cnn", 1, 1.0e5, seed=0, spec=CIFAR10)
    assert model.input.dtype == "uint8"
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    logits = model.predict(images, verbose=0)
    assert logits.shape == (4, 10) and logits.dtype == np.float32


def test_init_scale_multiplies_glorot_weights():
    small = build_student("mlp", 2, 1.0e5, init_scale=0.5, seed=3, spec=CIFAR10)
    large = build_student("mlp", 2, 1.0e5, init_scale=2.0, seed=3, spec=CIFAR10)
    ratio = np.std(large.get_layer("hidden_1").kernel) / np.std(small.get_layer("hidden_1").kernel)
    assert ratio == pytest.approx(4.0, rel=0.05)


def test_students_have_no_batch_norm_or_dropout():
    for family, depth in ARCHITECTURES:
        model = build_student(family, depth, 1.0e5, spec=CIFAR10)
        kinds = {type(layer).__name__ for layer in model.layers}
        assert not kinds & {"BatchNormalization", "Dropout"}, (family, depth, kinds)


@pytest.mark.parametrize("policy, compute", [("mixed_bfloat16", "bfloat16"),
                                             ("mixed_float16", "float16")])
def test_mixed_precision_student_keeps_float32_weights_input_and_logits(policy, compute):
    plain = build_student("cnn", 2, 1.0e5, seed=0, spec=CIFAR10)
    mixed = build_student("cnn", 2, 1.0e5, seed=0, dtype_policy=policy, spec=CIFAR10)
    assert mixed.count_params() == plain.count_params()
    assert mixed.get_layer("conv_1").compute_dtype == compute
    assert mixed.get_layer("conv_1").kernel.dtype == "float32"
    assert mixed.get_layer("standardize").compute_dtype == "float32"
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    logits, reference = mixed.predict(images, verbose=0), plain.predict(images, verbose=0)
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, reference, atol=0.1)  # same weights, coarser maths
    assert not np.array_equal(logits, reference)


def test_forward_flops_count_every_multiply_add_in_closed_form():
    import keras

    from mimic_tf.flops import forward_flops

    mlp = build_student("mlp", 2, 1e5, ratio_1=0.5, ratio_2=0.5, spec=CIFAR10)
    weights = sum(int(np.prod(layer.kernel.shape)) for layer in mlp.layers
                  if isinstance(layer, keras.layers.Dense))
    assert forward_flops(mlp) == 2 * weights  # a dense layer: one multiply-add per weight
    cnn = build_student("cnn", 1, 1e5, filters_1=40, hidden=200, spec=CIFAR10)
    conv = cnn.get_layer("conv_1")
    per_position = 2 * 5 * 5 * 3 * conv.filters  # 'same' padding: 32x32 output positions
    dense = sum(2 * int(np.prod(layer.kernel.shape)) for layer in cnn.layers
                if isinstance(layer, keras.layers.Dense))
    assert forward_flops(cnn) == 32 * 32 * per_position + dense
