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
files. A new machine starts from the repository alone and does only what is missing; nothing
committed is computed twice.

    python -m tuner.campaign run --config cpu-replication-v2 \\
        --results results/cpu-replication-v2 --out ~/mimic-tf-runs --commit
    python -m tuner.campaign status --config cpu-replication-v2 \\
        --results results/cpu-replication-v2       # units done of how many; `next`: the next

Each unit runs as a subprocess, so a unit's TensorFlow state never reaches the next. After
member 1 the campaign goes on only when it reaches `--member-bar` test accuracy (exit 3
below it). Exit codes: 0 every unit done (or `--units` of them), 2 bad input, 3 member 1
under the bar, 4 a unit failed (its exit code in the log).
"""

from __future__ import annotations

import argparse
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

from mimic_tf.config import ConfigError, ExperimentConfig, load_config
from mimic_tf.layout import ExperimentLayout
from mimic_tf.teachers.published import member_paths
from tuner.search import kept
from tuner.search.cells import planned_cells

FAMILIES = ("mlp", "cnn")
UNITS_FILE = "units.csv"
UNITS_COLUMNS = ("unit", "finished", "seconds", "cpu", "commit")
SEARCHES_FOLDER = "searches"  # <results>/searches/<cell>/: a search in parts, between parts
# What a part of a search commits of its folder: KerasTuner's project and our JSON files, not
# the weights (checkpoints, a running trial's backup, the best student).
SEARCH_STATE = ("cell.json", "search.json", "evaluation.json", "oracle.json",
                "trial_*/trial.json", "trial_*/history.json")
# What a search unit copies from the run folder into the results folder.
REPORT_FILES = ("results.csv", "results.md", "figure.png", "config.yaml")
ORACLE_IP = "127.0.0.1"
WORKER_GRACE_SECONDS = 60  # workers still alive this long after their chief are stopped


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


def search_state_folder(results: Path, name: str) -> Path:
    """Where a search in parts keeps its state between parts: `<results>/searches/<name>/`."""
    return results / SEARCHES_FOLDER / name


def ended_trials(search_folder: Path) -> int:
    """How many trials a search folder's KerasTuner oracle has ended (0: none, or no oracle)."""
    try:
        return len(json.loads((search_folder / "oracle.json").read_text()).get("end_order", []))
    except (OSError, ValueError):
        return 0


def _state_files(folder: Path) -> list[Path]:
    return sorted({path for pattern in SEARCH_STATE for path in folder.glob(pattern)})


def _copy_state(source: Path, target: Path) -> list[Path]:
    """Copy a search's state files from `source` into `target`, each written then renamed,
    the oracle last (a reader that finds the oracle finds the trials it names)."""
    from mimic_tf.files import atomic_write_bytes

    files = _state_files(source)
    files.sort(key=lambda path: path.name == "oracle.json")
    written = []
    for path in files:
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(destination, path.read_bytes())
        written.append(destination)
    return written


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


# --- Running one unit -----------------------------------------------------------------------

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
        family = unit.name.split("-", 1)[0]
        command = [self.python, "-m", "tuner.run", "--family", family, "--config",
                   self.config_arg, "--out", str(self.out), "--only", unit.name,
                   "--teacher-logits", str(teacher_folder(self.results))]
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


