"""Cells of the paper's Table 2: one (family, depth, budget) search, and its hard-label twin.

A `Cell` names one KerasTuner project under `<experiment>/searches/`:

    mlp-d2-b1M          students of 2 hidden layers and 1M parameters, mimicking the teacher
    mlp-d2-b1M-hard     the same budget on 0/1 labels (the hard-label baseline of that cell)

Every file a search writes beside its KerasTuner state lives in the project folder, so a
folder alone says which cell it holds (`cell.json`), and `tuner.report` needs nothing else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from mimic_tf.budgets import budget_label, count_parameters, search_space, solve_widths
from mimic_tf.config import ExperimentConfig
from mimic_tf.data.spec import DatasetSpec
from mimic_tf.vocabulary import DEPTHS, HARD_LOSS, architecture_label

HARD_SUFFIX = "-hard"


@dataclasses.dataclass(frozen=True)
class Cell:
    """One search: a student family, depth and parameter budget, trained with `loss`.

    `fixed_widths` pins the free widths (the hard-label baseline reuses the best mimic
    architecture of its cell); None lets the search choose them.
    """

    family: str
    depth: int
    budget: float
    loss: str = "mimic"
    fixed_widths: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        if self.family not in DEPTHS:
            raise ValueError(f"unknown family {self.family!r}; choose one of {sorted(DEPTHS)}")
        if self.depth not in DEPTHS[self.family]:
            raise ValueError(f"{self.family} depth must be one of {DEPTHS[self.family]}, "
                             f"got {self.depth}")

    @property
    def is_baseline(self) -> bool:
        """True for a hard-label baseline search."""
        return self.loss == HARD_LOSS

    @property
    def name(self) -> str:
        """Folder and TensorBoard run name: `mlp-d2-b1M`, `cnn-d1-b30k-hard`."""
        suffix = HARD_SUFFIX if self.is_baseline else ""
        return f"{self.family}-d{self.depth}-b{budget_label(self.budget)}{suffix}"

    @property
    def architecture(self) -> str:
        """The row label of Table 2: 'MLP 2 hidden', 'CNN 3 conv'."""
        return architecture_label(self.family, self.depth)

    @property
    def label(self) -> str:
        """How reports name the search: 'MLP 2 hidden at 1M', 'CNN 1 conv at 30k (hard labels)'."""
        suffix = " (hard labels)" if self.is_baseline else ""
        return f"{self.architecture} at {budget_label(self.budget)}{suffix}"

    def free_widths(self, hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
        """The searched widths among a trial's hyperparameter values."""
        return {name: hyperparameters[name]
                for name in search_space(self.family, self.depth, self.budget)}

    def realised_widths(self, hyperparameters: Mapping[str, Any], spec: DatasetSpec
                        ) -> dict[str, int]:
        """Every layer width of the student a trial's hyperparameter values describe, on
        images and classes as `spec` describes them."""
        return solve_widths(self.family, self.depth, self.budget, spec,
                            **self.free_widths(hyperparameters))

    def realised_params(self, hyperparameters: Mapping[str, Any], spec: DatasetSpec) -> int:
        """Parameters of that student, in closed form (no model is built)."""
        return count_parameters(self.family, self.depth,
                                self.realised_widths(hyperparameters, spec), spec)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "depth": self.depth,
            "budget": self.budget,
            "loss": self.loss,
            "fixed_widths": dict(self.fixed_widths) if self.fixed_widths else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Cell:
        return cls(
            family=data["family"],
            depth=int(data["depth"]),
            budget=float(data["budget"]),
            loss=data.get("loss", "mimic"),
            fixed_widths=data.get("fixed_widths") or None,
        )


def planned_cells(config: ExperimentConfig, families: Iterable[str]) -> list[Cell]:
    """The mimic searches of `config` for `families`, in run order (family, budget, depth)."""
    cells = []
    for family in families:
        depths = config.search.mlp_depths if family == "mlp" else config.search.cnn_depths
        for budget in config.search.budgets:
            for depth in depths:
                cells.append(Cell(family, depth, budget, loss=config.student.loss))
    return cells
