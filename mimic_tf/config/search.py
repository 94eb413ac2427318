"""The `search` section: one hyperparameter search per (family, depth, budget)."""

from __future__ import annotations

import dataclasses
import math

from mimic_tf.config.checks import check
from mimic_tf.vocabulary import STUDENT_FAMILIES, TUNERS, quoted


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """The hyperparameter searches: one per (family, depth, budget)."""

    tuner: str = "bayesian"  # bayesian | hyperband | random
    trials: int = 30  # trials per search
    budgets: tuple[float, ...] = (1.0e6, 3.16e6, 10.0e6, 31.6e6)  # trainable parameters
    mlp_depths: tuple[int, ...] = (1, 2, 3, 4, 5)  # hidden layers
    cnn_depths: tuple[int, ...] = (1, 2, 3, 4)  # conv layers
    top_k: int = 5  # trials per search evaluated on the test split
    baseline: bool = False  # also train the best architecture of each cell on hard labels
    baseline_families: tuple[str, ...] = STUDENT_FAMILIES  # which cells get a baseline ...
    baseline_budgets: tuple[float, ...] = ()  # ... and at which budgets (empty: every budget)
    export: bool = True  # export the best student of each search for TF Serving
    # Searches side by side, each lane a process with cores/parallel threads that takes the
    # pending searches costliest first (tuner.search.lanes). 0: one lane a core on a CPU (one
    # where a GPU is visible); 1: one search after another in the run's own process.
    parallel: int = 1

    def validate(self) -> None:
        check(self.tuner in TUNERS, "search.tuner", self.tuner, quoted(TUNERS))
        check(self.trials >= 1, "search.trials", self.trials, ">= 1")
        check(
            len(self.budgets) >= 1 and all(1e4 <= b <= 1e9 for b in self.budgets),
            "search.budgets",
            self.budgets,
            "one or more parameter counts in [1e4, 1e9]",
        )
        check(all(1 <= d <= 5 for d in self.mlp_depths), "search.mlp_depths", self.mlp_depths,
               "depths in 1..5")
        check(all(1 <= d <= 4 for d in self.cnn_depths), "search.cnn_depths", self.cnn_depths,
               "depths in 1..4")
        check(self.top_k >= 1, "search.top_k", self.top_k, ">= 1")
        check(0 <= self.parallel <= 256, "search.parallel", self.parallel,
              "0..256 (0: one lane a core; 1: one search after another)")
        check(
            all(family in STUDENT_FAMILIES for family in self.baseline_families),
            "search.baseline_families",
            self.baseline_families,
            "a list of 'mlp' and/or 'cnn'",
        )
        check(
            all(any(math.isclose(b, budget, rel_tol=1e-9) for budget in self.budgets)
                for b in self.baseline_budgets),
            "search.baseline_budgets",
            self.baseline_budgets,
            f"budgets listed in search.budgets {list(self.budgets)} (empty: every budget)",
        )

    def has_baseline(self, family: str, budget: float) -> bool:
        """Whether the cell (family, budget) gets a hard-label baseline search."""
        return (
            self.baseline
            and family in self.baseline_families
            and (not self.baseline_budgets
                 or any(math.isclose(budget, b, rel_tol=1e-9) for b in self.baseline_budgets))
        )
