"""A search longer than one unit of work: its state between parts, and the plan that sizes them.

A part of a search commits the search's KerasTuner project less its weights into
`<results>/searches/<cell>/` (SEARCH_STATE); the next part, on any machine, copies it back
where its run folder holds fewer ended trials. The parts are sized by the plan measured on
the machine at hand (`benchmarks/campaign_plan.py --workers N`, `read_plan`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from mimic_tf.layout import SearchLayout
from tuner import artifacts

SEARCHES_FOLDER = "searches"  # <results>/searches/<cell>/: a search in parts, between parts
# What a part of a search commits of its folder: KerasTuner's project and our JSON files, not
# the weights (checkpoints, a running trial's backup, the best student).
SEARCH_STATE = ("cell.json", "search.json", "evaluation.json", "oracle.json",
                "trial_*/trial.json", "trial_*/history.json")


def search_state_folder(results: Path, name: str) -> Path:
    """Where a search in parts keeps its state between parts: `<results>/searches/<name>/`."""
    return results / SEARCHES_FOLDER / name


def ended_trials(search_folder: Path) -> int:
    """How many trials a search folder's KerasTuner oracle has ended (0: none, or no oracle)."""
    return artifacts.ended_trials(SearchLayout(search_folder))


def state_files(folder: Path) -> list[Path]:
    return sorted({path for pattern in SEARCH_STATE for path in folder.glob(pattern)})


def copy_state(source: Path, target: Path) -> list[Path]:
    """Copy a search's state files from `source` into `target`, each written then renamed,
    the oracle last (a reader that finds the oracle finds the trials it names)."""
    from mimic_tf.files import atomic_write_bytes

    files = state_files(source)
    files.sort(key=lambda path: path.name == "oracle.json")
    written = []
    for path in files:
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(destination, path.read_bytes())
        written.append(destination)
    return written


def read_plan(path: Path) -> dict | None:
    """campaign_plan.py's JSON (its output's last line) where it was measured on this CPU;
    None, with a line on stderr, where it was measured on another one."""
    from mimic_tf.runtime import cpu_name

    try:
        plan = json.loads(path.read_text().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        raise ValueError(f"--plan {path}: not the output of benchmarks/campaign_plan.py "
                         "(its last line is the plan as JSON); measure it again with "
                         "python benchmarks/campaign_plan.py --workers N > FILE") from None
    measured_on = plan.get("runtime", {}).get("cpu")
    if measured_on != cpu_name():
        print(f"--plan {path} was measured on {measured_on}, not on this {cpu_name()}: not "
              "used (every search is one unit); measure it here again", file=sys.stderr)
        return None
    return plan


