"""The tuner end to end on synthetic data: one smoke run (both families, baselines) reused.

The module fixture runs `run_experiment` once on configs/smoke.yaml (2 trials of 1 epoch per
search, a 30k budget, MLP depths 1-2 and CNN depth 1, hard-label baselines); the tests read
what it wrote. Resume and `--overwrite` run again on copies of its folder.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import yaml
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from mimic_tf.config import ReleaseConfig, load_config
from mimic_tf.data import load_splits
from mimic_tf.data.spec import CIFAR10
from mimic_tf.layout import ExperimentLayout
from serving.release.serving_base import read_state
from tuner import artifacts, publish
from tuner.experiment import run_experiment
from tuner.search.progress import Progress

BUDGET = 3.0e4
TRIALS = 2
MIMIC_CELLS = ("mlp-d1-b30k", "mlp-d2-b30k", "cnn-d1-b30k")
BASELINE_CELLS = ("cnn-d1-b30k-hard",)  # search.baseline_families: [cnn]
REPO = Path(__file__).resolve().parent.parent
DISTRIBUTED_TRIALS = 4


def smoke_config(**overrides):
    return load_config("smoke", overrides={
        "search.budgets": [BUDGET],
        "search.mlp_depths": [1, 2],
        "search.cnn_depths": [1],
        "search.trials": TRIALS,
        "search.baseline": True,
        "search.baseline_families": ["cnn"],
        **overrides,
    })


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    keras.utils.set_random_seed(0)
    out = tmp_path_factory.mktemp("runs")
    summary = run_experiment(smoke_config(), ("mlp", "cnn"), out, verbose=0)
    return summary


def test_a_run_says_what_each_stage_cost(smoke_run):
    """The wall time by stage, in the order the stages ran, adding up to the run's."""
    stages = smoke_run.stage_seconds
    assert list(stages)[:3] == ["data", "teacher and transfer set", "searches"]
    assert list(stages)[-1] == "report"
    assert all(seconds >= 0 for seconds in stages.values())
    assert stages["searches"] > stages["report"]  # trials train; the report is a few files
    assert sum(stages.values()) == pytest.approx(smoke_run.seconds, rel=0.05)


