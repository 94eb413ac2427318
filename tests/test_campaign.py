"""A campaign survives lost run folders: what it finished is what its results folder holds.

Smoke scale: two tiny teacher members and two MLP searches. One campaign runs straight
through; another does one unit a call and loses its run folder between every pair of units,
as a change of machine would. Both commit each unit as it ends, into git repositories made
here, and end with the same files: the same logits digests, the same trial rows.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mimic_tf.config import load_config
from mimic_tf.teachers.published import file_sha256, member_paths
from tuner import campaign

REPO = Path(__file__).resolve().parent.parent
UNITS = ["member 1", "member 2", "mlp-d1-b30k", "mlp-d2-b30k"]
TIMING_COLUMNS = ("train_seconds",)


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
    lossy_logs = []
    for _ in UNITS:  # one unit a call, the run folder lost before each
        shutil.rmtree(root / "runs-lossy", ignore_errors=True)
        lossy_logs.append(run_campaign(config, lossy, root / "runs-lossy", "--units", "1"))
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
    for key in ("straight", "lossy"):
        subjects = [subject.rsplit(" (", 1)[0]  # less the hours it took
                    for subject in commit_subjects(campaigns[key].parent)]
        assert subjects == [
            "Campaign smoke-campaign: teacher member 1 of 2",
            "Campaign smoke-campaign: teacher member 2 of 2",
            "Campaign smoke-campaign: search mlp-d1-b30k",
            "Campaign smoke-campaign: search mlp-d2-b30k",
        ]
        status = subprocess.run(["git", "-C", str(campaigns[key].parent), "status",
                                 "--porcelain"], capture_output=True, text=True, check=True)
        assert status.stdout == ""  # every file the campaign wrote is committed


def test_a_campaign_that_lost_its_run_folder_ends_with_the_same_files(campaigns):
    assert logits_digests(campaigns["lossy"]) == logits_digests(campaigns["straight"])
    assert trial_rows(campaigns["lossy"]) == trial_rows(campaigns["straight"])
    with (campaigns["lossy"] / campaign.UNITS_FILE).open(newline="") as stream:
        assert [row["unit"] for row in csv.DictReader(stream)] == UNITS


def test_no_committed_unit_is_done_twice(campaigns):
    for log, unit in zip(campaigns["lossy_logs"], UNITS, strict=True):
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
