"""Where an experiment's artifacts live: one folder per experiment under the output root.

    runs/<experiment>/config.yaml, teacher/, transfer/, searches/, logs/, models/, serving/,
    results.*
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mimic_tf.config import ExperimentConfig

CHECKPOINT_FILE = "checkpoint.weights.h5"  # KerasTuner's best-epoch weights in trial_<id>/


@dataclasses.dataclass(frozen=True)
class ExperimentLayout:
    """Paths of one experiment's artifacts (nothing is created until something writes)."""

    root: Path

    @classmethod
    def for_config(cls, config: ExperimentConfig, out: str | Path = "runs") -> ExperimentLayout:
        return cls(Path(out) / config.name)

    @property
    def config_file(self) -> Path:
        return self.root / "config.yaml"

    @property
    def teacher(self) -> Path:
        return self.root / "teacher"

    @property
    def transfer(self) -> Path:
        return self.root / "transfer"

    @property
    def searches(self) -> Path:
        return self.root / "searches"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def serving(self) -> Path:
        """The default serving base the release gate pushes into."""
        return self.root / "serving"