def trial_files(root: Path) -> dict[str, float]:
    """trial.json path -> modification time, for every trial of every search."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns
            for p in sorted(root.glob("searches/*/trial_*/trial.json"))}


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as stream:
        return list(csv.DictReader(stream))


def test_run_writes_every_search_and_result_file(smoke_run):
    root = smoke_run.root
    assert sorted(smoke_run.cells) == sorted(MIMIC_CELLS + BASELINE_CELLS)
    for name in MIMIC_CELLS + BASELINE_CELLS:
        assert (root / "searches" / name / "oracle.json").exists()
        assert len(list((root / "searches" / name).glob("trial_*/trial.json"))) == TRIALS
        histories = sorted((root / "searches" / name).glob("trial_*/history.json"))
        assert len(histories) == TRIALS  # every finished trial's epochs, for its convergence
    for name in ("results.csv", "results.md", "figure.png", "config.yaml"):
        assert (root / name).stat().st_size > 0
    assert (root / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(root.rglob("*.tmp")), "temporary files left behind"


def test_results_csv_has_one_ranked_row_per_trial(smoke_run):
    rows = read_csv(smoke_run.root / "results.csv")
    assert len(rows) == len(MIMIC_CELLS + BASELINE_CELLS) * TRIALS
    for column in ("family", "depth", "budget", "params", "trial_id", "learning_rate",
                   "momentum", "input_scale", "init_scale", "val_accuracy", "test_accuracy",
                   "rank", "loss", "widths"):
        assert column in rows[0], column
    for row in rows:
        assert abs(int(row["params"]) - BUDGET) <= 0.005 * BUDGET
        assert row["rank"] in {"1", "2"}
        assert 0.0 <= float(row["test_accuracy"]) <= 1.0  # top_k = 2 = every trial here
        assert 0.0013 <= float(row["learning_rate"]) <= 0.016
    losses = {row["cell"]: row["loss"] for row in rows}
    assert {losses[name] for name in MIMIC_CELLS} == {"mimic"}
    assert {losses[name] for name in BASELINE_CELLS} == {"hard"}


def test_results_md_is_table_2_with_baselines_and_teacher(smoke_run):
    text = (smoke_run.root / "results.md").read_text()
    assert "| student | 30k |" in text
    for architecture in ("MLP 1 hidden", "MLP 2 hidden", "CNN 1 conv"):
        assert f"| {architecture} |" in text
    assert "Teacher: ensemble of 2 CNNs" in text
    assert "## Hard-label baselines" in text
    assert "python -m tuner.report" in text


def test_summary_matches_csv(smoke_run):
    summaries = {s.cell.name: s for s in smoke_run.report.summaries}
    rows = read_csv(smoke_run.root / "results.csv")
    for name in MIMIC_CELLS:
        best = next(r for r in rows if r["cell"] == name and r["rank"] == "1")
        assert summaries[name].best_test == pytest.approx(float(best["test_accuracy"]))
        assert len(summaries[name].top_tests) == TRIALS


def test_baseline_pins_the_best_architecture(smoke_run):
    root = smoke_run.root
    for name in ("mlp-d1-b30k", "mlp-d2-b30k"):  # outside search.baseline_families
        assert not (root / "searches" / f"{name}-hard").exists()
    for name in (b.removesuffix("-hard") for b in BASELINE_CELLS):
        cell = json.loads((root / "searches" / f"{name}-hard" / "cell.json").read_text())
        assert cell["loss"] == "hard" and cell["fixed_widths"]
        rows = [r for r in read_csv(root / "results.csv") if r["cell"] == f"{name}-hard"]
        assert len({r["widths"] for r in rows}) == 1  # one architecture, pinned


def test_best_students_are_exported_for_tf_serving(smoke_run):
    """Each search's best student that did not diverge is exported (smoke MLPs often diverge:
    the 1-epoch smoke teacher's logits are near zero, the lr range is the paper's)."""
    models = smoke_run.root / "models"
    config_text = (models / "models.config").read_text()
    exported = []
    for name in MIMIC_CELLS:
        evaluation = json.loads((smoke_run.root / "searches" / name / "evaluation.json")
                                .read_text())
        trials = evaluation["trials"]
        healthy = [record["val_accuracy"] for record in trials.values() if not record["diverged"]]
        chosen = evaluation["exported"]["trial_id"]
        if not healthy:
            assert "diverged" in evaluation["exported"]["error"]
            continue
        assert not trials[chosen]["diverged"] and trials[chosen]["val_accuracy"] == max(healthy)
        assert (models / name / "1" / "saved_model.pb").exists()
        assert f"'{name}'" in config_text or f'"{name}"' in config_text
        exported.append(name)
    assert "cnn-d1-b30k" in exported
    for name in BASELINE_CELLS:
        assert not (models / name).exists()


def test_tensorboard_logs_scalars_and_hparams(smoke_run):
    trial_dir = smoke_run.root / "logs" / "mlp-d2-b30k" / "0"
    train = event_accumulator.EventAccumulator(str(trial_dir / "train"))
    train.Reload()
    tags = set(train.Tags()["scalars"]) | set(train.Tags()["tensors"])
    for tag in ("epoch_loss", "epoch_accuracy", "epoch_agreement", "epoch_learning_rate"):
        assert tag in tags, (tag, tags)
    validation = event_accumulator.EventAccumulator(str(trial_dir / "validation"))
    validation.Reload()
    tags = set(validation.Tags()["scalars"]) | set(validation.Tags()["tensors"])
    for tag in ("epoch_loss", "epoch_accuracy", "epoch_agreement"):
        assert tag in tags, (tag, tags)

    session = event_accumulator.EventAccumulator(str(trial_dir))
    session.Reload()
    content = session.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(
        content["_hparams_/session_start_info"]).session_start_info
    hparams = dict(start.hparams)
    for name in ("learning_rate", "momentum", "input_scale", "init_scale", "ratio_1",
                 "ratio_2", "params", "family", "depth", "budget"):
        assert name in hparams, name
    assert abs(hparams["params"].number_value - BUDGET) <= 0.005 * BUDGET
    assert hparams["family"].string_value == "mlp"
    assert "_hparams_/session_end_info" in content
    teacher_logs = smoke_run.root / "teacher" / "logs"
    assert teacher_logs.is_dir()  # the teacher's curves sit beside the students'


def test_rerun_adds_no_trial(smoke_run, tmp_path):
    root = tmp_path / "smoke"
    shutil.copytree(smoke_run.root, root)
    before = trial_files(root)
    summary = run_experiment(smoke_config(), ("mlp", "cnn"), tmp_path, verbose=0)
    assert trial_files(root) == before
    assert summary.report.results_csv.read_text() == (
        smoke_run.root / "results.csv").read_text()
    assert sorted(p.name for p in (root / "models" / "cnn-d1-b30k").iterdir()) == ["1"]


def test_overwrite_reruns_only_its_searches(smoke_run, tmp_path):
    root = tmp_path / "smoke"
    shutil.copytree(smoke_run.root, root)
    before = trial_files(root)
    config = smoke_config(**{"search.baseline": False, "search.mlp_depths": [1]})
    run_experiment(config, ("mlp",), tmp_path, overwrite=True, verbose=0)
    after = trial_files(root)
    rerun = [path for path in after if path.startswith("searches/mlp-d1-b30k/")]
    assert len(rerun) == TRIALS
    assert all(after[path] > before[path] for path in rerun)
    kept = [path for path in before if not path.startswith("searches/mlp-d1-b30k")]
    kept = [path for path in kept if path in after]
    assert kept and all(after[path] == before[path] for path in kept)
    assert not (root / "searches" / "mlp-d1-b30k-hard").exists()  # its baseline went too


def test_changed_settings_are_refused_not_mixed(smoke_run, tmp_path):
    from tuner.search.settings import SearchMismatchError

    root = tmp_path / "smoke"
    shutil.copytree(smoke_run.root, root)
    config = smoke_config(**{"student.batch_size": 32, "search.baseline": False})
    with pytest.raises(SearchMismatchError, match="student changed.*--overwrite"):
        run_experiment(config, ("mlp",), tmp_path, verbose=0)


def test_a_search_depends_on_its_own_familys_epoch_cap_only(tmp_path):
    """Raising the CNNs' cap leaves the MLP searches of a run as they are, and not the
    reverse; a search recorded with every family's cap still resumes."""
    from tuner.search.settings import SearchMismatchError, check_settings, search_settings

    base = smoke_config(**{"student.mlp_epochs": 3, "student.cnn_epochs": 2})
    raised = smoke_config(**{"student.mlp_epochs": 3, "student.cnn_epochs": 5})
    assert search_settings(base, "t", "mlp") == search_settings(raised, "t", "mlp")
    assert search_settings(base, "t", "cnn") != search_settings(raised, "t", "cnn")
    assert "cnn_epochs" not in search_settings(base, "t", "mlp")["student"]

    search = ExperimentLayout(tmp_path).search("mlp-d1-b30k")
    search.root.mkdir(parents=True)
    artifacts.write_settings(search, search_settings(base, "t"))  # both caps, as before
    check_settings(search, search_settings(raised, "t", "mlp"), "mlp")
    with pytest.raises(SearchMismatchError, match="student changed"):
        check_settings(search, search_settings(raised, "t", "cnn"), "cnn")


def test_report_cli_rebuilds_the_files(smoke_run, tmp_path, capsys):
    from tuner.report import __main__ as report

    root = tmp_path / "smoke"
    shutil.copytree(smoke_run.root, root)
    for name in ("results.csv", "results.md", "figure.png"):
        (root / name).unlink()
    assert report.main([str(root)]) == 0
    assert (root / "results.csv").read_text() == (smoke_run.root / "results.csv").read_text()
    assert (root / "figure.png").exists()
    assert "MLP 2 hidden" in capsys.readouterr().out
    assert report.main([str(tmp_path / "nothing")]) == 2


