"""The frontier stage on a smoke run: every trial served, the files, the skip, the pick.

The module fixture runs `run_experiment` once on configs/smoke.yaml with the frontier on
(MLP and CNN of depth 1 at 30k, a hard-label baseline for the CNN, 2 trials each): every
completed trial is exported, served by one server process and timed.
"""

from __future__ import annotations

import csv
import dataclasses
import json

import keras
import pytest

from mimic_tf.config import ConfigError, load_config
from mimic_tf.data.spec import CIFAR10
from mimic_tf.layout import ExperimentLayout
from serving.release.serving_base import read_state
from serving.signatures import METADATA_FILE
from tuner import artifacts, publish
from tuner.experiment import run_experiment
from tuner.frontier.measure import frontier_candidates, measure_frontier
from tuner.frontier.pareto import dominates
from tuner.frontier.table import FrontierRow, read_frontier
from tuner.report.summary_run import FRONTIER_TAG, RELIABILITY_TAG


def smoke_config(**overrides):
    return load_config("smoke", overrides={
        "search.mlp_depths": [1], "search.cnn_depths": [1], "search.baseline": True,
        "search.baseline_families": ["cnn"], "frontier.measure": True, **overrides})


@pytest.fixture(scope="module")
def frontier_run(tmp_path_factory):
    keras.utils.set_random_seed(0)
    out = tmp_path_factory.mktemp("runs")
    summary = run_experiment(smoke_config(), ("mlp", "cnn"), out, verbose=0)
    return ExperimentLayout(summary.root), summary


def completed_trials(layout: ExperimentLayout) -> set[str]:
    """`<cell>-t<trial>` of every completed, finite trial, read from KerasTuner's files."""
    names = set()
    for cell, search in artifacts.read_searches(layout):
        for trial in artifacts.read_trials(search):
            if trial.completed and not trial.diverged:
                names.add(f"{cell.name}-t{trial.trial_id}")
    return names


def test_the_stage_writes_its_files_with_one_row_per_completed_trial(frontier_run):
    layout, _ = frontier_run
    for path in (layout.frontier_csv, layout.frontier_md, layout.frontier_png,
                 layout.reliability_png):
        assert path.is_file() and path.stat().st_size > 0, path
    with layout.frontier_csv.open() as file:
        models = [row["model"] for row in csv.DictReader(file)]
    assert len(models) == len(set(models))
    assert set(models) == completed_trials(layout)
    assert any(model.endswith(tuple(f"-hard-t{i}" for i in range(9))) for model in models)
    # Every row was served from its own export (not only each search's best).
    for model in models:
        assert (layout.frontier_models / model / "1" / "saved_model.pb").is_file()
    # The run recorded what its images look like, and its exports carry its class names.
    assert layout.dataset_file.is_file() and artifacts.read_dataset(layout) == CIFAR10
    metadata = json.loads((layout.frontier_models / models[0] / "1" / METADATA_FILE).read_text())
    assert metadata["class_names"] == list(CIFAR10.class_names)


def test_pareto_flags_agree_with_a_brute_force_check(frontier_run):
    rows = read_frontier(frontier_run[0].frontier_csv)
    assert rows and any(row.pareto for row in rows)
    for row in rows:
        beaten = any(dominates((other.test_accuracy, other.p99_ms),
                               (row.test_accuracy, row.p99_ms)) for other in rows)
        assert row.pareto == (not beaten), row.model


def test_rows_carry_real_measurements_and_their_conditions(frontier_run):
    layout, _ = frontier_run
    rows = read_frontier(layout.frontier_csv)
    evaluation = {}
    for cell, search in artifacts.read_searches(layout):
        for trial_id, record in artifacts.read_evaluation(search)["trials"].items():
            evaluation[f"{cell.name}-t{trial_id}"] = record
    for row in rows:
        assert 0 < row.p50_ms <= row.p99_ms and row.throughput > 0
        assert row.flops > row.params  # at least a multiply-add per weight
        assert 0 <= row.agreement <= 1 and row.kl_teacher_student >= 0 and row.ece >= 0
        assert row.conditions["cpu"] and row.conditions["server"]
        if row.model in evaluation:  # the searches' own test evaluation of the same weights
            assert row.test_accuracy == pytest.approx(evaluation[row.model]["test_accuracy"],
                                                      abs=1e-6)
            assert row.params == evaluation[row.model]["params"]
    text = layout.frontier_md.read_text()
    assert "Pareto-optimal" in text and rows[0].conditions["server"] in text


