"""Searches kept from an earlier run folder (`tuner.search.kept`): which are kept, and how the
report, the findings and `tuner.status` count them. No search is run here: the folders are
made by hand (test_tuner.py runs `tuner.run --keep` end to end)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from mimic_tf.config import load_config
from mimic_tf.config.loading import save_config
from mimic_tf.data.spec import CIFAR10
from mimic_tf.layout import ExperimentLayout
from tuner import artifacts, status
from tuner.report.build import write_report
from tuner.report.findings import write_findings
from tuner.report.rows import CSV_COLUMNS
from tuner.search import kept
from tuner.search.cells import Cell, planned_cells

BUDGET = 3.0e4
OLD_TEACHER, NEW_TEACHER = "a" * 64, "b" * 64


def smoke(**overrides):
    return load_config("smoke", overrides={"search.budgets": [BUDGET], **overrides})


def search_rows(cell: Cell, val_test: list[tuple[float, float | None]], teacher: str,
                widths: dict) -> list[dict[str, str]]:
    """A search's rows as results.csv holds them: ranked by validation, rank 1 tested."""
    rows = []
    for rank, (val, test) in enumerate(sorted(val_test, reverse=True), start=1):
        rows.append({
            "cell": cell.name, "family": cell.family, "depth": str(cell.depth),
            "budget": str(int(cell.budget)), "loss": cell.loss, "trial_id": str(rank),
            "rank": str(rank), "status": "COMPLETED", "val_accuracy": str(val),
            "test_accuracy": "" if test is None else str(test), "epochs": "3",
            "epoch_cap": "3", "val_gain_last_2": "0.001", "train_seconds": "60.0",
            "teacher": teacher[:12], "learning_rate": "0.01",
            **{name: str(value) for name, value in widths.items()}})
    return rows


def write_results(folder: Path, rows: list[dict[str, str]], config) -> None:
    """A published results folder: results.csv and the run's config.yaml."""
    folder.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys([*CSV_COLUMNS, *(key for row in rows for key in row)]))
    with (folder / "results.csv").open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    save_config(config, folder / "config.yaml")


MLP1, MLP2, CNN1 = Cell("mlp", 1, BUDGET), Cell("mlp", 2, BUDGET), Cell("cnn", 1, BUDGET)


@pytest.fixture
def published(tmp_path) -> Path:
    """An earlier run's results: MLP 1 and CNN 1 finished, MLP 2 stopped before its test."""
    folder = tmp_path / "results" / "smoke"
    write_results(folder, [
        *search_rows(MLP1, [(0.30, 0.29), (0.35, 0.33)], OLD_TEACHER, {"hidden": 300}),
        *search_rows(MLP2, [(0.31, None)], OLD_TEACHER, {"ratio_1": 0.5, "ratio_2": 0.5}),
        *search_rows(CNN1, [(0.45, 0.44), (0.40, None)], OLD_TEACHER,
                     {"filters_1": 16, "hidden": 100}),
    ], smoke())
    return folder


def test_finished_planned_searches_are_kept_and_the_others_are_not(published, tmp_path):
    config = smoke()
    layout = ExperimentLayout(tmp_path / "runs" / "smoke")
    selected = kept.select(published, layout, config, planned_cells(config, ("mlp", "cnn")))
    assert sorted(selected) == ["cnn-d1-b30k", "mlp-d1-b30k"]  # MLP 2 never tested
    assert [row["rank"] for row in selected["mlp-d1-b30k"]] == ["1", "2"]
    # Only the families the run plans: an MLP stage keeps no CNN search.
    only_mlp = kept.select(published, layout, config, planned_cells(config, ("mlp",)))
    assert sorted(only_mlp) == ["mlp-d1-b30k"]
    # A search this folder finished itself is its own, not kept.
    search = layout.search("mlp-d1-b30k")
    search.root.mkdir(parents=True)
    search.oracle_file.write_text(json.dumps({"end_order": ["0", "1"]}))
    again = kept.select(published, layout, config, planned_cells(config, ("mlp", "cnn")))
    assert sorted(again) == ["cnn-d1-b30k"]