def test_figure_marks_the_papers_table_2_where_budgets_coincide(tmp_path):
    from tuner.report.figure import draw_figure, paper_points
    from tuner.report.rows import CellSummary
    from tuner.search.cells import Cell

    summaries = [CellSummary(Cell("mlp", 2, 1e6), 3, 0.47, [0.47, 0.45]),
                 CellSummary(Cell("mlp", 2, 3.16e5), 3, 0.44, [0.44, 0.43]),
                 CellSummary(Cell("cnn", 4, 1e6), 3, 0.70, [0.70, 0.66]),
                 CellSummary(Cell("cnn", 4, 1e6, loss="hard"), 3, 0.60, [0.60]),
                 CellSummary(Cell("cnn", 3, 1e6), 0, None, [])]  # nothing tested yet
    # The paper's Table 2 has MLP 2 hidden at 1M 66.2% and CNN 4 conv at 1M 91.3%.
    assert paper_points(summaries) == [("mlp", 2, 1e6, 66.2), ("cnn", 4, 1e6, 91.3)]
    draw_figure(summaries, tmp_path / "figure.png", teacher_accuracy=0.8, title="t")
    assert (tmp_path / "figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["figure.png"]


def test_diverging_trial_scores_chance_and_does_not_crash():
    from tuner.search.hypermodel import DivergenceGuard

    guard = DivergenceGuard(chance_accuracy=0.2)  # 5 classes
    guard.set_model(keras.Sequential())
    logs = {"loss": float("nan"), "val_loss": float("nan"), "val_accuracy": 0.9}
    guard.on_train_batch_end(0, {"loss": float("nan")})
    guard.on_epoch_end(0, logs)
    assert guard.model.stop_training
    assert logs["val_accuracy"] == 0.2
    assert np.isinf(logs["loss"]) and np.isinf(logs["val_loss"])


@pytest.mark.parametrize("precision, optimizer, compute", [
    ("float32", "SGD", "float32"),
    ("mixed_bfloat16", "SGD", "bfloat16"),
    ("mixed_float16", "LossScaleOptimizer", "float16"),
])
def test_student_precision_sets_the_policy_and_loss_scaling(precision, optimizer, compute):
    import keras_tuner

    from tuner.search.cells import Cell
    from tuner.search.hypermodel import StudentHyperModel

    config = smoke_config(**{"student.precision": precision}).student
    hypermodel = StudentHyperModel(Cell("cnn", 1, BUDGET), config, seed=0, spec=CIFAR10)
    distiller = hypermodel.build(keras_tuner.HyperParameters())
    assert type(distiller.optimizer).__name__ == optimizer
    assert distiller.student.get_layer("conv_1").compute_dtype == compute
    assert distiller.student.get_layer("logits").compute_dtype == "float32"


@pytest.mark.parametrize("device_policy, compute", [("mixed_bfloat16", "bfloat16"),
                                                    ("float32", "float32")])
def test_auto_student_precision_is_the_devices_policy(monkeypatch, device_policy, compute):
    import keras_tuner

    from mimic_tf import runtime
    from tuner.search.cells import Cell
    from tuner.search.hypermodel import StudentHyperModel

    monkeypatch.setattr(runtime, "device_kind", lambda: "cpu")
    monkeypatch.setattr(runtime, "onednn_enabled", lambda: True)
    flags = {"avx512_bf16"} if device_policy == "mixed_bfloat16" else {"avx2"}
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: flags)
    config = smoke_config(**{"student.precision": "auto"}).student
    distiller = StudentHyperModel(Cell("cnn", 1, BUDGET), config, seed=0, spec=CIFAR10).build(
        keras_tuner.HyperParameters())
    assert distiller.student.get_layer("conv_1").compute_dtype == compute


@pytest.mark.parametrize("setting, expected", [("true", True), ("false", False),
                                              ("auto", None)])
def test_student_jit_compile_reaches_distiller_compile(setting, expected):
    import keras_tuner

    from mimic_tf.runtime import XLA_PAYS, device_kind
    from tuner.search.cells import Cell
    from tuner.search.hypermodel import StudentHyperModel

    config = smoke_config(**{"student.jit_compile": setting}).student
    for family in ("mlp", "cnn"):
        hypermodel = StudentHyperModel(Cell(family, 1, BUDGET), config, seed=0, spec=CIFAR10)
        distiller = hypermodel.build(keras_tuner.HyperParameters())
        if expected is None:  # auto: what was measured for this family on this device
            expected_here = XLA_PAYS.get((device_kind(), family), False)
        else:
            expected_here = expected
        assert distiller.jit_compile is expected_here


def test_hard_label_baselines_search_dropout_and_weight_decay_mimic_students_do_not():
    import keras
    import keras_tuner

    from tuner.search.cells import Cell
    from tuner.search.hypermodel import DROPOUT, WEIGHT_DECAY, StudentHyperModel

    config = smoke_config().student
    hard = StudentHyperModel(Cell("cnn", 2, BUDGET, loss="hard"), config, seed=0, spec=CIFAR10)
    hp = keras_tuner.HyperParameters()
    hp.Fixed("dropout", 0.3)  # a draw the oracle could make (its default is the range's 0)
    distiller = hard.build(hp)
    dropouts = [layer for layer in distiller.student.layers
                if isinstance(layer, keras.layers.Dropout)]
    assert len(dropouts) == 3  # after both pools and the hidden layer
    assert dropouts[0].rate == 0.3 and DROPOUT[0] <= 0.3 <= DROPOUT[1]
    assert WEIGHT_DECAY[0] <= distiller.optimizer.weight_decay <= WEIGHT_DECAY[1]
    assert {"dropout", "weight_decay"} <= set(hp.values)

    mimic = StudentHyperModel(Cell("cnn", 2, BUDGET), config, seed=0, spec=CIFAR10)
    hp = keras_tuner.HyperParameters()
    distiller = mimic.build(hp)
    assert not any(isinstance(layer, keras.layers.Dropout) for layer in distiller.student.layers)
    assert distiller.optimizer.weight_decay is None
    assert not {"dropout", "weight_decay"} & set(hp.values)


