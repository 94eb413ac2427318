"""The release gate: infra validation, evaluation, push with labels, promote, rollback, kills."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from pathlib import Path

import keras
import numpy as np
import pytest
from tensorflow_serving.apis import get_model_status_pb2

from mimic_tf.config import ConfigError, config_from_dict
from mimic_tf.data.spec import CIFAR10
from mimic_tf.preprocessing import PerImageStandardization
from serving.client import ServingClient, predict_request
from serving.export import export_student
from serving.model_config import model_entries, read_model_server_config, versions_on_disk
from serving.release import __main__ as release
from serving.release import gate
from serving.release.evaluator import Thresholds
from serving.release.infra_validation import INFRA_BLESSED, INFRA_NOT_BLESSED
from serving.release.serving_base import (
    HISTORY_FILE,
    MODELS_CONFIG,
    PUSH_TEMPORARY_PREFIX,
    ReleaseError,
    promote,
    push_version,
    read_lineage,
    read_state,
    rollback,
)
from serving.server.model_server import EmbeddedServer, ServerOptions

IMAGES = np.random.default_rng(5).integers(0, 256, size=(96, 32, 32, 3), dtype=np.uint8)
AVAILABLE = get_model_status_pb2.ModelVersionStatus.State.AVAILABLE


def tiny_student(seed: int) -> keras.Model:
    inputs = keras.Input((32, 32, 3), dtype="uint8")
    x = PerImageStandardization()(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(
        10, kernel_initializer=keras.initializers.GlorotUniform(seed=seed))(x)
    return keras.Model(inputs, outputs, name=f"student_{seed}")


@pytest.fixture(scope="module")
def candidates(tmp_path_factory):
    """Exported students: `good` defines the labels (accuracy 1), `worse` another seed."""
    base = tmp_path_factory.mktemp("exports")
    students = {"good": tiny_student(1), "worse": tiny_student(2), "good_too": tiny_student(1)}
    paths = {name: export_student(model, base, name, lineage={"trial_id": name},
                                  class_names=CIFAR10.class_names)
             for name, model in students.items()}
    labels = students["good"](IMAGES, training=False).numpy().argmax(axis=1)
    return paths, labels


def snapshot(base: Path) -> tuple[bytes, list[int]]:
    """What a server would load from a serving base: its config and complete versions."""
    config = (base / MODELS_CONFIG).read_bytes() if (base / MODELS_CONFIG).exists() else b""
    return config, versions_on_disk(base / "student")


def assert_consistent(base: Path) -> None:
    """Every version models.config serves or labels is complete on disk."""
    if not (base / MODELS_CONFIG).exists():
        return
    for entry in model_entries(read_model_server_config(base / MODELS_CONFIG)):
        on_disk = set(versions_on_disk(entry.base_path))
        assert set(entry.version_policy.versions) <= on_disk
        assert set(entry.version_labels.values()) <= set(entry.version_policy.versions)


@pytest.fixture(scope="module")
def released(candidates, tmp_path_factory):
    """A serving base after the good candidate's push (and the outcome)."""
    paths, labels = candidates
    base = tmp_path_factory.mktemp("serving")
    lines = []
    outcome = gate.release_candidate(
        paths["good"], base, "student", IMAGES, labels,
        Thresholds(min_accuracy=0.9, max_accuracy_drop=0.01, max_p99_ms=1000.0),
        data="synthetic", backend="embedded", latency_requests=20, log=lines.append)
    return base, outcome, lines


