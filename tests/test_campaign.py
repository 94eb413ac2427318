"""A campaign survives lost run folders: what it finished is what its results folder holds.

Smoke scale: two tiny teacher members and two MLP searches. One campaign runs straight
through; another does one unit a call and loses its run folder between every pair of units,
as a change of machine would, and its plan (`--plan`) says the second search is too long for
one unit, so that search runs in two parts, the second on a "new machine" from the first's
committed state alone. Both commit each unit as it ends, into git repositories made here,
and end with the same files: the same logits digests, the same trial rows.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mimic_tf.config import load_config
from mimic_tf.runtime import cpu_name
from mimic_tf.teachers.published import file_sha256, member_paths
from tuner import campaign

REPO = Path(__file__).resolve().parent.parent
UNITS = ["member 1", "member 2", "mlp-d1-b30k", "mlp-d2-b30k"]
# The lossy campaign's units: its plan cuts the second search's 2 trials into 2 parts.
LOSSY_UNITS = [*UNITS[:3], "mlp-d2-b30k (trials 1-1 of 2)", "mlp-d2-b30k (trials 2-2 of 2)"]
TIMING_COLUMNS = ("train_seconds",)


def write_plan(path: Path, hours: dict[str, float], workers: int = 1,
               cpu: str | None = None) -> Path:
    """A plan as benchmarks/campaign_plan.py writes it, its last line the JSON the campaign
    reads."""
    plan = {"runtime": {"cpu": cpu or cpu_name()}, "workers": workers,
            "search_unit_hours": hours}
    path.write_text("| stage | measured | count | hours |\n" + json.dumps(plan) + "\n")
    return path


def campaign_config(path: Path) -> Path:
    config = yaml.safe_load((REPO / "configs" / "smoke.yaml").read_text())
    config["name"] = "smoke-campaign"
    config["search"].update({"mlp_depths": [1, 2], "cnn_depths": [], "baseline": False,
                             "export": False})
    path.write_text(yaml.safe_dump(config))
    return path


def run_campaign(config: Path, results: Path, out: Path, *extra: str) -> str:
    """`python -m tuner.campaign run ... --commit` in a subprocess; its output."""
    finished = subprocess.run(
        [sys.executable, "-m", "tuner.campaign", "run", "--config", str(config),
         "--results", str(results), "--out", str(out), "--commit", *extra],
        capture_output=True, text=True, cwd=REPO, timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    return finished.stdout + finished.stderr


def git_repository(path: Path) -> Path:
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    for key, value in (("user.name", "campaign test"), ("user.email", "test@localhost")):
        subprocess.run(["git", "-C", str(path), "config", key, value], check=True)
    return path


def commit_subjects(repository: Path) -> list[str]:
    log = subprocess.run(["git", "-C", str(repository), "log", "--format=%s"],
                         capture_output=True, text=True, check=True).stdout
    return log.splitlines()[::-1]


def trial_rows(results: Path) -> list[dict[str, str]]:
    with (results / "results.csv").open(newline="") as stream:
        return [{key: value for key, value in row.items() if key not in TIMING_COLUMNS}
                for row in csv.DictReader(stream)]


def logits_digests(results: Path) -> list[str]:
    manifests = [json.loads(member_paths(results / "teacher", index)[1].read_text())
                 for index in (0, 1)]
    for index, manifest in enumerate(manifests):  # the manifest names the file it sits by
        assert manifest["logits_sha256"] == file_sha256(member_paths(results / "teacher",
                                                                     index)[0])
    return [manifest["logits_sha256"] for manifest in manifests]


@pytest.fixture(scope="module")
def campaigns(tmp_path_factory):
    root = tmp_path_factory.mktemp("campaign")
    config = campaign_config(root / "campaign.yaml")
    straight = git_repository(root / "straight") / "results"
    straight_log = run_campaign(config, straight, root / "runs-straight")
    lossy = git_repository(root / "lossy") / "results"
    # 2 trials of 1 hour each at the caps: over 1.5 hours, so two parts of one trial
    plan = write_plan(root / "plan.txt", {"mlp-d2-b30k": 2.0})
    lossy_logs = []
    for _ in LOSSY_UNITS:  # one unit a call, the run folder lost before each
        shutil.rmtree(root / "runs-lossy", ignore_errors=True)
        lossy_logs.append(run_campaign(config, lossy, root / "runs-lossy", "--units", "1",
                                       "--plan", str(plan), "--max-unit-hours", "1.5"))
    shutil.rmtree(root / "runs-lossy")
    again = run_campaign(config, lossy, root / "runs-lossy")  # a new machine, all done
    return {"config": config, "straight": straight, "straight_log": straight_log,
            "lossy": lossy, "lossy_logs": lossy_logs, "again": again}


def test_units_are_members_then_searches():
    config = load_config("smoke", overrides={
        "search.mlp_depths": [1, 2], "search.cnn_depths": [1], "search.baseline": True,
        "search.baseline_families": ["cnn"], "search.budgets": [3e4]})
    names = [unit.name for unit in campaign.plan_units(config)]
    assert names == ["member 1", "member 2", "mlp-d1-b30k", "mlp-d2-b30k", "cnn-d1-b30k",
                     "cnn-d1-b30k-hard"]


def test_each_unit_is_committed_as_it_ends(campaigns):
    for key, units in (("straight", UNITS), ("lossy", LOSSY_UNITS)):
        subjects = [subject.rsplit(" (", 1)[0] if subject.endswith(" h)") else subject
                    for subject in commit_subjects(campaigns[key].parent)]  # less its hours
        assert subjects == [
            "Campaign smoke-campaign: teacher member 1 of 2",
            "Campaign smoke-campaign: teacher member 2 of 2",
            *(f"Campaign smoke-campaign: search {unit}" for unit in units[2:]),
        ]
        status = subprocess.run(["git", "-C", str(campaigns[key].parent), "status",
                                 "--porcelain"], capture_output=True, text=True, check=True)
        assert status.stdout == ""  # every file the campaign wrote is committed


def test_a_campaign_that_lost_its_run_folder_ends_with_the_same_files(campaigns):
    assert logits_digests(campaigns["lossy"]) == logits_digests(campaigns["straight"])
    assert trial_rows(campaigns["lossy"]) == trial_rows(campaigns["straight"])
    with (campaigns["lossy"] / campaign.UNITS_FILE).open(newline="") as stream:
        assert [row["unit"] for row in csv.DictReader(stream)] == LOSSY_UNITS


def test_a_search_in_parts_commits_its_state_without_weights(campaigns):
    state = campaign.search_state_folder(campaigns["lossy"], "mlp-d2-b30k")
    files = sorted(str(path.relative_to(state)) for path in state.rglob("*") if path.is_file())
    assert files == ["cell.json", "evaluation.json", "oracle.json", "search.json",
                     "trial_0/history.json", "trial_0/trial.json", "trial_1/history.json",
                     "trial_1/trial.json"]
    assert campaign.ended_trials(state) == 2  # brought up to date by the last part
    assert not campaign.search_state_folder(campaigns["straight"], "mlp-d2-b30k").exists()
    second = campaigns["lossy_logs"][4]
    assert "unit mlp-d2-b30k: 1 ended trials of its earlier parts copied from" in second
    # ... and its oracle goes on from them: one trial more, not the search again from trial 1
    # (the same seed would redo the first part's trial to the same rows, unseen by the above)
    assert "search of 2 trials, 1 finished trial(s) kept" in second
    assert re.findall(r"\] trial (\d+)/2 start:", second) == ["2"]
    # the first part's trial was tested on its machine; the second part reused its numbers
    evaluation = json.loads((state / "evaluation.json").read_text())
    assert sorted(evaluation["trials"]) == ["0", "1"]


@pytest.mark.parametrize(("hours", "workers", "ended", "expected"), [
    (2.0, 2, 0, None),   # 3 rounds of 0.67 h: the whole search fits 2 hours
    (2.4, 2, 0, 4),      # 3 rounds of 0.8 h: 2 rounds fit, 4 trials, then the rest
    (2.4, 2, 4, None),   # the last round, after a part of 4 trials
    (2.4, 2, 1, 5),      # a part killed after 1 trial ended: 2 rounds on from there
    (2.4, 2, 3, None),   # 3 ended: the 3 left take 2 rounds, which fit
    (9.0, 2, 0, 2),      # a round longer than a unit: at least one round
    (2.4, 1, 0, 2),      # one trial at a time: rounds of one trial, 0.8 h each
])
def test_a_search_longer_than_a_unit_stops_after_the_rounds_that_fit(hours, workers, ended,
                                                                   expected):
    config = load_config("smoke", overrides={"search.trials": 6})
    plan = {"workers": 2, "search_unit_hours": {"mlp-d1-b30k": hours}}
    runner = campaign.Campaign("smoke", config, Path("results"), Path("runs"),
                               workers=workers, plan=plan, max_unit_hours=2.0)
    assert runner.stop_after(campaign.Unit("mlp-d1-b30k"), ended) == expected
    assert runner.stop_after(campaign.Unit("mlp-d2-b30k"), ended) is None  # not in the plan


def test_a_search_unit_distils_from_the_committed_members_and_serves_no_frontier():
    """A unit's command reads the published members and skips the frontier, which would serve
    every trial of the run folder again at the end of each unit (and needs no unit's rows)."""
    config = load_config("smoke", overrides={"frontier.measure": True})
    runner = campaign.Campaign("smoke", config, Path("results"), Path("runs"))
    command = runner.search_command(campaign.Unit("mlp-d1-b30k"))
    assert command[command.index("--teacher-logits") + 1] == str(Path("results") / "teacher")
    assert "--no-frontier" in command
    from tuner.run import build_parser, overrides_from

    args = build_parser().parse_args(command[command.index("tuner.run") + 1:])
    assert overrides_from(args)["frontier.measure"] is False


def test_the_bill_counts_members_from_their_manifests_and_searches_by_part(campaigns):
    rows = campaign.bill_rows(campaigns["lossy"])
    assert [(row.stage, row.cpu, row.units) for row in rows] == [
        ("teacher members: training", cpu_name(), 2), ("teacher members: logits", cpu_name(), 2),
        ("MLP searches", cpu_name(), 3)]  # the second search in two parts
    manifests = [json.loads(path.read_text())
                 for path in sorted((campaigns["lossy"] / "teacher").glob("member_*.json"))]
    assert rows[0].seconds == pytest.approx(sum(m["train_seconds"] for m in manifests))
    with (campaigns["lossy"] / campaign.UNITS_FILE).open(newline="") as stream:
        searches = [float(row["seconds"]) for row in csv.DictReader(stream)
                    if not row["unit"].startswith("member")]
    assert rows[2].seconds == pytest.approx(sum(searches))
    table = campaign.bill_table(rows)
    assert table[-1] == f"| **in all** | | | **{sum(row.hours for row in rows):.2f}** |"


def test_hours_left_by_the_plan_count_what_is_not_committed(campaigns, tmp_path):
    config = load_config(campaigns["config"])
    plan = {"workers": 1, "member_unit_hours": [1.0, 2.0],
            "search_unit_hours": {"mlp-d1-b30k": 0.5, "mlp-d2-b30k": 0.4}}
    assert campaign.hours_left(config, campaigns["lossy"], plan) == 0.0
    partial = tmp_path / "results"
    shutil.copytree(campaigns["lossy"], partial)
    member_paths(partial / "teacher", 1)[1].unlink()  # member 2 not published
    (partial / "results.csv").write_text("")  # no search finished; the second has a part
    state = campaign.search_state_folder(partial, "mlp-d2-b30k")
    oracle = json.loads((state / "oracle.json").read_text())
    oracle["end_order"] = oracle["end_order"][:1]  # 1 of its 2 trials committed
    (state / "oracle.json").write_text(json.dumps(oracle))
    assert campaign.hours_left(config, partial, plan) == pytest.approx(2.0 + 0.5 + 0.4 / 2)
    assert "part     mlp-d2-b30k: 1 of 2 trials committed" in "\n".join(
        campaign.status_lines(config, partial))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_search_in_parts_with_a_chief_and_two_workers(campaigns, tmp_path):
    """The campaign's way on the real machine: a chief and two one-thread workers run each part,
    whole rounds of two trials, and the next part goes on from the committed state alone."""
    config = yaml.safe_load(campaigns["config"].read_text())
    config["search"].update({"trials": 4, "mlp_depths": [1]})
    config_path = tmp_path / "four-trials.yaml"
    config_path.write_text(yaml.safe_dump(config))
    results = git_repository(tmp_path / "repository") / "results"
    shutil.copytree(campaigns["lossy"] / "teacher", results / "teacher")  # members committed
    # 4 trials, 2 at a time: 2 rounds of 1 hour, over 1.5 hours, so two parts of one round
    plan = write_plan(tmp_path / "plan.txt", {"mlp-d1-b30k": 2.0}, workers=2)
    port = free_port()  # the search is unit 3 of the plan: its chief serves on base + 200
    logs = []
    for _ in range(2):  # each part on a "new machine"
        shutil.rmtree(tmp_path / "runs", ignore_errors=True)
        logs.append(run_campaign(config_path, results, tmp_path / "runs", "--units", "1",
                                 "--workers", "2", "--oracle-port", str(port - 200),
                                 "--plan", str(plan), "--max-unit-hours", "1.5"))
    assert "unit mlp-d1-b30k (trials 1-2 of 4): done" in logs[0]
    assert "unit mlp-d1-b30k (trials 3-4 of 4): done" in logs[1]
    assert "2 ended trials of its earlier parts copied" in logs[1]
    assert "search of 4 trials, 2 finished trial(s) kept" in logs[1]  # the chief's oracle
    rows = trial_rows(results)
    assert sorted(row["trial_id"] for row in rows) == ["0", "1", "2", "3"]
    tested = {row["trial_id"] for row in rows if row["test_accuracy"]}
    assert {"0", "1"} <= tested  # the first part's, tested on the machine they ended on
    assert next(row for row in rows if row["rank"] == "1")["trial_id"] in tested
    assert campaign.ended_trials(campaign.search_state_folder(results, "mlp-d1-b30k")) == 4



def test_a_unit_of_another_family_on_a_new_machine_keeps_every_committed_row(campaigns,
                                                                             tmp_path):
    """A unit's report is the whole experiment's: a CNN search run from a new run folder after
    the MLP searches were committed keeps their rows in results.csv (and so their units done)."""
    repository = tmp_path / "repository"
    shutil.copytree(campaigns["lossy"].parent, repository)  # main, with its git history
    results = repository / "results"
    config = yaml.safe_load(campaigns["config"].read_text())
    config["search"]["cnn_depths"] = [1]
    config_path = tmp_path / "with-a-cnn.yaml"
    config_path.write_text(yaml.safe_dump(config))
    before = {row["cell"] for row in trial_rows(results)}
    assert before == {"mlp-d1-b30k", "mlp-d2-b30k"}
    log = run_campaign(config_path, results, tmp_path / "runs", "--units", "1")
    assert "unit cnn-d1-b30k: done" in log
    assert {row["cell"] for row in trial_rows(results)} == before | {"cnn-d1-b30k"}

def test_a_plan_measured_on_another_cpu_is_not_used(tmp_path):
    here = write_plan(tmp_path / "here.txt", {"cnn-d4-b1M": 3.0})
    assert campaign.read_plan(here)["search_unit_hours"] == {"cnn-d4-b1M": 3.0}
    elsewhere = write_plan(tmp_path / "elsewhere.txt", {"cnn-d4-b1M": 3.0}, cpu="a Zen 3")
    assert campaign.read_plan(elsewhere) is None
    (tmp_path / "table.txt").write_text("| stage | measured |\n")
    with pytest.raises(ValueError, match="not the output of benchmarks/campaign_plan.py"):
        campaign.read_plan(tmp_path / "table.txt")


def test_no_committed_unit_is_done_twice(campaigns):
    for log, unit in zip(campaigns["lossy_logs"], LOSSY_UNITS, strict=True):
        started = [line for line in log.splitlines() if ": start (" in line]
        assert len(started) == 1 and f"unit {unit}: start" in started[0]
    trained = sum(log.count("teacher member 1/2: training") for log in campaigns["lossy_logs"])
    assert trained == 1
    assert ": start (" not in campaigns["again"]  # a new machine with everything committed


def test_status_counts_what_the_results_folder_holds(campaigns, tmp_path):
    config = load_config(campaigns["config"])
    lines = campaign.status_lines(config, campaigns["lossy"])
    assert lines[0].startswith("members  2 of 2") and lines[1].startswith("searches 2 of 2")
    assert "units    4 of 4 done" in lines[2]
    partial = tmp_path / "results"
    shutil.copytree(campaigns["lossy"] / "teacher", partial / "teacher")
    member_paths(partial / "teacher", 1)[1].unlink()  # member 2 unfinished
    assert "units    1 of 4 done; next: member 2" in campaign.status_lines(config, partial)[2]