def free_port_pair() -> int:
    """A port p with p and p + 1 both free on 127.0.0.1 (search i is served on p + i)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + 1 >= 65536:
            continue
        try:
            with socket.socket() as second:
                second.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports on 127.0.0.1")


def start_chief_and_workers(args: list[str], port: int) -> dict[str, subprocess.Popen]:
    processes = {}
    for tuner_id in ("chief", "tuner1", "tuner2"):
        env = {**os.environ, "KERASTUNER_TUNER_ID": tuner_id,
               "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": str(port),
               "TF_CPP_MIN_LOG_LEVEL": "3"}
        processes[tuner_id] = subprocess.Popen(
            args, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
    return processes


def outputs_of_chief_and_workers(processes: dict, timeout: float = 300) -> dict:
    """Each process's output once all have ended; every one must have ended well."""
    outputs = {}
    try:
        for tuner_id, process in processes.items():
            outputs[tuner_id], _ = process.communicate(timeout=timeout)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    for tuner_id, process in processes.items():
        assert process.returncode == 0, f"{tuner_id}:\n{outputs[tuner_id][-3000:]}"
    return outputs


def test_chief_and_two_workers_share_one_search(smoke_run, tmp_path):
    """KerasTuner's chief/worker mode on loopback: one chief serves, two workers train."""
    for stage in ("teacher", "transfer"):  # prepared already: the test times the search
        shutil.copytree(smoke_run.root / stage, tmp_path / "smoke" / stage)
    port = free_port_pair()
    args = [sys.executable, "-m", "tuner.run", "--family", "mlp", "--config", "smoke",
            "--depths", "1", "--trials", str(DISTRIBUTED_TRIALS), "--out", str(tmp_path),
            "--json"]
    processes = start_chief_and_workers(args, port)
    outputs = outputs_of_chief_and_workers(processes)

    project = tmp_path / "smoke" / "searches" / "mlp-d1-b30k"
    oracle = json.loads((project / "oracle.json").read_text())
    assert len(oracle["end_order"]) == DISTRIBUTED_TRIALS
    assert oracle["ongoing_trials"] == {}  # over on disk: a rerun retries no trial
    search = ExperimentLayout(tmp_path / "smoke").search("mlp-d1-b30k")
    assert artifacts.search_complete(search, DISTRIBUTED_TRIALS)
    assert len(list(project.glob("trial_*/trial.json"))) == DISTRIBUTED_TRIALS
    assert {"tuner1", "tuner2"} <= {p.stem for p in project.glob("tuner*.json")}
    ran = {tuner_id: outputs[tuner_id].count(" start: ") for tuner_id in ("tuner1", "tuner2")}
    assert sum(ran.values()) == DISTRIBUTED_TRIALS and all(ran.values()), ran  # both trained
    assert outputs["chief"].count(" start: ") == 0  # the chief only serves the oracle
    assert (tmp_path / "smoke" / "results.csv").exists()
    summary = json.loads(outputs["chief"][outputs["chief"].rindex('{\n  "experiment"'):])
    assert summary["results"][0]["trials"] == DISTRIBUTED_TRIALS


def test_a_distributed_search_killed_mid_trial_resumes_each_trial_at_its_epoch(smoke_run,
                                                                             tmp_path):
    """Chief and workers killed with SIGKILL while trials train (a session's stop): started
    again, the chief retries the trials that were running and the workers resume them from
    their epoch backups; the search ends with every trial once (run.sh's mlp and cnn stages)."""
    from mimic_tf import resume

    for stage in ("teacher", "transfer"):
        shutil.copytree(smoke_run.root / stage, tmp_path / "smoke" / stage)
    # The smoke config with trials the schedule never stops early: long enough to kill.
    config = yaml.safe_load((REPO / "configs" / "smoke.yaml").read_text())
    config["student"]["schedule"].update(plateau_patience=100, stop_patience=100)
    config_file = tmp_path / "smoke-long-trials.yaml"
    config_file.write_text(yaml.safe_dump(config))
    port = free_port_pair()
    args = [sys.executable, "-m", "tuner.run", "--family", "mlp", "--config", str(config_file),
            "--depths", "1", "--trials", "3", "--epochs", "60", "--out", str(tmp_path)]
    search = ExperimentLayout(tmp_path / "smoke").search("mlp-d1-b30k")
    processes = start_chief_and_workers(args, port)
    try:
        deadline = time.monotonic() + 240
        while len(list(search.root.glob("trial_*/resume.npz"))) < 2:  # both workers mid-trial
            ended = {tuner_id: process.communicate()[0][-3000:]
                     for tuner_id, process in processes.items() if process.poll() is not None}
            assert not ended, f"ended before two trials were training at once: {ended}"
            assert time.monotonic() < deadline, "no two trials were ever training at once"
            time.sleep(0.05)
        for process in processes.values():
            process.send_signal(signal.SIGKILL)
        for process in processes.values():
            process.communicate(timeout=30)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
    saved = {int(path.parent.name.removeprefix("trial_")): resume.saved_epoch(path)
             for path in search.root.glob("trial_*/resume.npz")}
    assert len(saved) >= 2 and all(epoch >= 1 for epoch in saved.values()), saved

    processes = start_chief_and_workers(args, port)
    outputs = outputs_of_chief_and_workers(processes)
    trials = [json.loads(path.read_text()) for path in search.root.glob("trial_*/trial.json")]
    assert sorted(t["trial_id"] for t in trials) == ["0", "1", "2"]
    assert all(t["status"] == "COMPLETED" for t in trials)
    worked = outputs["tuner1"] + outputs["tuner2"]
    for index, epoch in saved.items():  # went on from the backup, never from epoch 1
        assert f"trial {index + 1}/3 epoch {epoch + 1}/60 " in worked, (index, epoch)
        assert f"trial {index + 1}/3 epoch 1/60 " not in worked, (index, epoch)
    assert not list(search.root.glob("trial_*/resume.npz"))


