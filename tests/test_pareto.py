"""The Pareto rule of the accuracy-latency frontier, and the mimic diagnostics (no TensorFlow)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from mimic_tf.diagnostics import expected_calibration_error, mimic_diagnostics, softmax
from tuner.frontier.pareto import dominates, front, pareto_flags


def brute_force(points):
    return [not any(dominates(q, p) for j, q in enumerate(points) if j != i)
            for i, p in enumerate(points)]


def test_a_dominated_point_is_off_the_front_and_the_rest_on_it():
    points = [(0.60, 2.0), (0.55, 1.0), (0.50, 3.0), (0.70, 5.0)]
    assert pareto_flags(points) == [True, True, False, True]
    assert front(points) == [1, 0, 3]


def test_matched_on_one_axis_and_beaten_on_the_other_is_dominated():
    same_latency = [(0.6, 1.0), (0.5, 1.0)]  # as fast, and more accurate
    same_accuracy = [(0.6, 1.0), (0.6, 2.0)]  # as accurate, and faster
    assert pareto_flags(same_latency) == [True, False]
    assert pareto_flags(same_accuracy) == [True, False]
    # a smoke run's frontier: MLP 1 hidden at p99 1.88 ms beside MLP 2 hidden, as accurate
    # at 1.66 ms, stayed on the front under the old strict rule
    assert pareto_flags([(0.105, 1.88), (0.105, 1.66)]) == [False, True]


def test_exact_ties_on_both_stay_on_the_front_together():
    assert pareto_flags([(0.5, 1.0), (0.5, 1.0)]) == [True, True]
    assert pareto_flags([(0.5, 1.0), (0.5, 1.0), (0.4, 2.0)]) == [True, True, False]


def test_a_single_point_is_its_own_front():
    assert pareto_flags([(0.4, 3.0)]) == [True]
    assert pareto_flags([]) == []


def test_agrees_with_brute_force_on_random_points_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(200):
        count = int(rng.integers(1, 12))
        points = [(float(rng.integers(0, 5)) / 4, float(rng.integers(0, 5)))
                  for _ in range(count)]
        assert pareto_flags(points) == brute_force(points), points


def test_ece_is_near_zero_when_calibrated_and_not_when_over_confident():
    rng = np.random.default_rng(0)
    count = 200_000
    confidence = rng.uniform(0.1, 1.0, count)
    labels = np.zeros(count, np.int64)
    correct = rng.uniform(size=count) < confidence  # right as often as it is confident
    labels[~correct] = 1
    probabilities = np.stack([confidence, 1 - confidence], axis=1)
    assert expected_calibration_error(probabilities, labels) < 0.01
    # The same predictions, claimed at 99%: over-confident by the gap to their accuracy.
    overconfident = np.stack([np.full(count, 0.99), np.full(count, 0.01)], axis=1)
    assert expected_calibration_error(overconfident, labels) == pytest.approx(
        0.99 - correct.mean(), abs=1e-6)


def test_mimic_diagnostics_in_closed_form():
    teacher = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    assert mimic_diagnostics(teacher, teacher, np.array([0, 1]))["kl_teacher_student"] == 0.0
    student = np.array([[0.0, 2.0, 0.0], [0.0, 1.0, 0.0]])
    result = mimic_diagnostics(teacher, student, np.array([0, 1]))
    assert result["agreement"] == 0.5
    assert result["logit_mse"] == pytest.approx((4 + 4) / 2)
    p, q = softmax(teacher[:1])[0], softmax(student[:1])[0]
    assert result["kl_teacher_student"] == pytest.approx(np.sum(p * np.log(p / q)) / 2)
    with pytest.raises(ValueError, match=r"\[N, classes\]"):
        mimic_diagnostics(teacher, student[:, :2], np.array([0, 1]))


@pytest.mark.parametrize("points", list(itertools.permutations([(0.6, 2.0), (0.5, 1.0),
                                                                (0.4, 3.0)])))
def test_order_of_the_points_does_not_matter(points):
    assert pareto_flags(list(points)) == brute_force(list(points))
