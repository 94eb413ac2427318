"""YAML to config and back: types coerced and checked key by key, overrides, the configs/ folder."""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from mimic_tf.config.checks import ConfigError
from mimic_tf.config.experiment import ExperimentConfig
from mimic_tf.files import atomic_write_text

CONFIG_DIR = Path(__file__).resolve().parent.parent.parent / "configs"


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Convert YAML data to the annotated type, or raise ConfigError naming the key."""
    origin = typing.get_origin(annotation)
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value, key)
    if origin is tuple:
        (item_type, _) = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' has value {value!r}; allowed: a list of "
                              f"{item_type.__name__}")
        return tuple(_coerce(item, item_type, f"{key}[{i}]") for i, item in enumerate(value))
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"unsupported annotation {annotation} for {key}")
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}' has value {value!r}; allowed: true or false")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"config key '{key}' has value {value!r}; allowed: an integer")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if isinstance(value, str):
                try:
                    return float(value)  # YAML reads '1e6' (no dot) as a string
                except ValueError:
                    pass
            raise ConfigError(f"config key '{key}' has value {value!r}; allowed: a number")
        return float(value)
    if annotation is str:
        if isinstance(value, bool):  # YAML reads an unquoted true/false as a boolean
            return "true" if value else "false"
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}' has value {value!r}; allowed: a string")
        return value
    raise TypeError(f"unsupported annotation {annotation} for {key}")


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, Mapping):
        where = f"section '{prefix}'" if prefix else "the config file"
        raise ConfigError(f"{where} must be a mapping of keys to values, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {field.name: field for field in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        full_key = f"{prefix}.{key}" if prefix else str(key)
        if key not in fields:
            raise ConfigError(
                f"unknown config key '{full_key}'; allowed keys here: {', '.join(sorted(fields))}"
            )
        kwargs[key] = _coerce(value, hints[key], full_key)
    return cls(**kwargs)


def config_from_dict(data: Mapping[str, Any]) -> ExperimentConfig:
    """Build and validate an ExperimentConfig from nested plain data."""
    config = _build(ExperimentConfig, data, "")
    config.validate()
    return config


def _set_dotted(data: dict[str, Any], dotted_key: str, value: Any) -> None:
    node = data
    parts = dotted_key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot override '{dotted_key}': '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def resolve_config_path(path: str | os.PathLike[str]) -> Path:
    """A config path as given, or a bare name like 'smoke' looked up in `configs/`."""
    candidate = Path(path)
    if candidate.exists():
        return candidate
    for guess in (CONFIG_DIR / candidate, CONFIG_DIR / f"{candidate}.yaml"):
        if guess.exists():
            return guess
    available = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(
        f"config file '{path}' not found; pass a YAML path or one of: {available}"
    )


def load_config(
    path: str | os.PathLike[str] = "default",
    overrides: Mapping[str, Any] | None = None,
) -> ExperimentConfig:
    """Load a YAML config, apply dotted-key overrides (`{"search.trials": 2}`) and validate."""
    config_path = resolve_config_path(path)
    try:
        data = yaml.safe_load(config_path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file '{config_path}' is not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{config_path}' must hold a mapping, got {data!r}")
    for dotted_key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, dotted_key, value)
    return config_from_dict(data)


def save_config(config: ExperimentConfig, path: str | os.PathLike[str]) -> None:
    """Write the resolved config as YAML (atomically) beside the artifacts it produced."""
    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