def _log(message: str) -> None:
    print(f"[{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}] {message}", flush=True)


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
        _log(f"{unit.name}: worker {number} of {campaign.workers}, one thread, log {log_path}")
        with open(log_path, "a") as log:
            workers.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={
                **environment, "KERASTUNER_TUNER_ID": f"worker{number}",
                "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}))
    chief = subprocess.Popen(command, env={**environment, "KERASTUNER_TUNER_ID": "chief"})
    try:
        while chief.poll() is None:
            failed = [w for w in workers if w.poll() not in (None, 0)]
            if failed:
                _log(f"{unit.name}: a worker failed (exit {failed[0].returncode}); stopping "
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
    _log(f"commit failed (the files stay in place, uncommitted): {message}")
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
        _copy_state(state, run_folder)
        _log(f"unit {unit.name}: {committed} ended trials of its earlier parts copied from "
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
            _log(f"unit {name}: start ({index + 1} of {len(units)})")
            started = time.perf_counter()
            code, published = run_unit(campaign, unit, index, stop_after)
            seconds = time.perf_counter() - started
            finished = unit_done(unit, campaign.results, trials)
            run_folder = campaign.layout.search(unit.name).root
            state = search_state_folder(campaign.results, unit.name)
            part = (not finished and stop_after is not None
                    and ended_trials(run_folder) >= stop_after)
            if code != 0 or not (finished or part):
                _log(f"unit {name}: failed (exit {code}) after {seconds:.0f} s")
                return 4
            if part or (finished and state.is_dir()):  # a part, or the last one
                published += _copy_state(run_folder, state)
            published.append(_record_unit(campaign, name, seconds))
            _log(f"unit {name}: done in {seconds:.0f} s")
            if commit:
                what = (f"teacher member {unit.member} of {campaign.config.teacher.ensemble_size}"
                        if unit.is_member else f"search {name}")
                commit_files(published, f"Campaign {campaign.config.name}: {what} "
                             f"({seconds / 3600:.2f} h)")
            done += 1
            if unit.member == 1 and member_bar > 0:
                accuracy = member_accuracy(campaign.results, 1)
                if accuracy < member_bar:
                    _log(f"member 1: test accuracy {accuracy:.4f} under the bar {member_bar}: "
                         "find out why before training more (--member-bar 0 goes on)")
                    return 3
    return 0


def read_plan(path: Path) -> dict | None:
    """campaign_plan.py's JSON (its output's last line) where it was measured on this CPU;
    None, with a line in the log, where it was measured on another one."""
    from mimic_tf.runtime import cpu_name

    try:
        plan = json.loads(path.read_text().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        raise ValueError(f"--plan {path}: not the output of benchmarks/campaign_plan.py "
                         "(its last line is the plan as JSON); measure it again with "
                         "python benchmarks/campaign_plan.py --workers N > FILE") from None
    measured_on = plan.get("runtime", {}).get("cpu")
    if measured_on != cpu_name():
        _log(f"--plan {path} was measured on {measured_on}, not on this {cpu_name()}: not "
             "used (every search is one unit); measure it here again")
        return None
    return plan


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tuner.campaign",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=("run", "status", "next"),
                        help="run the pending units; status: units done of how many; next: "
                        "the next unit's name (nothing when all are done)")
    parser.add_argument("--config", required=True, help="config name in configs/ or path")
    parser.add_argument("--results", required=True, type=Path,
                        help="the campaign's results folder in the repository")
    parser.add_argument("--out", type=Path, default=Path("runs"),
                        help="the run folder's parent, scratch (default: runs/)")
    parser.add_argument("--units", type=int, default=None,
                        help="do at most this many units, then stop (default: all)")
    parser.add_argument("--commit", action="store_true",
                        help="commit each unit's files when it ends")
    parser.add_argument("--workers", type=int, default=1,
                        help="trials side by side in a search, one TensorFlow thread each "
                        "(default 1: one process)")
    parser.add_argument("--oracle-port", type=int, default=27100,
                        help="the chiefs' base port on 127.0.0.1 (search i on base + 100 i)")
    parser.add_argument("--member-bar", type=float, default=0.0,
                        help="stop after member 1 below this test accuracy (default 0: off)")
    parser.add_argument("--plan", type=Path, default=None,
                        help="benchmarks/campaign_plan.py --workers N's output on this "
                        "machine: a search whose rest would take over --max-unit-hours runs "
                        "in parts (default: none, every search is one unit)")
    parser.add_argument("--max-unit-hours", type=float, default=2.0,
                        help="the longest unit the plan may start (default 2.0)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.action == "status":
        print("\n".join(status_lines(config, args.results)))
        return 0
    if args.action == "next":
        pending = [unit for unit in plan_units(config)
                   if not unit_done(unit, args.results, config.search.trials)]
        if pending:
            print(pending[0].name)
        return 0
    try:
        plan = read_plan(args.plan) if args.plan is not None else None
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    campaign = Campaign(args.config, config, args.results, args.out, workers=args.workers,
                        oracle_port=args.oracle_port, plan=plan,
                        max_unit_hours=args.max_unit_hours)
    return run_campaign(campaign, max_units=args.units, commit=args.commit,
                        member_bar=args.member_bar)


if __name__ == "__main__":
    sys.exit(main())
