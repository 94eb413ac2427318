"""Student architectures in closed form: families, depths, the paper's width ranges, parameter
counts and the width solver. Plain arithmetic, no Keras: reports and configs import it freely.

    search_space("cnn", 2, 1e6)           # {'filters_1': (50, 250), 'filters_2': (20, 120)}
    solve_widths("cnn", 2, 1e6, CIFAR10, filters_1=64, filters_2=32)  # + the solved 'hidden'
    count_parameters("cnn", 2, widths, CIFAR10)   # within 0.5% of 1e6 (the images' spec counts)
    budget_label(3.16e6)                   # '3.16M'

The search picks the free widths; the budget is met by solving the dependent layer's width
(the paper's rule: the linear bottleneck for 0-1 conv layers, the FC layer for 2-4 conv layers,
and for MLPs with 2+ layers a common scale of the searched width ratios). Integer widths leave a
rounding residual of up to one unit's parameters, so the solver then tries the nearest values
of one free width (`nudge`) until the total is within `BUDGET_TOLERANCE` of the budget.
`mimic_tf.students` builds the Keras models these numbers describe.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping

from mimic_tf.data.spec import DatasetSpec
from mimic_tf.vocabulary import DEPTHS, MLP

KERNEL_SIZE = 5
BUDGET_TOLERANCE = 0.001  # the solver aims for 0.1%; the promise is 0.5%
PAPER_BUDGETS = (1.0e6, 3.16e6, 10.0e6, 31.6e6)

# Width ranges (filters or units) of the paper's searches at PAPER_BUDGETS (NOTES.md).
_PAPER_RANGES: dict[tuple[str, int], dict[str, tuple[tuple[int, int], ...]]] = {
    ("mlp", 1): {"hidden": ((500, 5000), (1000, 20000), (5000, 30000), (5000, 45000))},
    ("cnn", 1): {
        "filters_1": ((40, 150), (50, 300), (50, 450), (200, 600)),
        "hidden": ((200, 1600), (100, 4000), (500, 20000), (1000, 4100)),
    },
    ("cnn", 2): {
        "filters_1": ((20, 120), (50, 250), (50, 350), (50, 800)),
        "filters_2": ((20, 120),) * 4,
    },
    ("cnn", 3): {f"filters_{i}": ((20, 110), (40, 200), (50, 350), (50, 650)) for i in (1, 2, 3)},
    ("cnn", 4): {
        **{f"filters_{i}": ((25, 100), (50, 150), (50, 300), (50, 500)) for i in (1, 2)},
        **{f"filters_{i}": ((25, 100), (50, 200), (50, 350), (50, 650)) for i in (3, 4)},
    },
}
RATIO_RANGE = (0.1, 1.0)  # MLPs with 2+ layers: relative widths, rescaled to the budget


class BudgetError(ValueError):
    """The free widths leave no room for the dependent layer within the budget."""


@dataclasses.dataclass(frozen=True)
class Architecture:
    """Which widths a (family, depth) has, which one is solved, and which one is nudged."""

    family: str
    depth: int
    free: tuple[str, ...]  # searched widths (ratios for MLPs with 2+ layers)
    dependent: str  # solved so the total meets the budget
    nudge: str  # moved by a few units to absorb the rounding residual


def architecture(family: str, depth: int) -> Architecture:
    """The width names of one student family and depth; raises ValueError if unknown."""
    if family not in DEPTHS:
        raise ValueError(f"unknown student family {family!r}; choose one of {sorted(DEPTHS)}")
    if depth not in DEPTHS[family]:
        raise ValueError(
            f"{family} students have depth {DEPTHS[family][0]}..{DEPTHS[family][-1]}, "
            f"got {depth}"
        )
    if family == MLP and depth == 1:
        return Architecture(family, depth, ("hidden",), "bottleneck", "hidden")
    if family == MLP:
        ratios = tuple(f"ratio_{i}" for i in range(1, depth + 1))
        return Architecture(family, depth, ratios, f"hidden_{depth}", f"hidden_{depth - 1}")
    if depth == 1:
        return Architecture(family, depth, ("filters_1", "hidden"), "bottleneck", "hidden")
    filters = tuple(f"filters_{i}" for i in range(1, depth + 1))
    return Architecture(family, depth, filters, "hidden", f"filters_{depth}")


def _interpolated_range(anchors: tuple[tuple[int, int], ...], budget: float) -> tuple[int, int]:
    """Log-linear interpolation between the paper's budgets; sqrt scaling outside them."""
    log_budgets = [math.log(b) for b in PAPER_BUDGETS]
    log_budget = math.log(budget)
    if log_budget <= log_budgets[0]:
        scale = math.sqrt(budget / PAPER_BUDGETS[0])
        low, high = anchors[0][0] * scale, anchors[0][1] * scale
    elif log_budget >= log_budgets[-1]:
        scale = math.sqrt(budget / PAPER_BUDGETS[-1])
        low, high = anchors[-1][0] * scale, anchors[-1][1] * scale
    else:
        index = max(i for i, b in enumerate(log_budgets) if b <= log_budget)
        index = min(index, len(log_budgets) - 2)
        weight = (log_budget - log_budgets[index]) / (log_budgets[index + 1] - log_budgets[index])
        (low_a, high_a), (low_b, high_b) = anchors[index], anchors[index + 1]
        low = math.exp((1 - weight) * math.log(low_a) + weight * math.log(low_b))
        high = math.exp((1 - weight) * math.log(high_a) + weight * math.log(high_b))
    low_int = max(1, round(low))
    return low_int, max(low_int + 1, round(high))