def test_another_recipe_is_refused_with_what_differs(published, tmp_path):
    layout = ExperimentLayout(tmp_path / "runs" / "smoke")
    config = smoke(**{"student.batch_size": 32})
    with pytest.raises(kept.KeptSearchError, match=r"\(student differ in its config.yaml\)"):
        kept.select(published, layout, config, planned_cells(config, ("mlp",)))
    config = smoke(**{"teacher.members": 3})
    with pytest.raises(kept.KeptSearchError, match=r"\(teacher differ"):
        kept.select(published, layout, config, planned_cells(config, ("mlp",)))


def test_a_missing_folder_is_an_error_and_a_folder_without_results_keeps_nothing(tmp_path):
    config = smoke()
    layout = ExperimentLayout(tmp_path / "runs" / "smoke")
    cells = planned_cells(config, ("mlp",))
    with pytest.raises(kept.KeptSearchError, match="no such folder"):
        kept.select(tmp_path / "nowhere", layout, config, cells)
    (tmp_path / "empty").mkdir()
    assert kept.select(tmp_path / "empty", layout, config, cells) == {}
    write_results(tmp_path / "empty", search_rows(MLP1, [(0.3, 0.3)], OLD_TEACHER,
                                                  {"hidden": 300}), config)
    (tmp_path / "empty" / "config.yaml").unlink()  # which recipe its searches ran: unknown
    with pytest.raises(kept.KeptSearchError, match="its config.yaml"):
        kept.select(tmp_path / "empty", layout, config, cells)


def test_planned_names_are_the_mimic_searches_then_their_baselines():
    config = smoke(**{"search.baseline": True, "search.baseline_families": ["cnn"],
                      "search.cnn_depths": [1, 2]})
    names = kept.planned_names(config, planned_cells(config, ("mlp", "cnn")))
    assert names == ["mlp-d1-b30k", "mlp-d2-b30k", "cnn-d1-b30k", "cnn-d2-b30k",
                     "cnn-d1-b30k-hard", "cnn-d2-b30k-hard"]


@pytest.fixture
def run_with_kept(published, tmp_path) -> ExperimentLayout:
    """A new run folder (its teacher trained again) that keeps MLP 1 and CNN 1 and has
    searched MLP 2 itself."""
    config = smoke()
    layout = ExperimentLayout(tmp_path / "runs" / "smoke")
    layout.root.mkdir(parents=True)
    save_config(config, layout.config_file)
    layout.teacher.mkdir()
    layout.teacher_summary.write_text(json.dumps({"source": "synthetic", "ensemble": {
        "members": 2, "params": 1000, "test_accuracy": 0.6, "validation_accuracy": 0.61,
        "weights_sha256": NEW_TEACHER}}))
    kept.write(layout, kept.select(published, layout, config,
                                   planned_cells(config, ("mlp", "cnn"))))
    search = layout.search(MLP2.name)
    artifacts.write_cell(search, MLP2)
    search.oracle_file.write_text(json.dumps({"end_order": ["0", "1"]}))
    for trial_id, score in (("0", 0.36), ("1", 0.32)):
        search.trial_dir(trial_id).mkdir(parents=True)
        search.trial_file(trial_id).write_text(json.dumps({
            "trial_id": trial_id, "status": "COMPLETED", "score": score, "best_step": 0,
            "hyperparameters": {"space": [], "values": {"learning_rate": 0.01,
                                                        "ratio_1": 0.5, "ratio_2": 0.5}},
            "metrics": {"metrics": {}}, "message": None}))
    artifacts.write_evaluation(search, {"trials": {"0": {
        "val_accuracy": 0.36, "test_accuracy": 0.35, "test_loss": 1.0, "test_agreement": 0.5,
        "params": MLP2.realised_params({"ratio_1": 0.5, "ratio_2": 0.5}, CIFAR10),
        "widths": MLP2.realised_widths({"ratio_1": 0.5, "ratio_2": 0.5}, CIFAR10),
        "diverged": False}}})
    return layout


