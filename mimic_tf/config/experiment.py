"""`ExperimentConfig`: one experiment, its sections, validated together."""

from __future__ import annotations

import dataclasses
from typing import Any

from mimic_tf.config.checks import check
from mimic_tf.config.data import AugmentConfig, DataConfig, TransferConfig
from mimic_tf.config.release import FrontierConfig, ReleaseConfig
from mimic_tf.config.search import SearchConfig
from mimic_tf.config.student import StudentConfig
from mimic_tf.config.teacher import TeacherConfig


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """One experiment: everything under `runs/<name>/` is produced from this."""

    name: str = "default"
    seed: int = 0
    data: DataConfig = DataConfig()
    augment: AugmentConfig = AugmentConfig()
    teacher: TeacherConfig = TeacherConfig()
    transfer: TransferConfig = TransferConfig()
    student: StudentConfig = StudentConfig()
    search: SearchConfig = SearchConfig()
    release: ReleaseConfig = ReleaseConfig()
    frontier: FrontierConfig = FrontierConfig()

    def validate(self) -> None:
        check(
            bool(self.name) and all(c.isalnum() or c in "-_." for c in self.name),
            "name",
            self.name,
            "a non-empty name of letters, digits, '-', '_' or '.'",
        )
        for section in (self.data, self.augment, self.teacher, self.transfer, self.student,
                        self.search, self.release, self.frontier):
            section.validate()
        check(not (self.teacher.published and self.transfer.mode == "online"),
              "transfer.mode", self.transfer.mode,
              "'cached' with teacher.published (a published teacher is logits, not a model "
              "to run inside each training step)")

    def to_dict(self) -> dict[str, Any]:
        """The config as plain YAML-ready data (tuples become lists)."""
        return _to_plain(dataclasses.asdict(self))


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(item) for item in value]
    return value