def search_space(family: str, depth: int, budget: float) -> dict[str, tuple[float, float]]:
    """The free widths' ranges for a budget: the paper's, interpolated for other budgets.

    Integer ranges for filters and units; float ranges `RATIO_RANGE` for MLP width ratios.
    """
    arch = architecture(family, depth)
    if family == MLP and depth > 1:
        return {name: RATIO_RANGE for name in arch.free}
    anchors = _PAPER_RANGES[(family, depth)]
    return {name: _interpolated_range(anchors[name], budget) for name in arch.free}


def default_widths(family: str, depth: int, budget: float) -> dict[str, float]:
    """The geometric middle of each free width's range."""
    widths: dict[str, float] = {}
    for name, (low, high) in search_space(family, depth, budget).items():
        middle = math.sqrt(low * high)
        widths[name] = middle if isinstance(low, float) else round(middle)
    return widths


def _conv_params(in_channels: int, filters: int) -> int:
    return KERNEL_SIZE * KERNEL_SIZE * in_channels * filters + filters


def _dense_params(inputs: int, units: int) -> int:
    return inputs * units + units


# Which conv layers a pool follows, per CNN depth (`mimic_tf.students` builds the same).
POOL_AFTER = {1: (1,), 2: (1, 2), 3: (1, 2, 3), 4: (1, 3, 4)}


def pooled_size(size: int, pools: int) -> int:
    """A side of `size` pixels after `pools` stride-2 pools with 'same' padding."""
    for _ in range(pools):
        size = math.ceil(size / 2)
    return size


def count_parameters(family: str, depth: int, widths: Mapping[str, int],
                     spec: DatasetSpec) -> int:
    """Trainable parameters of a student with all widths given, in closed form, for images
    and classes as `spec` describes them."""
    classes = spec.num_classes
    if family == MLP and depth == 1:
        return (
            _dense_params(spec.input_values, widths["bottleneck"])
            + _dense_params(widths["bottleneck"], widths["hidden"])
            + _dense_params(widths["hidden"], classes)
        )
    if family == MLP:
        units = [spec.input_values] + [widths[f"hidden_{i}"] for i in range(1, depth + 1)]
        hidden = sum(_dense_params(a, b) for a, b in zip(units[:-1], units[1:], strict=True))
        return hidden + _dense_params(units[-1], classes)
    filters = [spec.channels] + [widths[f"filters_{i}"] for i in range(1, depth + 1)]
    convs = sum(_conv_params(a, b) for a, b in zip(filters[:-1], filters[1:], strict=True))
    pools = len(POOL_AFTER[depth])
    flat = (pooled_size(spec.height, pools) * pooled_size(spec.width, pools) * filters[-1])
    if depth == 1:
        return (
            convs
            + _dense_params(flat, widths["bottleneck"])
            + _dense_params(widths["bottleneck"], widths["hidden"])
            + _dense_params(widths["hidden"], classes)
        )
    return convs + _dense_params(flat, widths["hidden"]) + _dense_params(widths["hidden"],
                                                                         classes)


