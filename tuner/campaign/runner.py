"""Running a campaign: each pending unit as a subprocess, its files published into the results
folder, its line in units.csv, and (with `commit`) exactly those files committed."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mimic_tf.config import ExperimentConfig
from mimic_tf.layout import ExperimentLayout
from mimic_tf.teachers.published import member_paths
from tuner.campaign.clock import UnitClock
from tuner.campaign.parts import copy_state, ended_trials, search_state_folder
from tuner.campaign.units import (
    UNITS_COLUMNS,
    UNITS_FILE,
    Unit,
    log,
    plan_units,
    teacher_folder,
    unit_done,
)

# What a search unit copies from the run folder into the results folder.
REPORT_FILES = ("results.csv", "results.md", "figure.png", "config.yaml")
ORACLE_IP = "127.0.0.1"
WORKER_GRACE_SECONDS = 60  # workers still alive this long after their chief are stopped


@dataclasses.dataclass(frozen=True)
class Campaign:
    """How to run a campaign's units: its config, folders and processes."""

    config_arg: str  # as given (a name in configs/ or a path): the subprocesses load it
    config: ExperimentConfig
    results: Path
    out: Path
    workers: int = 1
    oracle_port: int = 27100
    python: str = sys.executable
    plan: dict | None = None  # campaign_plan.py's JSON on this machine (search parts)
    max_unit_hours: float = 2.0

    @property
    def layout(self) -> ExperimentLayout:
        return ExperimentLayout.for_config(self.config, self.out)

    def member_command(self, unit: Unit) -> list[str]:
        return [self.python, "-m", "mimic_tf.publish_teacher", "--config", self.config_arg,
                "--out", str(self.out), "--to", str(teacher_folder(self.results)),
                "--member", str(unit.member), "--train"]

    def search_command(self, unit: Unit, stop_after: int | None = None) -> list[str]:
        # Every family: the unit's report (results.csv, the findings) is the experiment's,
        # its committed searches of the other family kept from `--keep`, where a run folder of
        # its family alone, on a new machine, would drop them. No frontier: a unit commits
        # rows, not latencies, and the frontier would serve every trial of the run folder again
        # at the end of each unit.
        command = [self.python, "-m", "tuner.run", "--family", "all", "--config",
                   self.config_arg, "--out", str(self.out), "--only", unit.name,
                   "--teacher-logits", str(teacher_folder(self.results)), "--no-frontier"]
        if (self.results / "results.csv").is_file():
            command += ["--keep", str(self.results)]
        if stop_after is not None:
            command += ["--stop-after-trials", str(stop_after)]
        return command

    def stop_after(self, unit: Unit, ended: int) -> int | None:
        """Where the plan says the rest of `unit`'s search would take over `max_unit_hours`:
        the trial count its part stops after (whole rounds of `workers` trials, at least one
        round); None where the rest fits one unit, or the plan does not price it."""
        hours = (self.plan or {}).get("search_unit_hours", {}).get(unit.name)
        if hours is None:
            return None
        trials = self.config.search.trials
        per_round = hours / math.ceil(trials / int(self.plan.get("workers", 1)))
        if math.ceil((trials - ended) / self.workers) * per_round <= self.max_unit_hours:
            return None
        rounds = max(1, math.floor(self.max_unit_hours / per_round))
        return min(trials, ended + rounds * self.workers)


