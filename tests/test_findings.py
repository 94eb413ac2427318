"""The paper's five findings, checked on small hand-made result files."""

from __future__ import annotations

import csv
import json

import pytest

from tuner.findings import main
from tuner.report.findings import FindingsError, write_findings

COLUMNS = ("cell", "family", "depth", "budget", "loss", "rank", "test_accuracy")


def write_results(directory, cells, teacher=0.70):
    """cells: {(family, depth, budget, loss): [test accuracy of rank 1, rank 2, ...]}."""
    with (directory / "results.csv").open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=COLUMNS)
        writer.writeheader()
        for (family, depth, budget, loss), tests in cells.items():
            name = f"{family}-d{depth}-b{budget}" + ("-hard" if loss == "hard" else "")
            for rank, test in enumerate(tests, start=1):
                writer.writerow({"cell": name, "family": family, "depth": depth,
                                 "budget": budget, "loss": loss, "rank": rank,
                                 "test_accuracy": test})
            writer.writerow({"cell": name, "family": family, "depth": depth, "budget": budget,
                             "loss": loss, "rank": "", "test_accuracy": ""})  # a failed trial
    (directory / "teacher").mkdir()
    (directory / "teacher" / "teacher.json").write_text(
        json.dumps({"ensemble": {"test_accuracy": teacher}}))


PAPER_LIKE = {
    ("mlp", 1, 100000, "mimic"): [0.40, 0.38],
    ("mlp", 2, 100000, "mimic"): [0.44, 0.41],
    ("mlp", 3, 100000, "mimic"): [0.43, 0.42],
    ("cnn", 1, 100000, "mimic"): [0.55, 0.50],
    ("cnn", 2, 100000, "mimic"): [0.60, 0.58],
    ("cnn", 2, 100000, "hard"): [0.57],
    ("cnn", 1, 100000, "hard"): [0.49],
}


def test_findings_that_hold(tmp_path):
    write_results(tmp_path, PAPER_LIKE)
    findings = {f["finding"]: f for f in write_findings(tmp_path)}
    assert findings[1]["holds"] and findings[1]["convolutional_gap"] == {"100k": 11.0}
    assert findings[1]["weakest_cnn_minus_best_mlp"] == {"100k": 11.0}
    assert findings[2]["holds"]
    assert findings[2]["steps"]["100k"] == [{"from": 1, "to": 2, "best": 5.0, "top_mean": 6.5}]
    assert findings[3]["holds"] and findings[3]["best_mlp_depth"] == {"100k": 2}
    assert findings[4]["holds"] and findings[4]["largest_for_one_conv"]
    assert findings[4]["distillation_gain"] == {"cnn-d1-b100k": 6.0, "cnn-d2-b100k": 3.0}
    assert findings[5]["best_student"] == "CNN 2 conv at 100k"
    assert findings[5]["distance"] == 10.0
    text = (tmp_path / "findings.md").read_text()
    assert "1. **every convolutional student beats every MLP of the same budget: holds.**" in text
    assert json.loads((tmp_path / "findings.json").read_text())[0]["holds"] is True


def test_findings_name_a_checked_in_folder_as_the_checkout_does(tmp_path, monkeypatch):
    results = tmp_path / "checkout" / "results" / "run"
    results.mkdir(parents=True)
    (tmp_path / "checkout" / ".git").mkdir()
    write_results(results, PAPER_LIKE)
    monkeypatch.chdir(tmp_path)
    write_findings(results.resolve())  # an absolute path, as a campaign passes it
    text = (results / "findings.md").read_text()
    assert text.startswith("# The paper's findings, checked on results/run\n")
    assert "`python -m tuner.findings results/run`" in text
    assert str(tmp_path) not in text


def test_findings_that_fail_say_so(tmp_path):
    cells = {**PAPER_LIKE,
             ("mlp", 1, 100000, "mimic"): [0.56],  # beats the 1-conv student
             ("cnn", 2, 100000, "mimic"): [0.52],  # below 1 conv
             ("cnn", 1, 100000, "hard"): [0.58]}   # hard labels beat distillation
    write_results(tmp_path, cells)
    findings = {f["finding"]: f for f in write_findings(tmp_path)}
    assert not findings[1]["holds"]
    assert findings[1]["convolutional_gap"] == {"100k": -1.0}
    assert not findings[2]["holds"]
    assert not findings[3]["holds"] and findings[3]["best_mlp_depth"] == {"100k": 1}
    assert not findings[4]["holds"]
    assert findings[4]["distillation_gain"] == {"cnn-d1-b100k": -3.0, "cnn-d2-b100k": -5.0}
    assert "does not hold" in (tmp_path / "findings.md").read_text()