def test_the_report_shows_kept_searches_beside_the_runs_own(run_with_kept):
    report = write_report(run_with_kept.root)
    summaries = {s.cell.name: s for s in report.summaries}
    assert set(summaries) == {"mlp-d1-b30k", "mlp-d2-b30k", "cnn-d1-b30k"}
    assert summaries["mlp-d1-b30k"].best_test == 0.33  # the kept search's best
    assert summaries["mlp-d2-b30k"].best_test == 0.35  # this folder's own
    assert summaries["mlp-d1-b30k"].teacher == OLD_TEACHER[:12]
    assert summaries["mlp-d2-b30k"].teacher == NEW_TEACHER[:12]
    with report.results_csv.open() as stream:
        rows = list(csv.DictReader(stream))
    assert [(r["cell"], r["rank"], r["teacher"]) for r in rows] == [
        ("mlp-d1-b30k", "1", OLD_TEACHER[:12]), ("mlp-d1-b30k", "2", OLD_TEACHER[:12]),
        ("mlp-d2-b30k", "1", NEW_TEACHER[:12]), ("mlp-d2-b30k", "2", NEW_TEACHER[:12]),
        ("cnn-d1-b30k", "1", OLD_TEACHER[:12]), ("cnn-d1-b30k", "2", OLD_TEACHER[:12])]
    text = report.results_md.read_text()
    table = [line for line in text.splitlines() if line.startswith("| MLP") or
             line.startswith("| CNN")][:3]
    assert table == ["| MLP 1 hidden | 33.0 / 31.0 |", "| MLP 2 hidden | 35.0 / 35.0 |",
                     "| CNN 1 conv | 44.0 / 44.0 |"]
    assert (f"`{OLD_TEACHER[:12]}` (2 searches); `{NEW_TEACHER[:12]}` (1 search, this run "
            "folder's teacher)") in text
    assert "kept_results.csv" in text

    # The findings read the published results.csv, kept searches and all.
    findings = write_findings(run_with_kept.root)
    gap = findings[0]
    assert "30k" in gap["text"]
    assert json.loads(run_with_kept.findings_json.read_text())


def test_a_search_finished_here_wins_over_a_kept_one(run_with_kept):
    """MLP 2 is kept too (say, finished in yet another folder): this folder's own shows."""
    other = search_rows(MLP2, [(0.50, 0.49)], OLD_TEACHER, {"ratio_1": 0.5, "ratio_2": 0.5})
    kept.write(run_with_kept, {MLP2.name: other})
    summaries = {s.cell.name: s for s in write_report(run_with_kept.root).summaries}
    assert summaries["mlp-d2-b30k"].best_test == 0.35
    assert len(summaries) == 3


def test_status_counts_kept_searches_as_done(run_with_kept):
    found = status.run_status(run_with_kept.root)["searches"]
    assert found["finished"] == 3 and found["kept"] == 2 and found["under_way"] == {}
    text = status.format_status(status.run_status(run_with_kept.root))
    assert "3 of 4 done" in text and "2 kept from an earlier run folder" in text


def test_a_kept_cells_baseline_pins_its_kept_best_architecture(run_with_kept):
    from tuner.search.cell_search import baseline_cell

    twin = baseline_cell(CNN1, run_with_kept, kept.kept_rows(run_with_kept)[CNN1.name])
    assert twin.is_baseline and dict(twin.fixed_widths) == {"filters_1": 16, "hidden": 100}
    assert baseline_cell(CNN1, run_with_kept) is None  # no trial here, nothing kept given