def test_workers_search_only_the_baseline_of_a_search_kept_from_a_lost_run_folder(
        smoke_run, tmp_path):
    """A CNN stage on a new machine (run.sh): the chief keeps the finished 1-conv search of
    the published results (`--keep`), and two workers train its hard-label baseline alone,
    pinned to the kept best architecture, on the baseline's own port (the kept search's
    stays unused)."""
    published = tmp_path / "results"
    published.mkdir()
    rows = [row for row in read_csv(smoke_run.root / "results.csv")
            if row["cell"] == "cnn-d1-b30k"]
    with (published / "results.csv").open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    shutil.copy(smoke_run.root / "config.yaml", published / "config.yaml")
    for stage in ("teacher", "transfer"):  # the teacher trained again, to the same bits
        shutil.copytree(smoke_run.root / stage, tmp_path / "smoke" / stage)
    args = [sys.executable, "-m", "tuner.run", "--family", "cnn", "--config",
            str(smoke_run.root / "config.yaml"), "--out", str(tmp_path), "--keep",
            str(published)]
    outputs = outputs_of_chief_and_workers(start_chief_and_workers(args, free_port_pair()))

    root = tmp_path / "smoke"
    assert sorted(p.name for p in (root / "searches").iterdir()) == ["cnn-d1-b30k-hard"]
    baseline = json.loads((root / "searches" / "cnn-d1-b30k-hard" / "cell.json").read_text())
    original = json.loads(
        (smoke_run.root / "searches" / "cnn-d1-b30k-hard" / "cell.json").read_text())
    assert baseline["fixed_widths"] == original["fixed_widths"]
    oracle = json.loads((root / "searches" / "cnn-d1-b30k-hard" / "oracle.json").read_text())
    assert len(oracle["end_order"]) == TRIALS and oracle["ongoing_trials"] == {}
    assert sum(outputs[worker].count(" start: ") for worker in ("tuner1", "tuner2")) == TRIALS
    assert "kept 1 finished search of an earlier run folder" in outputs["chief"]
    results = read_csv(root / "results.csv")
    assert [r for r in results if r["cell"] == "cnn-d1-b30k"] == [
        {**row, **{key: "" for key in set(results[0]) - set(row)}} for row in rows]
    assert {r["cell"] for r in results} == {"cnn-d1-b30k", "cnn-d1-b30k-hard"}
    assert not (root / "models" / "cnn-d1-b30k").exists()  # its weights were not kept