def test_good_candidate_is_pushed_with_records_and_lineage(released):
    base, outcome, lines = released
    assert outcome.pushed and outcome.version == 1, lines
    assert (outcome.records_dir / INFRA_BLESSED).exists()
    assert (outcome.records_dir / "BLESSED").exists()
    evaluation = json.loads((outcome.records_dir / "evaluation.json").read_text())
    assert evaluation["verdict"] == "BLESSED" and evaluation["candidate"]["accuracy"] == 1.0
    assert evaluation["baseline"] is None  # first push: value thresholds only
    assert {check["name"] for check in evaluation["checks"]} == {
        "served_matches_in_process", "min_accuracy", "max_p99_ms"}
    assert evaluation["thresholds"]["min_accuracy"] == 0.9
    state = read_state(base, "student")
    assert state.labels == {"canary": 1, "stable": 1} and state.stable_history == (1,)
    lineage = read_lineage(base, "student", 1)
    assert lineage["trial_id"] == "good" and lineage["version"] == 1
    assert lineage["evaluation"]["verdict"] == "BLESSED"
    assert lineage["infra_validation"]["verdict"] == INFRA_BLESSED
    assert lineage["infra_validation"]["warmup_requests"] == 4


def test_pushed_version_is_served_by_label_over_grpc_and_rest(released, candidates):
    base, _, _ = released
    options = ServerOptions(base / MODELS_CONFIG, port=0, rest_port=0,
                            file_system_poll_wait_seconds=0)
    with EmbeddedServer(options) as server, ServingClient(server.target) as client:
        outputs = client.predict("student", IMAGES[:4], version_label="stable")
        np.testing.assert_array_equal(outputs["classes"], candidates[1][:4])
        body = json.dumps({"instances": IMAGES[:2].tolist()}).encode()
        url = f"http://127.0.0.1:{server.rest_port}/v1/models/student/labels/canary:predict"
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=30) as reply:
            predictions = json.loads(reply.read())["predictions"]
        assert [row["classes"] for row in predictions] == list(candidates[1][:2])


def refused_push(base, candidate, labels, thresholds):
    before = snapshot(base)
    outcome = gate.release_candidate(candidate, base, "student", IMAGES, labels, thresholds,
                                        backend="embedded", latency_requests=20,
                                        log=lambda line: None)
    assert not outcome.pushed and outcome.version is None
    assert snapshot(base) == before  # never appears in the serving base
    return outcome


def test_worse_candidate_is_refused_against_stable(released, candidates):
    base, _, _ = released
    paths, labels = candidates
    outcome = refused_push(base, paths["worse"], labels, Thresholds(max_accuracy_drop=0.01))
    assert (outcome.records_dir / "NOT_BLESSED").exists()
    assert len(outcome.reasons) == 1 and "accuracy drop" in outcome.reasons[0]
    evaluation = json.loads((outcome.records_dir / "evaluation.json").read_text())
    assert evaluation["baseline_version"] == 1 and evaluation["baseline"]["accuracy"] == 1.0
    failed = [check for check in evaluation["checks"] if not check["passed"]]
    assert [check["name"] for check in failed] == ["max_accuracy_drop"]
    assert failed[0]["value"] > 0.5 and failed[0]["threshold"] == 0.01


def test_slow_candidate_is_refused(released, candidates):
    base, _, _ = released
    paths, labels = candidates
    outcome = refused_push(base, paths["good_too"], labels, Thresholds(max_p99_ms=1e-4))
    assert [reason.split(" ")[1:3] for reason in outcome.reasons] == [["p99", "latency"]]


def test_broken_savedmodel_is_refused_by_infra_validation(released, candidates, tmp_path):
    base, _, _ = released
    paths, labels = candidates
    broken = tmp_path / "broken"
    shutil.copytree(paths["good"], broken)
    for variables_file in (broken / "variables").iterdir():
        variables_file.write_bytes(b"not a checkpoint")
    outcome = refused_push(base, broken, labels, Thresholds())
    assert (outcome.records_dir / INFRA_NOT_BLESSED).exists()
    assert not (outcome.records_dir / "BLESSED").exists()
    assert "FAIL infra validation" in outcome.reasons[0]


