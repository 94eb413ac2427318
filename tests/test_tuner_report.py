"""The read side of `tuner` on a hand-made experiment folder: no search is run.

`tiny_run` writes what a run leaves on disk (cell and search records, KerasTuner's trial.json
files, an evaluation of the top trial, the teacher's record, a served comparison image); the
report, the findings and the TensorBoard summary run are made from it.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from matplotlib.figure import Figure
from tensorboard.backend.event_processing import event_accumulator

from mimic_tf.data.spec import CIFAR10
from mimic_tf.layout import ExperimentLayout
from tuner import artifacts
from tuner.report.build import write_report
from tuner.report.convergence import Convergence
from tuner.report.findings import write_findings
from tuner.report.rows import read_summaries
from tuner.report.summary_run import FIGURE_TAG, SERVED_TAG, TABLE_TAG, png_size
from tuner.search.cells import Cell

REPO = Path(__file__).resolve().parent.parent
BUDGET = 3.0e4
SEARCHES = {  # cell -> (val accuracy, test accuracy of the evaluated top trial, free widths)
    Cell("mlp", 1, BUDGET): [(0.30, 0.29, {"hidden": 300}), (0.35, 0.33, {"hidden": 500})],
    Cell("cnn", 1, BUDGET): [(0.45, 0.44, {"filters_1": 16, "hidden": 100}),
                             (0.40, 0.41, {"filters_1": 8, "hidden": 200})],
}


def trial_state(trial_id: str, score: float, values: dict) -> dict:
    """A `trial.json` as KerasTuner writes it (the fields the report reads)."""
    return {
        "trial_id": trial_id,
        "hyperparameters": {"space": [], "values": {"learning_rate": 0.005, **values}},
        "metrics": {"metrics": {"val_loss": {"direction": "min", "observations": [
            {"value": [2.5], "step": 0}, {"value": [1.5], "step": 1}]}}},
        "score": score,
        "best_step": 1,
        "status": "COMPLETED",
        "message": None,
    }


def png_bytes(width_inches: float, height_inches: float) -> bytes:
    figure = Figure(figsize=(width_inches, height_inches), dpi=50)
    figure.add_subplot().plot([0, 1], [1, 0])
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


@pytest.fixture
def tiny_run(tmp_path) -> ExperimentLayout:
    layout = ExperimentLayout(tmp_path / "tiny")
    for cell, trials in SEARCHES.items():
        search = layout.search(cell.name)
        artifacts.write_cell(search, cell)
        artifacts.write_settings(search, {"tuner": "bayesian", "student": {"batch_size": 8}})
        for index, (score, _, widths) in enumerate(trials):
            search.trial_dir(str(index)).mkdir(parents=True)
            search.trial_file(str(index)).write_text(
                json.dumps(trial_state(str(index), score, widths)))
        best = max(range(len(trials)), key=lambda index: trials[index][0])
        score, test, widths = trials[best]
        artifacts.write_evaluation(search, {"trials": {str(best): {
            "val_accuracy": score, "test_accuracy": test, "test_loss": 1.0,
            "test_agreement": 0.5, "params": cell.realised_params(widths, CIFAR10),
            "widths": cell.realised_widths(widths, CIFAR10), "diverged": False}}})
    layout.teacher.mkdir()
    layout.teacher_summary.write_text(json.dumps({"source": "synthetic", "ensemble": {
        "members": 2, "params": 1000, "test_accuracy": 0.6, "validation_accuracy": 0.61}}))
    artifacts.record_command(layout, "python -m tuner.run --family all --config smoke")
    artifacts.write_dataset(layout, CIFAR10, "synthetic")  # as tuner.run records it
    layout.comparison_png.write_bytes(png_bytes(4, 2))
    return layout


def test_report_and_findings_run_without_tensorflow(tiny_run):
    """`python -m tuner.report` and `python -m tuner.findings` import no TensorFlow."""
    script = textwrap.dedent(f"""
        import runpy, sys
        for module in ("tuner.report", "tuner.findings"):
            sys.argv = [module, {str(tiny_run.root)!r}]
            try:
                runpy.run_module(module, run_name="__main__")
            except SystemExit as exit:
                assert exit.code in (0, None), (module, exit.code)
        loaded = [name for name in ("tensorflow", "keras", "keras_tuner") if name in sys.modules]
        print("loaded:", loaded)
        assert not loaded, loaded
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "loaded: []" in result.stdout
    for path in (tiny_run.results_csv, tiny_run.results_md, tiny_run.figure,
                 tiny_run.findings_md, tiny_run.findings_json):
        assert path.stat().st_size > 0, path


