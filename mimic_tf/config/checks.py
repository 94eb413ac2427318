"""`ConfigError` and the one check every section's `validate` makes."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A config file or override that does not describe a valid experiment."""


def check(condition: bool, key: str, value: Any, allowed: str) -> None:
    """Raise `ConfigError` naming `key`, its `value` and what is `allowed` unless `condition`."""
    if not condition:
        raise ConfigError(f"config key '{key}' has value {value!r}; allowed: {allowed}")