def test_push_promote_rollback_under_load_never_fails(candidates, tmp_path):
    paths, _ = candidates
    base = tmp_path / "serving"
    push_version(base, "student", paths["good"], {"trial_id": "a"})
    options = ServerOptions(base / MODELS_CONFIG, port=0, rest_port=None,
                            file_system_poll_wait_seconds=0,
                            model_config_file_poll_wait_seconds=0.05)
    answers: list[tuple[float, float, int]] = []
    failures: list[str] = []
    stop = threading.Event()

    def query(client: ServingClient) -> None:
        while not stop.is_set():
            started = time.monotonic()
            try:
                response = client.prediction.Predict(release_request, timeout=30)
                answers.append((started, time.monotonic(), response.model_spec.version.value))
            except Exception as error:  # noqa: BLE001 - every failure is counted
                failures.append(repr(error))

    def stable_version(client: ServingClient) -> int:
        return client.prediction.Predict(release_request, timeout=30).model_spec.version.value

    def wait_for_stable(client: ServingClient, version: int) -> float:
        deadline = time.monotonic() + 30
        while stable_version(client) != version:
            assert time.monotonic() < deadline, f"stable never became version {version}"
            time.sleep(0.02)
        return time.monotonic()

    release_request = predict_request("student", IMAGES[:1], version_label="stable")
    with EmbeddedServer(options) as server, ServingClient(server.target) as client:
        threads = [threading.Thread(target=query, args=(client,)) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        push_version(base, "student", paths["good_too"], {"trial_id": "b"})  # canary 2
        time.sleep(0.5)
        assert stable_version(client) == 1
        promote_called = time.monotonic()
        promote(base, "student")
        promoted_at = wait_for_stable(client, 2)
        time.sleep(0.3)
        rollback_called = time.monotonic()
        rollback(base, "student")
        rolled_back_at = wait_for_stable(client, 1)
        time.sleep(0.3)
        stop.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert len(answers) > 50
    # Each answer came from a version that was stable while the request was in flight.
    assert all(version == 1 for _, ended, version in answers if ended < promote_called)
    assert all(version == 2 for started, ended, version in answers
               if started > promoted_at and ended < rollback_called)
    assert all(version == 1 for started, _, version in answers if started > rolled_back_at)
    assert {version for _, _, version in answers} == {1, 2}


KILL_SCRIPT = textwrap.dedent("""
    import shutil, sys, time
    from serving.release.serving_base import push_version

    def slow_copy(source, target):
        shutil.copy2(source, target)
        time.sleep(0.3)

    push_version(sys.argv[1], "student", sys.argv[2], {}, copy_function=slow_copy)
""")


def test_push_killed_mid_copy_leaves_nothing_a_server_loads(candidates, tmp_path):
    paths, _ = candidates
    base = tmp_path / "serving"
    push_version(base, "student", paths["good"], {})
    before = snapshot(base)
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    process = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(base), str(paths["good"])],
                               env=environment)
    deadline = time.monotonic() + 60
    while not any((base / "student").glob(f"{PUSH_TEMPORARY_PREFIX}*/*")):
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    time.sleep(0.4)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert any((base / "student").glob(f"{PUSH_TEMPORARY_PREFIX}*"))  # half a copy, hidden
    assert snapshot(base) == before
    assert_consistent(base)
    options = ServerOptions(base / MODELS_CONFIG, port=0, rest_port=None,
                            file_system_poll_wait_seconds=0)
    with EmbeddedServer(options) as server, ServingClient(server.target) as client:
        assert client.available_versions("student") == [1]
    assert push_version(base, "student", paths["good"], {}) == 2  # and the leftover is gone
    assert not any((base / "student").glob(f"{PUSH_TEMPORARY_PREFIX}*"))


def test_history_written_before_the_config_is_reconciled(candidates, tmp_path):
    """A kill between the history and the config write leaves the old state."""
    paths, _ = candidates
    base = tmp_path / "serving"
    for _ in range(2):
        push_version(base, "student", paths["good"], {})
    promote(base, "student")  # stable history 1, 2
    (base / "student" / HISTORY_FILE).write_text("[1, 2, 3]")  # a promote to 3 never committed
    assert read_state(base, "student").stable_history == (1, 2)
    (base / "student" / HISTORY_FILE).write_text("[1]")  # a rollback never committed
    state = read_state(base, "student")
    assert state.stable_history == (1, 2) and state.previous_stable == 1
    assert rollback(base, "student").stable == 1
    assert_consistent(base)