def test_the_report_shows_the_diagnostics_and_tensorboard_the_figures(frontier_run):
    layout, _ = frontier_run
    results = layout.results_md.read_text()
    assert "## Mimic diagnostics (test split)" in results
    assert "| teacher |" in results
    events = b"".join(path.read_bytes() for path in layout.summary_logs.iterdir())
    for tag in (FRONTIER_TAG, RELIABILITY_TAG):
        assert tag.encode() in events


def test_a_rerun_with_nothing_new_is_skipped(frontier_run):
    layout, _ = frontier_run
    before = layout.frontier_csv.read_bytes()
    exports = {p: p.stat().st_mtime_ns for p in layout.frontier_models.glob("*/1/saved_model.pb")}
    lines = []
    rows = measure_frontier(layout, smoke_config(), *test_split(layout), spec=CIFAR10,
                            log=lines.append)
    assert "measured already" in lines[0]
    assert layout.frontier_csv.read_bytes() == before
    assert len(rows) == len(exports)
    assert {p: p.stat().st_mtime_ns for p in exports} == exports


def test_candidates_leave_out_diverged_trials(frontier_run, monkeypatch):
    layout, _ = frontier_run
    everyone = frontier_candidates(layout)
    victim = everyone[0]
    monkeypatch.setattr(type(victim.trial), "diverged", property(
        lambda trial: trial.trial_id == victim.trial.trial_id))
    names = {c.name for c in frontier_candidates(layout)}
    assert all(c.name in names for c in everyone if c.trial.trial_id != victim.trial.trial_id)
    assert not any(n.endswith(f"-t{victim.trial.trial_id}") for n in names)


def test_pick_frontier_below_every_student_refuses_and_pushes_nothing(frontier_run, tmp_path,
                                                                     capsys):
    layout, _ = frontier_run
    rows = read_frontier(layout.frontier_csv)
    fastest = min(rows, key=lambda row: row.p99_ms)
    budget = fastest.p99_ms / 2
    base = tmp_path / "serving"
    status = publish.main(["--run", str(layout.root), "--push", "--pick", "frontier",
                           "--max-p99-ms", f"{budget}", "--serving-base", str(base)])
    message = capsys.readouterr().err
    assert status == 1
    assert fastest.model in message and f"{fastest.p99_ms:.2f} ms" in message
    assert "Traceback" not in message
    assert not read_state(base, layout.root.name).versions


def test_pick_within_budget_takes_the_most_accurate_inside_it():
    def row(model, accuracy, p99):
        return FrontierRow(model, "cell", "mlp", 1, 3e4, "mimic", model, 1, 10, 20, accuracy,
                           accuracy, 1.0, 0.0, 0.0, 0.0, p99 / 2, p99, 100.0, True)

    rows = [row("fast", 0.50, 1.0), row("middle", 0.60, 2.0), row("slow", 0.70, 4.0),
            row("middle-slower", 0.60, 3.0)]
    assert publish.pick_within_budget(rows, 3.5).model == "middle"
    assert publish.pick_within_budget(rows, 4.0).model == "slow"
    assert publish.pick_within_budget(rows, 1.0).model == "fast"
    with pytest.raises(publish.NoStudentWithinBudget, match="fast.*1.00 ms"):
        publish.pick_within_budget(rows, 0.5)
    with pytest.raises(publish.NoStudentWithinBudget, match="measured none"):
        publish.pick_within_budget([], 1.0)


def test_a_frontier_release_needs_a_latency_budget():
    with pytest.raises(ConfigError, match="release.max_p99_ms"):
        load_config("smoke", overrides={"release.pick": "frontier"})
    with pytest.raises(ConfigError, match="release.pick"):
        load_config("smoke", overrides={"release.pick": "fastest"})
    with pytest.raises(ConfigError, match="frontier.latency_requests"):
        load_config("smoke", overrides={"frontier.latency_requests": 0})
    config = load_config("smoke", overrides={"release.pick": "frontier",
                                             "release.max_p99_ms": 5})
    assert dataclasses.asdict(config.release)["pick"] == "frontier"


def test_split(layout: ExperimentLayout):
    """The run's test split, as the stage reads it."""
    from mimic_tf.data import load_splits

    splits = load_splits(load_config(layout.config_file).data)
    return splits.test_images, splits.test_labels


test_split.__test__ = False  # a helper, not a test