def test_a_worker_whose_searches_are_all_kept_leaves_the_transfer_set_to_the_chief(
        smoke_run, tmp_path):
    """Every MLP search kept, on a new machine whose chief builds the transfer set: a worker
    has nothing to train and ends at once, without building (and racing the chief on) the
    transfer set's files. Run alone, with no chief, it must not build it either."""
    published = tmp_path / "results"
    published.mkdir()
    shutil.copy(smoke_run.root / "results.csv", published / "results.csv")
    shutil.copy(smoke_run.root / "config.yaml", published / "config.yaml")
    shutil.copytree(smoke_run.root / "teacher", tmp_path / "smoke" / "teacher")
    env = {**os.environ, "KERASTUNER_TUNER_ID": "tuner1", "KERASTUNER_ORACLE_IP": "127.0.0.1",
           "KERASTUNER_ORACLE_PORT": str(free_port_pair()), "MIMIC_TF_WORKER_WAIT": "5",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    worker = subprocess.run(
        [sys.executable, "-m", "tuner.run", "--family", "mlp", "--config",
         str(smoke_run.root / "config.yaml"), "--out", str(tmp_path), "--keep",
         str(published)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert worker.returncode == 0, worker.stdout[-2000:] + worker.stderr[-2000:]
    assert not (tmp_path / "smoke" / "transfer").exists()
    assert not (tmp_path / "smoke" / "searches").exists()


def test_a_keep_folder_that_is_not_there_is_named(tmp_path, capsys):
    from tuner.run import main

    missing = tmp_path / "results" / "smoke"
    code = main(["--family", "mlp", "--config", "smoke", "--out", str(tmp_path), "--keep",
                 str(missing), "--quiet"])
    error = capsys.readouterr().err
    assert code == 2 and f"--keep {missing}: no such folder" in error
    assert "Traceback" not in error


def test_the_end_of_a_run_is_written_for_a_person(smoke_run):
    from tuner.run import summary_text

    text = summary_text(smoke_run.report)
    assert "| MLP 1 hidden |" in text and "| CNN 1 conv |" in text  # the results table
    assert "Convolutional gap" in text and "30k: gap" in text  # one sentence, each budget
    assert f"tensorboard --logdir {smoke_run.root}" in text
    assert "{" not in text  # no JSON


def test_kill_9_mid_trial_loses_no_finished_trial(smoke_run, tmp_path):
    """A search killed with SIGKILL during a trial resumes: kept trials, no broken files."""
    for stage in ("teacher", "transfer"):
        shutil.copytree(smoke_run.root / stage, tmp_path / "smoke" / stage)
    overrides = {"search.mlp_depths": [1], "search.trials": 3, "student.schedule.epochs": 40}
    args = [sys.executable, "-m", "tuner.run", "--family", "mlp", "--config", "smoke",
            "--depths", "1", "--trials", "3", "--epochs", "40", "--out", str(tmp_path)]
    process = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    project = tmp_path / "smoke" / "searches" / "mlp-d1-b30k"
    try:
        deadline = time.monotonic() + 180
        while not (project / "trial_1" / "trial.json").exists():  # trial 0 done, 1 running
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    finished = (project / "trial_0" / "trial.json").read_text()
    assert json.loads(finished)["status"] == "COMPLETED"

    config = load_config("smoke", overrides=overrides)
    summary = run_experiment(config, ("mlp",), tmp_path, verbose=0)
    assert (project / "trial_0" / "trial.json").read_text() == finished
    statuses = [json.loads(p.read_text())["status"] for p in project.glob("trial_*/trial.json")]
    assert statuses == ["COMPLETED"] * 3
    assert summary.report.summaries[0].trials == 3


class Killed(BaseException):
    """Stands for SIGKILL: KerasTuner catches an Exception (and fails the trial), not this."""


def test_a_trial_killed_after_an_epoch_ends_as_an_uninterrupted_one(smoke_run, tmp_path,
                                                                     monkeypatch):
    from mimic_tf import resume

    config = load_config("smoke", overrides={
        "search.mlp_depths": [1], "search.trials": 1, "student.schedule.epochs": 3,
        "search.export": False})
    for run in ("whole", "killed"):
        for stage in ("teacher", "transfer"):
            shutil.copytree(smoke_run.root / stage, tmp_path / run / "smoke" / stage)
    run_experiment(config, ("mlp",), tmp_path / "whole", verbose=0)

    save = resume.EpochBackup.on_epoch_end

    def save_then_die(self, epoch, logs=None):
        save(self, epoch, logs)
        if epoch == 0:
            raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(resume.EpochBackup, "on_epoch_end", save_then_die)
        with pytest.raises(Killed):
            run_experiment(config, ("mlp",), tmp_path / "killed", verbose=0)
    search = ExperimentLayout(tmp_path / "killed" / "smoke").search("mlp-d1-b30k")
    assert resume.saved_epoch(search.trial_backup("0")) == 1
    epochs_trained = []

    def save_and_count(self, epoch, logs=None):
        epochs_trained.append(epoch)
        save(self, epoch, logs)

    with monkeypatch.context() as patch:
        patch.setattr(resume.EpochBackup, "on_epoch_end", save_and_count)
        run_experiment(config, ("mlp",), tmp_path / "killed", verbose=0)
    assert epochs_trained == [1, 2]  # went on from its backup, epoch 0 not trained again
    assert not search.trial_backup("0").exists()

    whole = ExperimentLayout(tmp_path / "whole" / "smoke").search("mlp-d1-b30k")
    trials = [json.loads(layout.trial_file("0").read_text()) for layout in (whole, search)]
    assert [t["status"] for t in trials] == ["COMPLETED", "COMPLETED"]
    assert trials[1]["score"] == trials[0]["score"]  # the oracle saw all three epochs
    assert trials[1]["best_step"] == trials[0]["best_step"]
    weights = [h5_datasets(layout.checkpoint("0")) for layout in (whole, search)]
    assert weights[0].keys() == weights[1].keys() and weights[0]
    for name, expected in weights[0].items():
        np.testing.assert_array_equal(weights[1][name], expected, err_msg=name)
    # Its history holds all three epochs, those before the kill included, and their times.
    histories = [artifacts.read_trial_history(layout, "0") for layout in (whole, search)]
    assert histories[0].epoch_cap == histories[1].epoch_cap == 3
    untimed = [{name: values for name, values in h.metrics.items() if name != "epoch_seconds"}
               for h in histories]
    assert untimed[1] == untimed[0] and len(untimed[1]["val_accuracy"]) == 3
    seconds = histories[1].metrics["epoch_seconds"]
    assert len(seconds) == 3 and all(s > 0 for s in seconds)
    assert histories[1].train_seconds == pytest.approx(sum(seconds))


def h5_datasets(path: Path) -> dict[str, np.ndarray]:
    """Every array in a Keras `.weights.h5` file, by its path inside the file."""
    import h5py

    arrays = {}
    with h5py.File(path, "r") as file:
        file.visititems(lambda name, item: arrays.__setitem__(name, item[()])
                        if isinstance(item, h5py.Dataset) else None)
    return arrays


def test_a_search_is_tested_when_it_ends_before_the_next_one_starts(smoke_run, tmp_path,
                                                                      monkeypatch):
    """A run stopped in its second search keeps the first one's test results and best
    student: what a campaign commits between sessions survives the loss of its run folder."""
    from tuner import experiment

    for stage in ("teacher", "transfer"):
        shutil.copytree(smoke_run.root / stage, tmp_path / "smoke" / stage)
    config = smoke_config(**{"search.baseline": False, "search.cnn_depths": []})
    real_search = experiment.run_search

    def die_in_the_second_search(cell, context, index, count):
        if index == 2:
            raise Killed
        return real_search(cell, context, index, count)

    monkeypatch.setattr(experiment, "run_search", die_in_the_second_search)
    with pytest.raises(Killed):
        run_experiment(config, ("mlp",), tmp_path, verbose=0)
    layout = ExperimentLayout(tmp_path / "smoke")
    first, second = (layout.search(name) for name in ("mlp-d1-b30k", "mlp-d2-b30k"))
    evaluation = artifacts.read_evaluation(first)
    tested = [trial["test_accuracy"] for trial in evaluation["trials"].values()]
    assert len(tested) == TRIALS and all(0.0 <= accuracy <= 1.0 for accuracy in tested)
    assert first.best_student.is_file()
    assert not second.evaluation_file.exists()


def test_a_search_in_parts_goes_on_without_the_weights_of_its_earlier_parts(smoke_run,
                                                                            tmp_path):
    """A part tests every trial it ended; the next part, on a machine without their
    checkpoints, ends the search with the same rows as a search run whole, and says why it has
    no best student where the best trial's weights stayed behind."""
    from tuner.search.cell_search import LOST_ERROR, MissingCheckpointError

    for stage in ("teacher", "transfer"):
        shutil.copytree(smoke_run.root / stage, tmp_path / "smoke" / stage)
    config = smoke_config(**{"search.baseline": False, "search.cnn_depths": []})
    cell = "mlp-d1-b30k"
    plans = []

    class PlanOfTheETA(Progress):
        def __init__(self, planned_trials, *args, **kwargs):
            plans.append(dict(planned_trials))
            super().__init__(planned_trials, *args, **kwargs)

    part = run_experiment(config, ("mlp",), tmp_path, verbose=0, only=cell,
                          stop_after_trials=1, progress_class=PlanOfTheETA)
    assert plans == [{"mlp": TRIALS}]  # its ETA counts this search, not the run's two
    layout = ExperimentLayout(tmp_path / "smoke")
    search = layout.search(cell)
    assert not artifacts.search_complete(search, TRIALS)
    assert [row["trial_id"] for row in read_csv(part.report.results_csv)] == ["0"]
    assert list(artifacts.read_evaluation(search)["trials"]) == ["0"]  # tested as it ended
    assert not search.best_student.exists() and not (layout.models / cell).exists()

    for checkpoint in search.root.glob("trial_*/*.weights.h5"):  # a new machine
        checkpoint.unlink()
    whole = run_experiment(config, ("mlp",), tmp_path, verbose=0, only=cell)
    assert artifacts.search_complete(search, TRIALS)
    rows = [row for row in read_csv(whole.report.results_csv) if row["cell"] == cell]
    expected = [row for row in read_csv(smoke_run.report.results_csv) if row["cell"] == cell]
    columns = ("trial_id", "rank", "val_accuracy", "test_accuracy", "learning_rate", "hidden")
    assert [[row[c] for c in columns] for row in rows] == [
        [row[c] for c in columns] for row in expected]
    best = artifacts.read_evaluation(search)["best_student"]
    if rows[0]["trial_id"] == "0":  # the best trial's weights were on the first machine
        assert best == {"trial_id": "0", "error": LOST_ERROR}
    else:
        assert best["trial_id"] == rows[0]["trial_id"] and search.best_student.is_file()

    evaluation = artifacts.read_evaluation(search)  # neither weights nor test metrics
    del evaluation["trials"]["0"]
    artifacts.write_evaluation(search, evaluation)
    with pytest.raises(MissingCheckpointError, match="trial 0 has no checkpoint"):
        run_experiment(config, ("mlp",), tmp_path, verbose=0, only=cell)


def test_hyperband_search_runs_with_its_epoch_schedule(smoke_run, tmp_path):
    for stage in ("teacher", "transfer"):
        shutil.copytree(smoke_run.root / stage, tmp_path / "smoke" / stage)
    config = load_config("smoke", overrides={
        "search.tuner": "hyperband", "search.mlp_depths": [1], "search.trials": 2,
        "student.schedule.epochs": 2, "search.export": False})
    summary = run_experiment(config, ("mlp",), tmp_path, verbose=0)
    rows = read_csv(summary.report.results_csv)
    assert len(rows) == 2 and {r["tuner/epochs"] for r in rows} == {"2"}


def test_bayesian_oracle_turns_to_its_gaussian_process(tmp_path):
    """After the random start, trials come from the GP (and state files stay valid JSON)."""
    import keras_tuner

    from tuner.search.tuners import AtomicBayesianOracle, initial_random_points

    assert initial_random_points(30) == 10 and initial_random_points(3) == 2
    space = keras_tuner.HyperParameters()
    space.Float("learning_rate", 0.0013, 0.016, sampling="log")
    oracle = AtomicBayesianOracle(objective=keras_tuner.Objective("val_accuracy", "max"),
                                  max_trials=4, num_initial_points=2, seed=1,
                                  hyperparameters=space)
    oracle._set_project_dir(str(tmp_path), "search")
    for index in range(4):
        trial = oracle.create_trial("tuner0")
        if index == 2:
            assert len([t for t in oracle.trials.values() if t.status == "COMPLETED"]) == 2
        oracle.update_trial(trial.trial_id, {"val_accuracy": 0.1 * index})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    assert oracle.create_trial("tuner0").status == "STOPPED"
    state = json.loads((tmp_path / "search" / "oracle.json").read_text())
    assert len(state["end_order"]) == 4
    assert not list(tmp_path.rglob("*.tmp"))


def _bayesian_oracle_with_one_trial(tmp_path):
    """A Bayesian oracle over two hyperparameters holding one completed trial."""
    import keras_tuner

    from tuner.search.tuners import AtomicBayesianOracle

    space = keras_tuner.HyperParameters()
    space.Float("learning_rate", 0.0013, 0.016, sampling="log")
    space.Int("filters_1", 20, 110, sampling="log")
    oracle = AtomicBayesianOracle(objective=keras_tuner.Objective("val_accuracy", "max"),
                                  max_trials=6, num_initial_points=1, seed=1,
                                  hyperparameters=space)
    oracle._set_project_dir(str(tmp_path), "search")
    trial = oracle.create_trial("tuner0")
    oracle.update_trial(trial.trial_id, {"val_accuracy": 0.7})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)
    return oracle, trial


def test_bayesian_oracle_never_proposes_a_tried_point_again(tmp_path, monkeypatch):
    """The GP step returning the best trial's values again, a float rounding away (as it did
    in the v2 campaign), gives a random point instead; a new point passes unchanged."""
    from keras_tuner.oracles import BayesianOptimizationOracle

    oracle, tried = _bayesian_oracle_with_one_trial(tmp_path)
    repeat = {"learning_rate": tried.hyperparameters.values["learning_rate"] * (1 + 2e-8),
              "filters_1": tried.hyperparameters.values["filters_1"]}
    monkeypatch.setattr(BayesianOptimizationOracle, "populate_space",
                        lambda self, trial_id: {"status": "RUNNING", "values": dict(repeat)})
    proposed = oracle.create_trial("tuner0")
    values = proposed.hyperparameters.values
    assert proposed.status == "RUNNING" and oracle.repeats_avoided == 1
    assert values != repeat and abs(values["learning_rate"] - repeat["learning_rate"]) > 1e-6
    assert 0.0013 <= values["learning_rate"] <= 0.016 and 20 <= values["filters_1"] <= 110

    fresh = {"learning_rate": 0.002, "filters_1": 30}
    assert not oracle._tried(fresh)
    monkeypatch.setattr(BayesianOptimizationOracle, "populate_space",
                        lambda self, trial_id: {"status": "RUNNING", "values": dict(fresh)})
    assert oracle.create_trial("tuner1").hyperparameters.values == fresh
    assert oracle.repeats_avoided == 1
    # A running trial's point counts as tried too: the next worker gets another.
    assert oracle.create_trial("tuner2").hyperparameters.values != fresh
    assert oracle.repeats_avoided == 2


def test_export_stage_reruns_alone_and_retries_what_failed(smoke_run):
    layout = ExperimentLayout(smoke_run.root)
    name = "cnn-d1-b30k"
    project = layout.searches / name
    first = json.loads((project / "evaluation.json").read_text())["exported"]
    assert (project / "best_student.keras").is_file()
    assert publish.export_best_students(layout, [name], log=lambda line: None)[name] == first
    assert sorted(p.name for p in (layout.models / name).iterdir()) == ["1"]  # done: skipped

    evaluation = json.loads((project / "evaluation.json").read_text())
    evaluation["exported"] = {"trial_id": first["trial_id"], "error": "disk full"}
    (project / "evaluation.json").write_text(json.dumps(evaluation))
    retried = publish.export_best_students(layout, [name], log=lambda line: None)[name]
    assert retried["trial_id"] == first["trial_id"] and retried["path"].endswith(f"{name}/2")
    metadata = json.loads((Path(retried["path"]) / "assets.extra" / "mimic_tf.json").read_text())
    lineage = metadata["lineage"]
    assert lineage["trial_id"] == first["trial_id"] and lineage["search"] == name
    assert len(lineage["transfer_fingerprint"]) == 64 and lineage["teacher_fingerprint"]
    assert set(lineage["hyperparameters"]) >= {"learning_rate", "filters_1"}


def test_push_stage_gates_the_best_student_and_skips_it_once_done(smoke_run):
    layout = ExperimentLayout(smoke_run.root)
    name = "cnn-d1-b30k"
    splits = load_splits(smoke_config().data)
    release = ReleaseConfig(latency_requests=20)
    lines = []
    pushed = publish.push_best_students(layout, release, splits.validation_images,
                                        splits.validation_labels, "synthetic", [name],
                                        log=lines.append)[name]
    assert pushed["status"] == "pushed" and pushed["version"] == 1, lines
    state = read_state(layout.serving, name)
    assert state.stable == state.canary == 1
    again = publish.push_best_students(layout, release, splits.validation_images,
                                       splits.validation_labels, "synthetic", [name],
                                       log=lines.append)[name]
    assert again == pushed and read_state(layout.serving, name).versions == (1,)


def test_packages_import_in_one_direction():
    """mimic_tf imports neither tuner nor serving; serving does not import tuner."""
    import ast

    root = Path(__file__).parent.parent
    forbidden = {"mimic_tf": ("tuner", "serving"), "serving": ("tuner",)}
    for package, banned in forbidden.items():
        for module in (root / package).glob("*.py"):
            for node in ast.walk(ast.parse(module.read_text())):
                names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                for imported in names:
                    assert imported.split(".")[0] not in banned, f"{module} imports {imported}"


def trials_of(root: Path) -> dict[tuple[str, str], tuple[dict, float]]:
    """(search, trial) -> (hyperparameters, validation score), for every ended trial."""
    trials = {}
    for path in sorted(root.glob("searches/*/trial_*/trial.json")):
        trial = json.loads(path.read_text())
        trials[(path.parent.parent.name, path.parent.name)] = (
            trial["hyperparameters"]["values"], trial["score"])
    return trials


def test_searches_side_by_side_are_the_searches_one_after_another(smoke_run, tmp_path):
    """search.parallel 2: two lanes take the searches, then the baselines (three here, so the
    baselines' phase runs in lanes too); each search ends as it did in one process, same
    hyperparameters, same scores; the lanes' logs stay, their claims do not."""
    summary = run_experiment(
        smoke_config(**{"search.parallel": 2, "search.baseline_families": ["mlp", "cnn"]}),
        ("mlp", "cnn"), tmp_path, verbose=0)
    ours, reference = trials_of(summary.root), trials_of(smoke_run.root)
    assert set(reference) <= set(ours)
    for key, (values, score) in reference.items():
        assert ours[key][0] == values, key
        assert ours[key][1] == pytest.approx(score, abs=1e-6), key
    searches = {name for name, _ in ours}
    assert searches == set(MIMIC_CELLS + BASELINE_CELLS) | {"mlp-d1-b30k-hard",
                                                           "mlp-d2-b30k-hard"}
    lanes = summary.root / "lanes"
    assert sorted(p.name for p in lanes.iterdir()) == ["lane1.log", "lane2.log"]
    logs = "".join(p.read_text() for p in lanes.glob("lane*.log"))
    for name in searches:  # each search ran in a lane, tested there
        assert f"[{name}] rank 1:" in logs, name
    rows = read_csv(summary.root / "results.csv")
    assert {row["cell"] for row in rows} == searches
    assert (summary.root / "models" / "mlp-d1-b30k").is_dir()  # the parent exported
    assert "2 searches at a time" in (summary.root / "results.md").read_text()


def _cycling_training_data(steps_per_epoch: int):
    """Synthetic cached-logits batches of 8, cycling through 8 batches forever."""
    import tensorflow as tf

    from tuner.search.hypermodel import TrainingData

    rng = np.random.default_rng(0)
    parts = (rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8),
             rng.normal(size=(64, 10)).astype(np.float32), rng.integers(0, 10, 64))
    train = tf.data.Dataset.range(10**6).map(
        lambda i: tuple(tf.gather(part, tf.range((i % 8) * 8, (i % 8) * 8 + 8))
                        for part in parts))
    evaluation = tf.data.Dataset.from_tensor_slices(parts).batch(32)
    return TrainingData(train=train, validation=evaluation, test=evaluation,
                        steps_per_epoch=steps_per_epoch, spec=CIFAR10)


@pytest.mark.parametrize("steps_per_execution", [4, 12])
def test_steps_per_execution_trains_the_same_student_epoch_for_epoch(steps_per_execution):
    """Batches run several to a `tf.function` call give the weights one at a time gives, and
    an epoch still trains exactly its batches (one view); a non-divisor trains past it."""
    import keras_tuner

    from tuner.search.cells import Cell
    from tuner.search.hypermodel import StudentHyperModel

    config = smoke_config().student
    weights, steps_trained = {}, {}
    for steps in (1, steps_per_execution, 5):
        hypermodel = StudentHyperModel(Cell("mlp", 1, BUDGET), config, seed=0, spec=CIFAR10,
                                       steps_per_execution=steps)
        distiller = hypermodel.build(keras_tuner.HyperParameters())
        hypermodel.fit(keras_tuner.HyperParameters(), distiller,
                       _cycling_training_data(steps_per_epoch=12), epochs=2)
        weights[steps] = [w.copy() for w in distiller.student.get_weights()]
        steps_trained[steps] = int(distiller.optimizer.iterations.numpy())
        keras.backend.clear_session()
    assert steps_trained[1] == steps_trained[steps_per_execution] == 24
    for ours, reference in zip(weights[steps_per_execution], weights[1], strict=True):
        np.testing.assert_array_equal(ours, reference)
    assert steps_trained[5] == 30  # 3 executions of 5 an epoch: 15 batches, past the view
    assert any(not np.array_equal(a, b) for a, b in zip(weights[5], weights[1], strict=True))


def test_a_searchs_trials_run_the_epochs_largest_dividing_steps_per_execution(tmp_path):
    from tuner.search.cell_search import SearchContext, build_tuner
    from tuner.search.cells import Cell

    config = smoke_config()
    context = SearchContext(config=config, layout=ExperimentLayout(tmp_path / "smoke"),
                            data=_cycling_training_data(steps_per_epoch=625),
                            transfer_fingerprint="synthetic")
    tuner = build_tuner(Cell("mlp", 1, BUDGET), context)
    assert tuner.hypermodel.steps_per_execution == 25
