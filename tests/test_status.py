"""`python -m tuner.status`: a run folder's standing, read from what a resume would keep."""

from __future__ import annotations

import json

import pytest

from mimic_tf import teachers
from mimic_tf.config import load_config
from mimic_tf.config.loading import save_config
from mimic_tf.data import load_splits
from mimic_tf.layout import ExperimentLayout
from mimic_tf.transfer import PARTIAL_PROGRESS_FILE
from tuner import artifacts, status
from tuner.search.cells import planned_cells


@pytest.fixture(scope="module")
def run_with_a_teacher(tmp_path_factory):
    """A smoke run folder whose teacher stage is done and nothing after it."""
    config = load_config("smoke")
    layout = ExperimentLayout.for_config(config, tmp_path_factory.mktemp("runs"))
    teachers.ensure_teacher(config, load_splits(config.data), layout.teacher, verbose=0)
    save_config(config, layout.config_file)
    return config, layout


def write_oracle(layout: ExperimentLayout, cell, ended: int, ongoing: int = 0) -> None:
    """A search folder as KerasTuner's oracle leaves it after `ended` trials."""
    search = layout.search(cell.name)
    search.root.mkdir(parents=True, exist_ok=True)
    artifacts.write_cell(search, cell)
    search.oracle_file.write_text(json.dumps({
        "end_order": [str(i) for i in range(ended)],
        "ongoing_trials": {f"tuner{i}": str(ended + i) for i in range(ongoing)}}))


def test_status_counts_members_views_and_searches_as_saved(run_with_a_teacher):
    config, layout = run_with_a_teacher
    found = status.run_status(layout.root)
    assert found["experiment"] == "smoke"
    assert found["teacher"]["finished"] == found["teacher"]["members"] == config.teacher.members
    assert "training" not in found["teacher"]
    summary = json.loads(layout.teacher_summary.read_text())
    assert found["teacher"]["test_accuracy"] == summary["ensemble"]["test_accuracy"]
    assert found["transfer"] == {"views": config.transfer.views, "finished": 0, "seconds": None}
    cells = planned_cells(config, ("mlp", "cnn"))
    assert found["searches"]["planned"] == len(cells)  # smoke plans no baselines
    assert found["searches"]["finished"] == 0 and found["searches"]["under_way"] == {}

    # Part way: one view built, one search done, another with a trial ended and one running.
    layout.transfer.mkdir(parents=True, exist_ok=True)
    (layout.transfer / PARTIAL_PROGRESS_FILE).write_text(
        json.dumps({"digest": "x", "views_done": 1, "seconds": 3.5}))
    write_oracle(layout, cells[0], ended=config.search.trials)
    write_oracle(layout, cells[1], ended=1, ongoing=1)
    found = status.run_status(layout.root)
    assert found["transfer"]["finished"] == 1
    assert found["searches"]["finished"] == 1
    assert found["searches"]["under_way"] == {cells[1].name: 1}
    text = status.format_status(found)
    assert f"1 of {len(cells)} done" in text and f"{cells[1].name}: 1 of" in text


def test_a_member_in_training_and_a_larger_plan(run_with_a_teacher, tmp_path):
    config, layout = run_with_a_teacher
    # The same folder against a plan of one member more: that member is the one training.
    bigger = tmp_path / "bigger.yaml"
    save_config(config, bigger)
    text = bigger.read_text().replace(f"members: {config.teacher.members}",
                                      f"members: {config.teacher.members + 1}", 1)
    bigger.write_text(text)
    found = status.run_status(layout.root, str(bigger))
    training = found["teacher"]["training"]
    assert training == {"member": config.teacher.members + 1, "epochs_done": 0,
                        "epochs": config.teacher.schedule.epochs}
    assert "test_accuracy" not in found["teacher"]  # the ensemble is not the planned one


def test_a_folder_without_a_run_is_a_clear_error(tmp_path, capsys):
    assert status.main([str(tmp_path / "nowhere")]) == 2
    assert "no run folder" in capsys.readouterr().err
    assert status.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "holds no run" in err and "Traceback" not in err