def _run_search(campaign: Campaign, unit: Unit, index: int, stop_after: int | None = None) -> int:
    """One search (or a part of it): one process, or a chief and `workers` one-thread workers
    on loopback (KerasTuner's chief/worker mode). A worker that fails stops them all."""
    command = campaign.search_command(unit, stop_after)
    if campaign.workers <= 1:
        return subprocess.run(command, check=False).returncode
    environment = {**os.environ, "KERASTUNER_ORACLE_IP": ORACLE_IP,
                   "KERASTUNER_ORACLE_PORT": str(campaign.oracle_port + index * 100)}
    environment.setdefault("MIMIC_TF_WORKER_WAIT", "3600")
    workers = []
    for number in range(1, campaign.workers + 1):
        log_path = campaign.out / f"{campaign.config.name}.worker{number}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log(f"{unit.name}: worker {number} of {campaign.workers}, one thread, log {log_path}")
        with open(log_path, "a") as stream:
            workers.append(subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT, env={
                **environment, "KERASTUNER_TUNER_ID": f"worker{number}",
                "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}))
    chief = subprocess.Popen(command, env={**environment, "KERASTUNER_TUNER_ID": "chief"})
    try:
        while chief.poll() is None:
            failed = [w for w in workers if w.poll() not in (None, 0)]
            if failed:
                log(f"{unit.name}: a worker failed (exit {failed[0].returncode}); stopping "
                     "the chief and the workers (the search resumes where it stopped)")
                chief.terminate()
                chief.wait()
                return failed[0].returncode
            time.sleep(1)
        deadline = time.monotonic() + WORKER_GRACE_SECONDS
        while any(w.poll() is None for w in workers) and time.monotonic() < deadline:
            time.sleep(1)
        return chief.returncode
    finally:
        for process in [chief, *workers]:
            if process.poll() is None:
                process.terminate()
                process.wait()


def _publish_search(campaign: Campaign) -> list[Path]:
    """Copy the run's report and teacher record into the results folder; the paths written."""
    root, written = campaign.layout.root, []
    campaign.results.mkdir(parents=True, exist_ok=True)
    for name in REPORT_FILES:
        if (root / name).is_file():
            shutil.copyfile(root / name, campaign.results / name)
            written.append(campaign.results / name)
    if campaign.layout.teacher_summary.is_file():
        shutil.copyfile(campaign.layout.teacher_summary, campaign.results / "teacher.json")
        written.append(campaign.results / "teacher.json")
    findings = subprocess.run([campaign.python, "-m", "tuner.findings", str(campaign.results)],
                              capture_output=True, text=True, check=False)
    if findings.returncode == 0:
        written += [campaign.results / "findings.md", campaign.results / "findings.json"]
    return [path for path in written if path.is_file()]


def _record_unit(campaign: Campaign, name: str, seconds: float) -> Path:
    """Append the unit's line to `units.csv`: what ran, when, how long, on what, from which
    commit (the compute bill by stage and machine is read from it)."""
    from mimic_tf.files import atomic_write_text
    from mimic_tf.runtime import cpu_name, source_commit

    path = campaign.results / UNITS_FILE
    rows = []
    if path.is_file():
        with path.open(newline="") as stream:
            rows = list(csv.DictReader(stream))
    rows.append({"unit": name,
                 "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "seconds": f"{seconds:.0f}", "cpu": cpu_name(),
                 "commit": source_commit()[:12]})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=UNITS_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())
    return path


def commit_files(paths: Sequence[Path], message: str, attempts: int = 5) -> bool:
    """Commit exactly `paths` in the git repository that holds them (other staged or changed
    files are left as they are); retried while another git process holds the index lock."""
    if not paths:
        return False
    repository = paths[0].resolve().parent
    names = [str(path.resolve()) for path in paths]
    for attempt in range(attempts):
        added = subprocess.run(["git", "-C", str(repository), "add", "--", *names],
                               capture_output=True, text=True, check=False)
        committed = added.returncode == 0 and subprocess.run(
            ["git", "-C", str(repository), "commit", "-q", "-m", message, "--", *names],
            capture_output=True, text=True, check=False).returncode == 0
        if committed:
            return True
        time.sleep(2 * (attempt + 1))
    log(f"commit failed (the files stay in place, uncommitted): {message}")
    return False


def run_unit(campaign: Campaign, unit: Unit, index: int,
             stop_after: int | None = None) -> tuple[int, list[Path]]:
    """Run one unit (a search's part: up to `stop_after` trials); its exit code and the files
    it published into the results folder."""
    if unit.is_member:
        code = subprocess.run(campaign.member_command(unit), check=False).returncode
        return code, [path for path in member_paths(teacher_folder(campaign.results),
                                                    unit.member - 1) if path.is_file()]
    code = _run_search(campaign, unit, index, stop_after)
    return code, (_publish_search(campaign) if code == 0 else [])


def member_accuracy(results: Path, number: int) -> float:
    """A published member's test accuracy, from its manifest."""
    manifest = member_paths(teacher_folder(results), number - 1)[1]
    return float(json.loads(manifest.read_text())["test_accuracy"])


def _prepare_search(campaign: Campaign, unit: Unit) -> tuple[int, int | None]:
    """Before a search unit: its committed part copied back where the run folder holds
    fewer ended trials; the trials ended, and where this unit's part stops (None: the end)."""
    state = search_state_folder(campaign.results, unit.name)
    run_folder = campaign.layout.search(unit.name).root
    committed = ended_trials(state)
    if committed > ended_trials(run_folder):
        copy_state(state, run_folder)
        log(f"unit {unit.name}: {committed} ended trials of its earlier parts copied from "
             f"{state} into the run folder (their weights stayed on their machine; their "
             "test metrics are kept)")
    ended = ended_trials(run_folder)
    return ended, campaign.stop_after(unit, ended)


def run_campaign(campaign: Campaign, max_units: int | None = None, commit: bool = False,
                 member_bar: float = 0.0) -> int:
    """Do the pending units in order (at most `max_units`; a search's part counts as one);
    the exit code (module doc)."""
    units = plan_units(campaign.config)
    trials = campaign.config.search.trials
    done = 0
    for index, unit in enumerate(units):
        while not unit_done(unit, campaign.results, trials):
            if max_units is not None and done >= max_units:
                return 0
            ended, stop_after = (0, None) if unit.is_member else _prepare_search(campaign, unit)
            name = unit.name
            if ended or stop_after is not None:
                name += f" (trials {ended + 1}-{stop_after or trials} of {trials})"
            clock = UnitClock(campaign.layout.unit_clock, unit.name)
            earlier = (f"; {clock.before:.0f} s of its earlier, cut runs counted"
                       if clock.before else "")
            log(f"unit {name}: start ({index + 1} of {len(units)}){earlier}")
            with clock:
                code, published = run_unit(campaign, unit, index, stop_after)
            seconds = clock.seconds
            finished = unit_done(unit, campaign.results, trials)
            run_folder = campaign.layout.search(unit.name).root
            state = search_state_folder(campaign.results, unit.name)
            part = (not finished and stop_after is not None
                    and ended_trials(run_folder) >= stop_after)
            if code != 0 or not (finished or part):
                log(f"unit {name}: failed (exit {code}) after {seconds:.0f} s")
                return 4
            if part or (finished and state.is_dir()):  # a part, or the last one
                published += copy_state(run_folder, state)
            published.append(_record_unit(campaign, name, seconds))
            clock.clear()
            log(f"unit {name}: done in {seconds:.0f} s")
            if commit:
                what = (f"teacher member {unit.member} of {campaign.config.teacher.ensemble_size}"
                        if unit.is_member else f"search {name}")
                commit_files(published, f"Campaign {campaign.config.name}: {what} "
                             f"({seconds / 3600:.2f} h)")
            done += 1
            if unit.member == 1 and member_bar > 0:
                accuracy = member_accuracy(campaign.results, 1)
                if accuracy < member_bar:
                    log(f"member 1: test accuracy {accuracy:.4f} under the bar {member_bar}: "
                         "find out why before training more (--member-bar 0 goes on)")
                    return 3
    return 0


