"""Searches side by side (tuner.search.lanes): how many lanes, in which order, one claim a
search, and a lane that fails stops the run with its log named. The lanes end to end (the
same searches as one process) are tested in tests/test_tuner.py."""

from __future__ import annotations

import os

import pytest

from mimic_tf.layout import ExperimentLayout
from mimic_tf.vocabulary import LANE_SEARCHES
from tuner.search import lanes
from tuner.search.cells import Cell


def test_auto_is_one_lane_a_core_on_a_cpu_and_one_beside_a_gpu():
    cores = os.cpu_count() or 1
    assert lanes.lane_count(0, pending=64, gpus=0) == cores
    assert lanes.lane_count(0, pending=64, gpus=1) == 1
    assert lanes.lane_count(3, pending=64, gpus=0) == 3


def test_never_more_lanes_than_searches_left():
    assert lanes.lane_count(8, pending=2, gpus=0) == 2
    assert lanes.lane_count(8, pending=0, gpus=0) == 1


def test_the_costliest_searches_go_first():
    cells = [Cell("mlp", 1, 1e6), Cell("cnn", 1, 1e5), Cell("cnn", 2, 3.16e5),
             Cell("mlp", 2, 1e5), Cell("cnn", 1, 3.16e5)]
    order = [cell.name for cell in lanes.costliest_first(cells)]
    assert order == ["cnn-d2-b316k", "cnn-d1-b316k", "cnn-d1-b100k", "mlp-d1-b1M",
                     "mlp-d2-b100k"]


def test_a_search_is_claimed_once_and_a_killed_runs_claims_are_cleared(tmp_path):
    layout = ExperimentLayout(tmp_path / "run")
    assert lanes.claim(layout, "cnn-d1-b100k")
    assert not lanes.claim(layout, "cnn-d1-b100k")
    assert lanes.claim(layout, "mlp-d1-b100k")
    lanes.clear_claims(layout)
    assert lanes.claim(layout, "cnn-d1-b100k")


def test_a_lane_that_fails_stops_the_run_and_names_its_log(tmp_path):
    layout = ExperimentLayout(tmp_path / "run")
    layout.root.mkdir(parents=True)
    # no config.yaml in the run folder: each lane's tuner.run exits 2 before any training
    with pytest.raises(lanes.LaneFailedError, match=r"lane \d of 2 ended with exit 2: its "
                       r"output is in .*lane\d\.log.*--parallel 1"):
        lanes.run_lanes(layout, ("mlp",), tmp_path, LANE_SEARCHES, count=2, log=None)
    logs = "".join(path.read_text() for path in layout.lanes.glob("lane*.log"))
    assert "config.yaml" in logs  # the lane's own error, kept in its log
    assert not list(layout.lanes.glob("*.claim"))


def test_tensorflows_own_log_lines_stay_in_the_lane_log():
    assert lanes.TENSORFLOW_LOG_LINE.match(
        "I0000 00:00:1796644154.489411   22838 port.cc:153] oneDNN custom operations are on.")
    assert lanes.TENSORFLOW_LOG_LINE.match("W0000 00:00:1796644154.4 22838 cuda_executor.cc:1]")
    assert not lanes.TENSORFLOW_LOG_LINE.match(
        "[cnn-d1-b316k 7/8] trial 1/2 epoch 4/6 loss 5.349 acc 0.5313")