def test_unfinished_search_is_left_out_and_missing_files_are_named(tmp_path, capsys):
    with pytest.raises(FindingsError, match="results.csv not found"):
        write_findings(tmp_path)
    assert main([str(tmp_path)]) == 2
    assert "tuner.report" in capsys.readouterr().err
    cells = dict(PAPER_LIKE)
    write_results(tmp_path, cells)
    rows = list(csv.DictReader((tmp_path / "results.csv").open()))
    unfinished = [r for r in rows if r["cell"] != "cnn-d2-b100000" or r["rank"] != "1"]
    with (tmp_path / "results.csv").open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(unfinished)
    findings = {f["finding"]: f for f in write_findings(tmp_path)}
    assert findings[2]["steps"]["100k"] == []  # cnn-d2 has no tested best trial
    assert findings[5]["best_student"] == "CNN 1 conv at 100k"


def test_findings_without_the_cells_they_need_say_not_measured(tmp_path):
    mlp_only = {key: tests for key, tests in PAPER_LIKE.items() if key[0] == "mlp"}
    write_results(tmp_path, mlp_only)
    findings = {f["finding"]: f for f in write_findings(tmp_path)}
    for number in (1, 2, 4):
        assert findings[number]["holds"] is None and not findings[number]["measured"]
        assert findings[number]["text"].startswith("no ")
    assert findings[3]["measured"] and findings[3]["holds"]
    text = (tmp_path / "findings.md").read_text()
    assert "1. **every convolutional student beats every MLP of the same budget: not measured.**" \
        " no budget has both MLP and CNN searches." in text
    assert "5. **the best student comes close to the teacher ensemble: measured.**" in text


def test_distillation_holds_only_so_far_while_baselines_are_to_come(tmp_path):
    """A campaign commits its baselines one by one: one baseline cannot show the gain is
    largest for the shallowest CNN, nor that every CNN gains."""
    cells = {key: tests for key, tests in PAPER_LIKE.items() if key != ("cnn", 2, 100000, "hard")}
    write_results(tmp_path, cells)
    distillation = {f["finding"]: f for f in write_findings(tmp_path)}[4]
    assert distillation["holds"] is None and distillation["so_far"]
    assert "no baseline yet for CNN 2 conv at 100k" in distillation["text"]
    assert "4. **distillation beats hard-label training of the same architecture and budget, " \
        "most for the shallowest CNN: holds so far.**" in (tmp_path / "findings.md").read_text()


def test_a_baseline_part_way_holds_only_so_far(tmp_path):
    """A baseline run in parts is committed part by part: with fewer trials than its config
    plans, its gain is the best so far."""
    from mimic_tf.config import load_config, save_config

    write_results(tmp_path, PAPER_LIKE)  # each baseline has 1 trial
    save_config(load_config("smoke", overrides={"search.trials": 2}), tmp_path / "config.yaml")
    distillation = {f["finding"]: f for f in write_findings(tmp_path)}[4]
    assert distillation["holds"] is None and distillation["so_far"]
    assert "CNN 1 conv at 100k: +6.0 (hard labels: 1 of 2 trials so far)" in distillation["text"]
    assert distillation["holds_so_far"]
    save_config(load_config("smoke", overrides={"search.trials": 1}), tmp_path / "config.yaml")
    assert {f["finding"]: f for f in write_findings(tmp_path)}[4]["holds"] is True


def test_a_baseline_part_way_that_beats_distillation_fails_for_good(tmp_path):
    """More trials can only raise a baseline: where it already beats the student, it is final."""
    from mimic_tf.config import load_config, save_config

    write_results(tmp_path, {**PAPER_LIKE, ("cnn", 2, 100000, "hard"): [0.62]})
    save_config(load_config("smoke", overrides={"search.trials": 2}), tmp_path / "config.yaml")
    distillation = {f["finding"]: f for f in write_findings(tmp_path)}[4]
    assert distillation["holds"] is False and not distillation["so_far"]