def test_report_ranks_trials_from_their_json_and_sizes_the_untested_ones(tiny_run):
    report = write_report(tiny_run.root)
    rows = {(row.cell.name, row.trial_id): row for row in report.rows}
    best, other = rows[("mlp-d1-b30k", "1")], rows[("mlp-d1-b30k", "0")]
    assert (best.rank, best.test_accuracy) == (1, 0.33)
    assert (other.rank, other.test_accuracy) == (2, None)
    assert abs(other.params - BUDGET) <= 0.005 * BUDGET  # closed form, no model built
    assert other.widths == Cell("mlp", 1, BUDGET).realised_widths({"hidden": 300}, CIFAR10)
    summaries = {s.cell.name: s for s in report.summaries}
    assert summaries["cnn-d1-b30k"].best_test == 0.44 and summaries["cnn-d1-b30k"].trials == 2
    text = report.results_md.read_text()
    assert "| CNN 1 conv | 44.0 / 44.0 |" in text
    assert "Made by `python -m tuner.run --family all --config smoke`" in text


def test_the_report_holds_what_it_wrote_so_nothing_reads_it_back(tiny_run):
    report = write_report(tiny_run.root)
    assert report.markdown == tiny_run.results_md.read_text()
    tiny_run.results_md.unlink()  # the table is printed from memory, not from the file
    assert "| CNN 1 conv | 44.0 / 44.0 |" in report.table
    assert all(line.startswith(("|", "Teacher:")) for line in report.table)


def test_a_run_folder_without_dataset_json_is_refused_by_name(tiny_run):
    tiny_run.dataset_file.unlink()
    with pytest.raises(artifacts.MissingDatasetError, match="dataset.json is missing"):
        artifacts.read_dataset(tiny_run)
    # The report still stands; only the widths of untested trials are then not known.
    rows = {(row.cell.name, row.trial_id): row for row in write_report(tiny_run.root).rows}
    assert rows[("mlp-d1-b30k", "0")].params is None
    assert rows[("mlp-d1-b30k", "1")].test_accuracy == 0.33


def test_summary_run_shows_the_table_and_the_figures_in_tensorboard(tiny_run):
    write_report(tiny_run.root)
    first = sorted(tiny_run.summary_logs.iterdir())
    report = write_report(tiny_run.root)  # a second report replaces the run
    assert sorted(tiny_run.summary_logs.iterdir()) == [report.summary_run] != first
    assert tiny_run.summary_logs == tiny_run.root / "logs" / "summary"

    events = event_accumulator.EventAccumulator(
        str(tiny_run.summary_logs), size_guidance={event_accumulator.TENSORS: 0})
    events.Reload()
    assert set(events.PluginTagToContent("text")) == {TABLE_TAG}
    assert set(events.PluginTagToContent("images")) == {FIGURE_TAG, SERVED_TAG}
    (table,) = events.Tensors(TABLE_TAG)
    assert table.step == 0
    assert table.tensor_proto.string_val[0].decode() == tiny_run.results_md.read_text()
    for tag, path in ((FIGURE_TAG, tiny_run.figure), (SERVED_TAG, tiny_run.comparison_png)):
        (image,) = events.Tensors(tag)
        width, height, png = image.tensor_proto.string_val
        assert png == path.read_bytes()
        assert (int(width), int(height)) == png_size(png)
    assert png_size(tiny_run.comparison_png.read_bytes()) == (200, 100)


