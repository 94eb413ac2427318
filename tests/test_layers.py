"""The folders' import rules, as their `__init__.py` docstrings state them, read from the source.

`mimic_tf` knows nothing of `tuner` or `serving`; `serving` nothing of `tuner`; the server half
of `serving` nothing of the release half; and no module imports, at its top, a module that
imports it back.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGES = ("mimic_tf", "tuner", "serving")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for package in PACKAGES
           for path in sorted((ROOT / package).rglob("*.py"))}


def imports(path: Path, top_level_only: bool = False) -> set[str]:
    """The project modules `path` imports (anywhere in it, or only at its top)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                found.add(full if full in MODULES else node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES}


RULES = [  # (modules under, may not import anything under)
    ("mimic_tf", "tuner"),
    ("mimic_tf", "serving"),
    ("serving", "tuner"),
    ("serving.server", "serving.release"),
]


def under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize(("importer", "forbidden"), RULES)
def test_no_import_crosses_a_layer_upwards(importer, forbidden):
    crossings = sorted(f"{name} imports {target}"
                       for name, path in MODULES.items() if under(name, importer)
                       for target in imports(path) if under(target, forbidden))
    assert not crossings, crossings


def test_no_module_imports_one_that_imports_it_back():
    graph = {name: {target for target in imports(path, top_level_only=True)
                    if target in MODULES and target != name}
             for name, path in MODULES.items()}
    cycles, state = [], {}

    def visit(name: str, stack: list[str]) -> None:
        state[name] = "open"
        stack.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                cycles.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target, stack)
        stack.pop()
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])
    assert not cycles, cycles


def test_every_folder_says_what_lives_there():
    for folder in sorted({path.parent for path in MODULES.values()}):
        init = folder / "__init__.py"
        assert init.is_file(), f"{folder} has no __init__.py"
        assert ast.get_docstring(ast.parse(init.read_text())), f"{init} has no docstring"
