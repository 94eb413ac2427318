"""Experiment configuration: YAML files in `configs/` loaded into frozen dataclasses.

Configs are plain data. Every field has a type and an allowed range; an unknown key, a wrong
type or an out-of-range value raises `ConfigError` naming the key, the value and what is
allowed. `save_config` writes the resolved config beside the artifacts it produced.

    config = load_config("configs/default.yaml", overrides={"search.trials": 2})

One module per section (`data`, `teacher`, `student`, `search`, `release`), `experiment` (all
of them), `loading` (YAML, overrides) and `checks`. May import `mimic_tf.vocabulary`,
`mimic_tf.files` (`save_config`) and PyYAML only: every layer reads configs, so configs read
nothing of theirs.
"""

from mimic_tf.config.checks import ConfigError
from mimic_tf.config.data import AugmentConfig, DataConfig, TransferConfig
from mimic_tf.config.experiment import ExperimentConfig
from mimic_tf.config.loading import (
    CONFIG_DIR,
    config_from_dict,
    load_config,
    resolve_config_path,
    save_config,
)
from mimic_tf.config.release import FrontierConfig, ReleaseConfig
from mimic_tf.config.schedule import ScheduleConfig
from mimic_tf.config.search import SearchConfig
from mimic_tf.config.student import StudentConfig
from mimic_tf.config.teacher import AirbenchConfig, TeacherConfig

__all__ = [
    "CONFIG_DIR", "AirbenchConfig", "AugmentConfig", "ConfigError", "DataConfig",
    "ExperimentConfig", "FrontierConfig", "ReleaseConfig", "ScheduleConfig", "SearchConfig",
    "StudentConfig", "TeacherConfig", "TransferConfig", "config_from_dict", "load_config",
    "resolve_config_path", "save_config",
]
