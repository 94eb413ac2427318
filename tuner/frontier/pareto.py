"""The Pareto rule of the accuracy-latency frontier: which students no other beats on both.

A student is on the front (Pareto-optimal) when no other student dominates it: at least as
accurate and at least as fast (p99 latency), and strictly better on one of the two (the
textbook rule, and Optuna's for multi-objective `best_trials`). Students tied exactly on both
stay on the front together. The frontier stage (`tuner.frontier`) measures every trial and
calls `pareto_flags`.

    pareto_flags([(0.60, 2.0), (0.55, 1.0), (0.50, 3.0)])   # [True, True, False]
"""

from __future__ import annotations

from collections.abc import Sequence


def dominates(better: tuple[float, float], other: tuple[float, float]) -> bool:
    """Whether `better` (accuracy, p99 ms) is at least as accurate and as fast as `other`,
    and strictly better on one of the two."""
    return (better[0] >= other[0] and better[1] <= other[1]
            and (better[0] > other[0] or better[1] < other[1]))


def pareto_flags(points: Sequence[tuple[float, float]]) -> list[bool]:
    """For each (accuracy, p99 ms): True when no other point dominates it.

    Sorting by latency then sweeping keeps this O(n log n): a point is dominated exactly
    when a strictly faster point is at least as accurate, or a point as fast is strictly
    more accurate.
    """
    order = sorted(range(len(points)), key=lambda i: points[i][1])
    flags = [True] * len(points)
    best_faster = float("-inf")  # best accuracy among points strictly faster than the group
    start = 0
    while start < len(order):
        end = start
        latency = points[order[start]][1]
        while end < len(order) and points[order[end]][1] == latency:
            end += 1
        group = order[start:end]
        best_of_group = max(points[i][0] for i in group)
        for i in group:
            flags[i] = not (points[i][0] <= best_faster or points[i][0] < best_of_group)
        best_faster = max(best_faster, best_of_group)
        start = end
    return flags


def front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the Pareto-optimal points, fastest first."""
    flags = pareto_flags(points)
    return sorted((i for i, flag in enumerate(flags) if flag), key=lambda i: points[i][1])
