"""A campaign's units: what they are, in order, which the results folder holds, the status.

    member 1 .. member M      one teacher member each
    <cell>, <cell>-hard       one search each (mimic cells, then their hard-label baselines)
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from mimic_tf.config import ExperimentConfig
from mimic_tf.teachers.published import member_paths
from tuner.campaign.parts import ended_trials, search_state_folder
from tuner.search import kept
from tuner.search.cells import planned_cells

FAMILIES = ("mlp", "cnn")
UNITS_FILE = "units.csv"  # one line a unit (or a search's part) as it ends
UNITS_COLUMNS = ("unit", "finished", "seconds", "cpu", "commit")


def log(message: str) -> None:
    """A line of the campaign's log, stamped in UTC."""
    print(f"[{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}] {message}", flush=True)


@dataclasses.dataclass(frozen=True)
class Unit:
    """One unit of a campaign: a teacher member (`member` its number from 1) or a search."""

    name: str  # "member 1", "mlp-d2-b316k", "cnn-d1-b1M-hard"
    member: int | None = None

    @property
    def is_member(self) -> bool:
        return self.member is not None


def plan_units(config: ExperimentConfig) -> list[Unit]:
    """Every unit of `config`'s campaign, in the order they run: the members, then each
    search the tuner plans (mimic cells, then their hard-label baselines)."""
    members = [Unit(f"member {number}", number)
               for number in range(1, config.teacher.ensemble_size + 1)]
    searches = [Unit(name) for name in
                kept.planned_names(config, planned_cells(config, FAMILIES))]
    return members + searches


def teacher_folder(results: Path) -> Path:
    """Where a campaign's members are published: `<results>/teacher/`."""
    return results / "teacher"


def unit_done(unit: Unit, results: Path, trials: int) -> bool:
    """Whether the results folder holds `unit`: a member's manifest, a search's `trials`
    trials with its best one tested."""
    if unit.is_member:
        return member_paths(teacher_folder(results), unit.member - 1)[1].is_file()
    rows = kept.read_rows(results / "results.csv").get(unit.name)
    return bool(rows) and kept.finished(rows, trials)


def pending_parts(config: ExperimentConfig, results: Path) -> dict[str, int]:
    """Searches that ran in parts and are not finished: name -> trials committed so far."""
    return {unit.name: ended_trials(search_state_folder(results, unit.name))
            for unit in plan_units(config) if not unit.is_member
            and search_state_folder(results, unit.name).is_dir()
            and not unit_done(unit, results, config.search.trials)}


def status_lines(config: ExperimentConfig, results: Path) -> list[str]:
    """One line per kind of unit: how many are done of how many, and the next one."""
    units = plan_units(config)
    done = [unit for unit in units if unit_done(unit, results, config.search.trials)]
    members = [unit for unit in units if unit.is_member]
    pending = [unit for unit in units if unit not in done]
    lines = [
        f"members  {sum(u.is_member for u in done)} of {len(members)} published "
        f"({teacher_folder(results)})",
        f"searches {sum(not u.is_member for u in done)} of {len(units) - len(members)} "
        f"finished ({results / 'results.csv'})",
        f"units    {len(done)} of {len(units)} done; next: "
        f"{pending[0].name if pending else 'none, the campaign is complete'}",
    ]
    lines += [f"part     {name}: {trials} of {config.search.trials} trials committed "
              f"({search_state_folder(results, name)})"
              for name, trials in pending_parts(config, results).items()]
    return lines


