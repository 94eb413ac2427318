"""benchmarks/campaign_plan.py prices a hard-label baseline at the architecture it will train.

A baseline pins its cell's best architecture, which can cost several times the default widths
an epoch (the 2-conv CNN at 1M of cpu-replication-v2: 121/109 filters, 3.5 times the plan).
"""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

from mimic_tf.config import load_config

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def campaign_plan(monkeypatch_module):
    monkeypatch_module.syspath_prepend(str(REPO / "benchmarks"))  # its sibling modules
    spec = importlib.util.spec_from_file_location(
        "campaign_plan", REPO / "benchmarks" / "campaign_plan.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


@pytest.fixture
def config():
    return load_config("smoke", overrides={
        "search.mlp_depths": [], "search.cnn_depths": [1], "search.budgets": [3e4],
        "search.baseline": True, "search.baseline_families": ["cnn"]})


def write_results(folder: Path, rows: list[dict[str, str]]) -> Path:
    with (folder / "results.csv").open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return folder


def test_a_baseline_is_timed_at_its_cells_best_widths(campaign_plan, config, tmp_path):
    results = write_results(tmp_path, [
        {"cell": "cnn-d1-b30k", "rank": "2", "filters_1": "8", "hidden": "40"},
        {"cell": "cnn-d1-b30k", "rank": "1", "filters_1": "25", "hidden": "41"},
    ])
    assert campaign_plan.baseline_widths(config, results) == {
        "cnn-d1-b30k-hard": {"filters_1": 25, "hidden": 41}}
    assert campaign_plan.baseline_widths(config, None) == {}
    rates = campaign_plan.measure_students(config, steps=1, results=results)
    assert sorted(rates) == ["cnn-d1-b30k", "cnn-d1-b30k-hard"]
    assert all(rate > 0 for rate in rates.values())


def test_a_baseline_unit_costs_its_own_rate_without_the_spread(campaign_plan, config):
    costs = {"teacher_train": 50.0, "teacher_predict": 500.0,
             "students_train": {"cnn-d1-b30k": 100.0, "cnn-d1-b30k-hard": 25.0}}
    hours = campaign_plan.search_unit_hours(config, costs, workers=2)
    assert hours["cnn-d1-b30k-hard"] == pytest.approx(
        hours["cnn-d1-b30k"] * 4 / campaign_plan.SPREAD)
    del costs["students_train"]["cnn-d1-b30k-hard"]  # its cell not searched yet
    hours = campaign_plan.search_unit_hours(config, costs, workers=2)
    assert hours["cnn-d1-b30k-hard"] == hours["cnn-d1-b30k"]
    rows = {row["stage"]: row for row in campaign_plan.plan(config, costs, workers=2)}
    assert rows["hard-label baselines, CNN 30k"]["hours"] == pytest.approx(
        hours["cnn-d1-b30k-hard"])
