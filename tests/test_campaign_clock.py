"""A unit's seconds count its earlier runs that a stop cut, where its run folder kept them."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mimic_tf.config import load_config
from tuner.campaign import UNITS_FILE, Campaign, Unit, runner
from tuner.campaign.clock import UnitClock

REPO = Path(__file__).resolve().parent.parent


def test_a_clock_counts_the_earlier_runs_of_its_own_unit_only(tmp_path):
    path = tmp_path / "unit-clock.json"
    with UnitClock(path, "cnn-d3-b1M") as first:
        time.sleep(0.2)
    assert first.seconds >= 0.2
    assert json.loads(path.read_text()) == {"unit": "cnn-d3-b1M",
                                            "seconds": round(first.seconds, 1)}
    again = UnitClock(path, "cnn-d3-b1M")
    assert again.before == pytest.approx(first.seconds, abs=0.05)
    with again:
        time.sleep(0.1)
    assert again.seconds >= again.before + 0.1
    assert UnitClock(path, "cnn-d4-b1M").before == 0  # another unit starts from zero
    again.clear()
    assert not path.exists() and UnitClock(path, "cnn-d3-b1M").before == 0


@pytest.mark.parametrize("text", ["", "{not json", "[1, 2]", '{"unit": "u"}',
                                  '{"unit": "u", "seconds": "many"}'])
def test_an_unreadable_clock_counts_nothing(tmp_path, text):
    path = tmp_path / "unit-clock.json"
    path.write_text(text)
    assert UnitClock(path, "u").before == 0


def test_a_killed_unit_leaves_its_last_tick(tmp_path):
    path = tmp_path / "unit-clock.json"
    code = ("import sys, time; from tuner.campaign.clock import UnitClock\n"
            "with UnitClock(sys.argv[1], 'member 2', every=0.05):\n"
            "    time.sleep(60)\n")
    process = subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=REPO,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if path.is_file() and json.loads(path.read_text())["seconds"] >= 0.5:
                break
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    saved = json.loads(path.read_text())  # whole: written, then renamed
    assert saved["unit"] == "member 2" and saved["seconds"] >= 0.5
    assert UnitClock(path, "member 2").before == saved["seconds"]


def test_the_campaign_records_a_units_cut_and_resumed_runs_together(tmp_path, monkeypatch):
    """A unit that fails part way (as a stop would cut it) and then ends: its line in
    units.csv holds both runs' seconds, and the clock is gone once the line is written."""
    config = load_config(REPO / "configs" / "smoke.yaml")
    campaign = Campaign(config_arg="smoke", config=config, results=tmp_path / "results",
                        out=tmp_path / "runs")
    runs = []

    def fake_unit(campaign, unit, index, stop_after=None):
        runs.append(unit.name)
        time.sleep(1.2 if len(runs) == 1 else 0.4)
        return (1 if len(runs) == 1 else 0), []

    monkeypatch.setattr(runner, "plan_units", lambda config: [Unit("member 1", 1)])
    monkeypatch.setattr(runner, "unit_done", lambda unit, results, trials: len(runs) == 2)
    monkeypatch.setattr(runner, "run_unit", fake_unit)
    assert runner.run_campaign(campaign) == 4  # the first run fails: the unit is cut
    assert json.loads(campaign.layout.unit_clock.read_text())["seconds"] >= 1.2
    assert runner.run_campaign(campaign) == 0
    with (campaign.results / UNITS_FILE).open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["unit"] for row in rows] == ["member 1"]
    assert float(rows[0]["seconds"]) >= 2  # 1.2 + 0.4 in whole seconds; the last run alone: 0
    assert not campaign.layout.unit_clock.exists()
