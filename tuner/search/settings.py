"""What a search's trials depend on (`search.json`), and the check that refuses a change.

Plain dictionaries, no TensorFlow: the search (`cell_search.py`) records and checks them, and
`kept.py` compares a published search's recipe with them.

    settings = search_settings(config, transfer_fingerprint, cell.family)
    check_settings(layout.search(cell.name), settings, cell.family)   # SearchMismatchError
"""

from __future__ import annotations

import zlib
from typing import Any

from mimic_tf.config import ExperimentConfig
from mimic_tf.layout import SearchLayout
from tuner import artifacts
from tuner.search.cells import Cell


class SearchMismatchError(RuntimeError):
    """An existing search was run with settings other than the current ones."""


def search_seed(seed: int, cell: Cell) -> int:
    """The oracle's seed: the config's, varied per cell so searches explore independently."""
    return seed * 100_003 + zlib.crc32(cell.name.encode()) % 100_003


def search_settings(config: ExperimentConfig, transfer_fingerprint: str,
                    family: str | None = None) -> dict[str, Any]:
    """Everything a search's trials depend on, besides the cell itself and the trial count.

    `student.jit_compile` is left out: XLA changes how fast a trial runs, not what it learns
    (runtime.json records it), so a search resumes under either setting. With `family`, the
    other families' epoch caps (`student.cnn_epochs` for an MLP search) are left out too: a
    run may raise the CNNs' cap without restarting its MLP searches.
    """
    student = own_epoch_cap({key: value for key, value in config.to_dict()["student"].items()
                              if key != "jit_compile"}, family)
    return {
        "student": student,
        "tuner": config.search.tuner,
        "seed": config.seed,
        "transfer": transfer_fingerprint,
    }


def own_epoch_cap(student: dict[str, Any], family: str | None) -> dict[str, Any]:
    """`student` without the epoch caps of families other than `family` (all kept: None)."""
    if family is None:
        return student
    return {key: value for key, value in student.items()
            if not (key.endswith("_epochs") and key != f"{family}_epochs")}


def check_settings(search: SearchLayout, settings: dict[str, Any],
                   family: str | None = None) -> None:
    """Refuse to go on with a search whose recorded `search.json` differs from `settings`."""
    previous = artifacts.read_settings(search)
    if previous is None:
        return
    # Student keys added since that search was recorded take their defaults.
    defaults = {key: value for key, value in ExperimentConfig().to_dict()["student"].items()
                if key in settings["student"]}
    previous = {**previous, "student": own_epoch_cap(
        {**defaults, **previous.get("student", {})}, family)}
    if previous == settings:
        return
    changed = sorted(key for key in settings if previous.get(key) != settings[key])
    raise SearchMismatchError(
        f"search '{search.name}' in {search.root.parent} was run with other settings "
        f"({', '.join(changed)} changed); rerun with --overwrite to start it afresh, or pass "
        "another --out"
    )