def test_layout_names_each_file_of_a_search(tmp_path):
    layout = ExperimentLayout(tmp_path)
    search = layout.search("mlp-d2-b1M")
    assert search.root == tmp_path / "searches" / "mlp-d2-b1M"
    assert search.checkpoint("3") == search.root / "trial_3" / "checkpoint.weights.h5"
    assert [p.name for p in (search.cell_file, search.settings_file, search.evaluation_file,
                             search.best_student)] == [
        "cell.json", "search.json", "evaluation.json", "best_student.keras"]
    assert layout.search_logs("mlp-d2-b1M") == tmp_path / "logs" / "mlp-d2-b1M"
    assert layout.search_folders() == [] and artifacts.read_searches(layout) == []


def history(val_accuracy: list[float], epoch_cap: int,
            epoch_seconds: float = 60.0) -> artifacts.TrialHistory:
    epochs = len(val_accuracy)
    return artifacts.TrialHistory(epoch_cap=epoch_cap, metrics={
        "val_accuracy": val_accuracy, "loss": [1.0] * epochs,
        "epoch_seconds": [epoch_seconds] * epochs}, train_seconds=epoch_seconds * epochs)


def test_compute_bill_adds_the_teachers_members_and_the_transfer_set(tiny_run):
    """Every stage's hours in one table: the members with a recorded time (the others named),
    the transfer set's teacher passes and the searches' trials."""
    tiny_run.teacher_summary.write_text(json.dumps({"source": "synthetic", "members": [
        {"member": 0, "train_seconds": 5400.0}, {"member": 1, "train_seconds": 1800.0},
        {"member": 2}], "ensemble": {"members": 3, "params": 1000, "test_accuracy": 0.6,
                                     "validation_accuracy": 0.61}}))
    tiny_run.transfer.mkdir()
    tiny_run.transfer_manifest.write_text(json.dumps(
        {"digest": "d", "fingerprint": {"views": 8}, "logits_seconds": 3600.0}))
    artifacts.write_trial_history(tiny_run.search("mlp-d1-b30k"), "1",
                                  history([0.2, 0.3, 0.34], epoch_cap=4, epoch_seconds=600.0))
    text = write_report(tiny_run.root).results_md.read_text()
    assert "| teacher | | | 2 of 3 members | 2.00 |" in text
    assert "| transfer set | | | 8 views | 1.00 |" in text
    assert "| all searches | | | 1 trial | 0.50 |" in text
    assert "| **in all** | | | | **3.50** |" in text
    assert "1 teacher member of 3 has no recorded training time" in text


def test_convergence_is_a_gain_under_half_a_point_over_the_last_two_epochs_or_an_early_stop():
    rising = Convergence.of(history([0.30, 0.40, 0.50, 0.60], epoch_cap=4))
    assert rising.last_gain == pytest.approx(0.20) and rising.near_convergence is False
    assert rising.verdict == "still rising at the cap"
    flat = Convergence.of(history([0.30, 0.50, 0.600, 0.602, 0.604], epoch_cap=5))
    assert flat.last_gain == pytest.approx(0.004) and flat.near_convergence is True
    stopped = Convergence.of(history([0.30, 0.50, 0.60], epoch_cap=8))  # the schedule stopped
    assert stopped.stopped_early and stopped.near_convergence is True
    short = Convergence.of(history([0.30, 0.50], epoch_cap=2))
    assert short.last_gain is None and short.near_convergence is None