def test_promote_and_rollback_refuse_when_there_is_nothing_to_do(candidates, tmp_path):
    paths, _ = candidates
    base = tmp_path / "serving"
    push_version(base, "student", paths["good"], {})
    with pytest.raises(ReleaseError, match="already stable"):
        promote(base, "student")
    with pytest.raises(ReleaseError, match="no previous stable version"):
        rollback(base, "student")
    assert release.main(["rollback", "--serving-base", str(base), "--name", "student"]) == 1


def test_status_cli_table_and_json(released, capsys):
    base, _, _ = released
    assert release.main(["status", "--serving-base", str(base)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:4] == ["model", "version", "labels", "served"]
    assert table[1].split()[:5] == ["student", "1", "canary,stable", "yes",
                                    "INFRA_BLESSED/BLESSED"]
    assert release.main(["status", "--serving-base", str(base), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["labels"] == ["canary", "stable"] and rows[0]["accuracy"] == 1.0


@pytest.mark.parametrize("argv", [
    ["push", "--candidate", "/nonexistent", "--serving-base", "/tmp/x", "--name", "a"],
    ["status", "--serving-base", "/nonexistent"],
    ["promote", "--serving-base", "/tmp", "--name", "../escape"],
    ["push"],
])
def test_cli_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        release.main(argv)
    assert exit_info.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_release_config_is_validated():
    with pytest.raises(ConfigError, match="release.label"):
        config_from_dict({"release": {"label": "beta"}})
    with pytest.raises(ConfigError, match="release.max_accuracy_drop"):
        config_from_dict({"release": {"max_accuracy_drop": 2.0}})
    assert config_from_dict({"release": {"push": True}}).release.push


def test_push_can_serve_the_version_before_labelling_it(candidates, tmp_path):
    """With a live server to wait for, the new version is served unlabelled first."""
    paths, _ = candidates
    base = tmp_path / "serving"
    push_version(base, "student", paths["good"], {})
    seen = []

    def before_labelling(version: int) -> None:
        state = read_state(base, "student")
        seen.append((version, state.served, dict(state.labels)))
        assert_consistent(base)

    assert push_version(base, "student", paths["good"], {},
                        before_labelling=before_labelling) == 2
    assert seen == [(2, (1, 2), {"canary": 1, "stable": 1})]
    assert read_state(base, "student").labels == {"canary": 2, "stable": 1}


def test_status_promote_and_rollback_do_not_load_tensorflow():
    code = ("import sys, serving.release; "
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    subprocess.run([sys.executable, "-c", code], check=True, env=environment)


CYCLE_SCRIPT = textwrap.dedent("""
    import sys
    from serving.release.serving_base import promote, push_version, read_state, rollback

    base, saved_model = sys.argv[1], sys.argv[2]
    while True:
        push_version(base, "student", saved_model, {})
        promote(base, "student")
        if read_state(base, "student").previous_stable is not None:
            rollback(base, "student")
""")


def test_kill_at_any_moment_leaves_the_old_or_the_new_state(candidates, tmp_path):
    """Push, promote and rollback in a loop, killed -9 at 12 random moments."""
    paths, _ = candidates
    base = tmp_path / "serving"
    push_version(base, "student", paths["good"], {})
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    delays = np.random.default_rng(0).uniform(0.3, 1.5, size=12)
    for delay in delays:
        process = subprocess.Popen(
            [sys.executable, "-c", CYCLE_SCRIPT, str(base), str(paths["good"])],
            env=environment)
        time.sleep(delay)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert_consistent(base)
        state = read_state(base, "student")
        assert state.stable in state.served and state.canary in state.served
        assert state.stable_history[-1] == state.stable
    assert read_state(base, "student").versions[-1] > 2  # the loop did get work done
