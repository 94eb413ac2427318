"""A package's public names, imported from its modules on first use (PEP 562).

A concept's folder lists its public names once in its `__init__.py`; the module that holds a
name is imported only when the name is first read. So a light module of a folder (a format
reader, a dataclass) is importable without the folder's TensorFlow-heavy ones, and a CLI can
parse its flags before TensorFlow loads.

    __getattr__, __dir__ = lazy_names(__name__, {"load_splits": "splits", ...})

Submodules stay attributes too (`data.sources`), as with an ordinary package.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(package: str, names: Mapping[str, str]
               ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`, whose name `n` lives in module `names[n]`."""

    def __getattr__(name: str) -> Any:
        module_name = names.get(name)
        if module_name is None:
            try:
                return importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as error:
                if error.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module '{package}' has no attribute '{name}'") from None
        value = getattr(importlib.import_module(f"{package}.{module_name}"), name)
        setattr(sys.modules[package], name, value)  # later reads find it without this hook
        return value

    def __dir__() -> list[str]:
        return sorted(set(names) | set(vars(sys.modules[package])))

    return __getattr__, __dir__
