"""A campaign: one long experiment run as units of work, each committed when it ends.

The machine under a long run is replaced every few stretches of work, and its run folder
with it. So a campaign's progress is what its results folder (in the repository) holds, and
the run folder is scratch. The work is cut into units, each sized to end inside one stretch:

    member 1 .. member M      train one teacher member, publish its float16 logits
                              (`mimic_tf.publish_teacher --train`) into <results>/teacher/
    <cell>, <cell>-hard       one search (`tuner.run --only <cell>`), from the published
                              members' logits (`--teacher-logits`), its rows and test accuracies
                              published into <results>/results.csv (`--keep` reads them back)

A unit is done when the results folder holds it: a published member (its manifest), a
finished search (all its trials, its best one tested, in results.csv).

A search longer than one stretch of work runs in parts. `--plan` is the JSON line of
`benchmarks/campaign_plan.py --workers N` on the machine at hand (each search unit's hours at
its epoch caps); where a search's remaining rounds of trials would take over
`--max-unit-hours`, the unit runs only the rounds that fit (`tuner.run --stop-after-trials`),
tests their trials, and commits, with its rows, the search's KerasTuner project less its
weights into <results>/searches/<cell>/ (oracle, trials, our JSON files). The next part, on
this machine or a new one, copies that back where its run folder holds fewer ended trials,
and KerasTuner goes on from it as from any stopped search. `run` does the pending units in
order, and after each one copies its files into the results folder, appends a line to
`units.csv` (unit, when, seconds, CPU, commit) and, with `--commit`, commits exactly those
files. A unit's seconds count its earlier runs that a stop cut, where the run folder that
resumed it kept their time (`clock`). A new machine starts from the repository alone and
does only what is missing; nothing committed is computed twice.

    python -m tuner.campaign run --config cpu-replication-v2 \\
        --results results/cpu-replication-v2 --out ~/mimic-tf-runs --commit
    python -m tuner.campaign status --config cpu-replication-v2 \\
        --results results/cpu-replication-v2       # units done of how many; `next`: the next

Each unit runs as a subprocess, so a unit's TensorFlow state never reaches the next. After
member 1 the campaign goes on only when it reaches `--member-bar` test accuracy (exit 3
below it). Exit codes: 0 every unit done (or `--units` of them), 2 bad input, 3 member 1
under the bar, 4 a unit failed (its exit code in the log).

Modules, one a concept: `units` (what the units are, which are done, the status), `parts` (a
search longer than a unit: its state between parts, the plan that sizes them), `runner`
(running and committing units), `clock` (a unit's seconds across the runs that resumed
it), `bill` (the compute bill by stage and machine, and the hours
left by the plan), `__main__` (the command). Nothing here imports TensorFlow: each unit runs
as a subprocess.
"""

from tuner.campaign.bill import bill_rows, bill_table, hours_left
from tuner.campaign.parts import ended_trials, read_plan, search_state_folder
from tuner.campaign.runner import Campaign, commit_files, run_campaign, run_unit
from tuner.campaign.units import (
    UNITS_FILE,
    Unit,
    pending_parts,
    plan_units,
    status_lines,
    teacher_folder,
    unit_done,
)

__all__ = [
    "UNITS_FILE", "Campaign", "Unit", "bill_rows", "bill_table", "commit_files",
    "ended_trials", "hours_left", "pending_parts", "plan_units", "read_plan", "run_campaign",
    "run_unit", "search_state_folder", "status_lines", "teacher_folder", "unit_done",
]
