"""A campaign's compute bill: hours by stage and machine, and the hours left by the plan.

The members' hours come from their manifests (training and logits apart, each on the CPU that
did it: a member trained before the unit design has only its logits in units.csv); the
searches' from units.csv, a search in parts one line a part.

    python -m tuner.campaign bill --config cpu-replication-v2 \\
        --results results/cpu-replication-v2 [--plan ~/mimic-tf-runs/cpu-replication-v2.plan.json]
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path

from mimic_tf.config import ExperimentConfig
from tuner.campaign.parts import ended_trials, search_state_folder
from tuner.campaign.units import UNITS_FILE, plan_units, teacher_folder, unit_done
from tuner.search.cells import HARD_SUFFIX

STAGES = ("teacher members: training", "teacher members: logits", "MLP searches",
          "CNN searches", "hard-label baselines")


@dataclasses.dataclass(frozen=True)
class BillRow:
    """Hours one stage spent on one machine, over `units` units (or parts)."""

    stage: str
    cpu: str
    units: int
    seconds: float

    @property
    def hours(self) -> float:
        return self.seconds / 3600


def search_stage(unit_name: str) -> str:
    """The stage of a search unit's line in units.csv (a part's name has its trials after)."""
    name = unit_name.split(" (", 1)[0]
    if name.endswith(HARD_SUFFIX):
        return "hard-label baselines"
    return "MLP searches" if name.startswith("mlp") else "CNN searches"


def bill_rows(results: Path) -> list[BillRow]:
    """The campaign's hours by stage and CPU, stages in order, from its results folder."""
    spent: dict[tuple[str, str], list[float]] = {}
    for manifest_path in sorted(teacher_folder(results).glob("member_*.json")):
        manifest = json.loads(manifest_path.read_text())
        made_by = manifest.get("made_by", {}).get("cpu", "unknown CPU")
        trained_on = (manifest.get("training_record", {}).get("runtime", {}).get("cpu")
                      or made_by)
        spent.setdefault((STAGES[0], trained_on), []).append(float(manifest["train_seconds"]))
        spent.setdefault((STAGES[1], made_by), []).append(float(manifest["logits_seconds"]))
    if (results / UNITS_FILE).is_file():
        with (results / UNITS_FILE).open(newline="") as stream:
            for row in csv.DictReader(stream):
                if not row["unit"].startswith("member"):
                    key = (search_stage(row["unit"]), row["cpu"])
                    spent.setdefault(key, []).append(float(row["seconds"]))
    return [BillRow(stage, cpu, len(seconds), sum(seconds))
            for (stage, cpu), seconds in sorted(spent.items(),
                                                key=lambda item: STAGES.index(item[0][0]))]


def bill_table(rows: list[BillRow]) -> list[str]:
    """The bill as a markdown table, its total last."""
    lines = ["| stage | machine | units | hours |", "|---|---|---|---|"]
    lines += [f"| {row.stage} | {row.cpu} | {row.units} | {row.hours:.2f} |" for row in rows]
    lines.append(f"| **in all** | | | **{sum(r.hours for r in rows):.2f}** |")
    return lines


def hours_left(config: ExperimentConfig, results: Path, plan: dict) -> float:
    """The pending units' hours by the plan (campaign_plan.py's JSON): each member not
    published, each search not finished (less the rounds its committed parts ran)."""
    trials = config.search.trials
    rounds = math.ceil(trials / int(plan.get("workers", 1)))
    left = 0.0
    for unit in plan_units(config):
        if unit_done(unit, results, trials):
            continue
        if unit.is_member:
            left += plan["member_unit_hours"][unit.member - 1]
            continue
        ended = ended_trials(search_state_folder(results, unit.name))
        remaining = math.ceil((trials - ended) / int(plan.get("workers", 1)))
        left += plan["search_unit_hours"][unit.name] * remaining / rounds
    return left