def test_report_tells_which_best_trials_ran_long_enough(tiny_run):
    mlp, cnn = tiny_run.search("mlp-d1-b30k"), tiny_run.search("cnn-d1-b30k")
    artifacts.write_trial_history(mlp, "1", history([0.20, 0.30, 0.34, 0.35], epoch_cap=4,
                                                    epoch_seconds=450.0))
    artifacts.write_trial_history(cnn, "0", history([0.20, 0.40, 0.43, 0.45], epoch_cap=4,
                                                    epoch_seconds=900.0))
    report = write_report(tiny_run.root)
    summaries = {s.cell.name: s for s in report.summaries}
    assert summaries["mlp-d1-b30k"].best_convergence.near_convergence is False  # +5 points
    text = report.results_md.read_text()
    assert "## Did the best trials run long enough?" in text
    assert "| CNN 1 conv | 30k | mimic | 4 / 4 | +5.00 | still rising at the cap |" in text
    assert "0 of 2 best trials near convergence; 2 still rising" in text

    # The published results.csv carries it, for the findings to read without the run folder.
    from_csv = {s.cell.name: s for s in read_summaries(tiny_run.results_csv)}
    for name, summary in summaries.items():
        assert from_csv[name].best_convergence == summary.best_convergence
    rows = {(row.cell.name, row.trial_id): row for row in report.rows}
    assert rows[("mlp-d1-b30k", "0")].convergence is None  # no history.json: not measured

    # The compute bill: 4 epochs of 450 s (MLP) and of 900 s (CNN), one timed trial each.
    assert "| MLP 1 hidden | 30k | mimic | 1 trial | 0.50 |" in text
    assert "| CNN 1 conv | 30k | mimic | 1 trial | 1.00 |" in text
    assert "| all searches | | | 2 trials | 1.50 |" in text
    assert "| **in all** | | | | **1.50** |" in text and "| teacher |" not in text
    assert [from_csv[name].train_seconds for name in ("mlp-d1-b30k", "cnn-d1-b30k")] == [
        [1800.0], [3600.0]]

    # The findings, read from results.csv alone, say it beside the five findings.
    write_findings(tiny_run.root)
    findings = tiny_run.findings_md.read_text()
    assert "**Trial length:** 0 of 2 searches' best trials near convergence" in findings
    assert "still rising at the cap: MLP 1 hidden" in findings and "(+5.0)" in findings


def test_the_data_source_is_this_runs_not_the_published_teachers(tmp_path):
    """A published teacher's record names the images it was made from on the machine that
    made it; the report's data source is where this run read its own (`dataset.json`)."""
    layout = ExperimentLayout(tmp_path / "run")
    layout.teacher_summary.parent.mkdir(parents=True)
    layout.teacher_summary.write_text(json.dumps(
        {"source": "folder:/elsewhere/shared/data/cifar10-jpeg.tar.gz", "ensemble": {}}))
    assert artifacts.read_data_source(layout).startswith("folder:/elsewhere")  # older runs
    artifacts.write_dataset(layout, CIFAR10, "folder:/here/shared/data/cifar10-jpeg.tar.gz")
    assert artifacts.read_data_source(layout) == "folder:/here/shared/data/cifar10-jpeg.tar.gz"


def test_the_top_k_mean_counts_the_configs_k_where_a_search_tested_more(tiny_run):
    """A search in parts tests every trial it ends; its top-k mean still counts k of them."""
    from mimic_tf.config import load_config, save_config

    mlp = tiny_run.search("mlp-d1-b30k")
    evaluation = artifacts.read_evaluation(mlp)
    evaluation["trials"]["0"] = {**evaluation["trials"]["1"], "val_accuracy": 0.30,
                                 "test_accuracy": 0.29}  # both trials tested
    artifacts.write_evaluation(mlp, evaluation)
    every = {s.cell.name: s for s in write_report(tiny_run.root).summaries}
    assert every["mlp-d1-b30k"].top_tests == [0.33, 0.29]  # no config: every tested trial

    save_config(load_config("smoke", overrides={"search.top_k": 1}), tiny_run.config_file)
    report = write_report(tiny_run.root)
    summaries = {s.cell.name: s for s in report.summaries}
    assert summaries["mlp-d1-b30k"].top_tests == [0.33]
    assert "mean of its top 1 trials" in report.results_md.read_text()
    from_csv = {s.cell.name: s for s in read_summaries(tiny_run.results_csv)}
    assert from_csv["mlp-d1-b30k"].top_tests == [0.33]  # the findings read the same

    save_config(load_config("smoke", overrides={"search.top_k": 5}), tiny_run.config_file)
    report = write_report(tiny_run.root)  # k over the trials tested: labelled as many
    assert {s.cell.name: s for s in report.summaries}["mlp-d1-b30k"].top_tests == [0.33, 0.29]
    assert "mean of its top 2 trials" in report.results_md.read_text()