def _solve_affine(
    count: Callable[[int], int], budget: float, rounding: Callable[[float], int] = round
) -> int:
    """The integer x nearest to (or with `math.floor`, below) count(x) = budget, count affine."""
    base, slope = count(0), count(1) - count(0)
    return int(rounding((budget - base) / slope))


def _mlp_scaled_widths(depth: int, ratios: Mapping[str, float], budget: float,
                       spec: DatasetSpec) -> dict[str, int]:
    """Widths s * ratio_i with s solving the quadratic params(s) = budget, rounded down.

    Rounding down never overshoots the budget; the last layer is then solved exactly.
    """
    r = [float(ratios[f"ratio_{i}"]) for i in range(1, depth + 1)]
    quadratic = sum(a * b for a, b in zip(r[:-1], r[1:], strict=True))
    linear = (spec.input_values + 1) * r[0] + sum(r[1:]) + spec.num_classes * r[-1]
    constant = spec.num_classes - budget
    scale = (-linear + math.sqrt(linear**2 - 4 * quadratic * constant)) / (2 * quadratic)
    return {f"hidden_{i + 1}": max(1, math.floor(scale * ratio)) for i, ratio in enumerate(r)}


def solve_widths(
    family: str, depth: int, budget: float, spec: DatasetSpec, **free_widths: float
) -> dict[str, int]:
    """All layer widths of a student whose parameter count is within 0.5% of `budget`, for
    images and classes as `spec` describes them.

    Free widths not given take `default_widths`. Raises BudgetError, before anything is
    built, when the free widths leave the dependent layer no room.
    """
    arch = architecture(family, depth)
    unknown = sorted(set(free_widths) - set(arch.free))
    if unknown:
        raise ValueError(
            f"{family} depth {depth} has no width {unknown}; its free widths are {list(arch.free)}"
        )
    free = {**default_widths(family, depth, budget), **free_widths}
    if family == MLP and depth > 1:
        widths = _mlp_scaled_widths(depth, free, budget, spec)
    else:
        widths = {name: int(round(value)) for name, value in free.items()}
        if any(value < 1 for value in widths.values()):
            raise BudgetError(f"widths must be positive, got {free_widths}")

    def solve_dependent(
        candidate: dict[str, int], rounding: Callable[[float], int] = round
    ) -> dict[str, int]:
        value = _solve_affine(
            lambda x: count_parameters(family, depth, {**candidate, arch.dependent: x}, spec),
            budget,
            rounding,
        )
        return {**candidate, arch.dependent: value}

    best = solve_dependent(widths)
    if best[arch.dependent] < 1:
        fixed = count_parameters(family, depth, {**widths, arch.dependent: 0}, spec)
        raise BudgetError(
            f"a {family} student of depth {depth} with widths {widths} needs more than "
            f"{fixed:,} parameters before its '{arch.dependent}' layer, over the budget of "
            f"{budget:,.0f}: lower the free widths or raise the budget"
        )

    def residual(candidate: dict[str, int]) -> float:
        return abs(count_parameters(family, depth, candidate, spec) - budget)

    if residual(best) > BUDGET_TOLERANCE * budget:
        # Keep the solved layer and solve the nudged width exactly: small steps where the
        # nudged layer is cheap per unit (the hidden layer after a bottleneck).
        below = solve_dependent(widths, math.floor)
        nudged = _solve_affine(
            lambda x: count_parameters(family, depth, {**below, arch.nudge: x}, spec), budget
        )
        candidate = {**below, arch.nudge: nudged}
        if below[arch.dependent] >= 1 and nudged >= 1 and residual(candidate) < residual(best):
            best = candidate

    start = widths[arch.nudge]
    max_step = max(16, start // 4)
    for step in range(1, max_step + 1):
        if residual(best) <= BUDGET_TOLERANCE * budget:
            break
        for value in (start + step, start - step):
            if value < 1:
                continue
            candidate = solve_dependent({**widths, arch.nudge: value})
            if candidate[arch.dependent] >= 1 and residual(candidate) < residual(best):
                best = candidate
    return best


def budget_label(budget: float) -> str:
    """A short readable budget: 1e6 -> '1M', 3.16e6 -> '3.16M', 3e4 -> '30k'."""
    if budget >= 1e6:
        return f"{budget / 1e6:g}M"
    return f"{budget / 1e3:g}k"
