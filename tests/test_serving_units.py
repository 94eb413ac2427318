"""Unit tests of the serving pieces that need no model: config files, batching, tensors, CLIs."""

from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.config import model_server_config_pb2

from serving import tensors
from serving.model_config import (
    BatchingParameters,
    ModelConfigError,
    VersionPolicy,
    format_batching_parameters,
    model_entries,
    parse_batching_parameters,
    parse_model_server_config,
)
from serving.server.admission import ConcurrencyLimit
from serving.server.batching import BatchScheduler
from serving.server.errors import ServingError
from serving.server.model_server import (
    ServerOptions,
    ThreadSettingError,
    configure_tensorflow_threads,
    tfserving_command,
)


@pytest.mark.parametrize("policy, expected", [
    (VersionPolicy(), [7]),
    (VersionPolicy(num_versions=2), [3, 7]),
    (VersionPolicy(kind="all"), [1, 3, 7]),
    (VersionPolicy(kind="specific", versions=(1, 5)), [1]),
])
def test_version_policy(policy, expected):
    assert policy.select([3, 1, 7]) == expected


def test_model_entries_from_text():
    config = parse_model_server_config("""
        model_config_list {
          config { name: "a" base_path: "/m/a" model_platform: "tensorflow"
                   model_version_policy { specific { versions: 1 versions: 2 } }
                   version_labels { key: "stable" value: 1 } }
          config { name: "b" base_path: "/m/b" model_version_policy { latest { num_versions: 2 } } }
        }""")
    a, b = model_entries(config)
    assert a.version_policy == VersionPolicy(kind="specific", versions=(1, 2))
    assert dict(a.version_labels) == {"stable": 1} and a.base_path == Path("/m/a")
    assert b.version_policy == VersionPolicy(num_versions=2)


@pytest.mark.parametrize("text, message", [
    ('model_config_list { config { name: "a" base_path: "/a" } '
     'config { name: "a" base_path: "/b" } }', "appears twice"),
    ('model_config_list { config { name: "a" } }', "no base_path"),
    ('model_config_list { config { name: "a" base_path: "/a" model_platform: "onnx" } }',
     "model_platform 'onnx'"),
    ("model_config_list { nonsense: 1 }", "not a valid ModelServerConfig"),
])
def test_bad_model_configs(text, message):
    with pytest.raises(ModelConfigError, match=message):
        model_entries(parse_model_server_config(text))


def test_batching_parameters_round_trip_and_errors():
    parameters = BatchingParameters(max_batch_size=64, batch_timeout_micros=500,
                                    num_batch_threads=3, max_enqueued_batches=7,
                                    allowed_batch_sizes=(8, 64))
    assert parse_batching_parameters(format_batching_parameters(parameters)) == parameters
    parsed = parse_batching_parameters('# comment\nmax_batch_size { value: 4 }\n'
                                       'thread_pool_name { value: "pool" }\n')
    assert parsed.max_batch_size == 4 and parsed.batch_timeout_micros == 0
    with pytest.raises(ModelConfigError, match="unknown or malformed batching parameter"):
        parse_batching_parameters("max_batch_sise { value: 4 }")
    with pytest.raises(ModelConfigError, match="must equal max_batch_size"):
        parse_batching_parameters("max_batch_size { value: 8 } allowed_batch_sizes: 4")
    with pytest.raises(ModelConfigError, match="at least 1"):
        parse_batching_parameters("num_batch_threads { value: 0 }")


def _doubling(calls):
    def run_batch(inputs):
        calls.append(len(inputs["x"]))
        return {"y": inputs["x"] * 2, "n": np.full(len(inputs["x"]), len(inputs["x"]))}
    return run_batch


def test_batch_scheduler_merges_concurrent_tasks():
    calls = []
    scheduler = BatchScheduler(_doubling(calls), BatchingParameters(
        max_batch_size=8, batch_timeout_micros=5_000_000, num_batch_threads=1))
    futures = [scheduler.submit({"x": np.array([index, index])}) for index in range(4)]
    results = [future.result(5) for future in futures]
    scheduler.close()
    assert calls == [8]
    for index, result in enumerate(results):
        np.testing.assert_array_equal(result["y"], [2 * index, 2 * index])


def test_batch_scheduler_timeout_oversize_and_padding():
    calls = []
    scheduler = BatchScheduler(_doubling(calls), BatchingParameters(
        max_batch_size=8, batch_timeout_micros=1000, num_batch_threads=2,
        allowed_batch_sizes=(4, 8)))
    started = time.monotonic()
    result = scheduler.run({"x": np.arange(3)}, deadline=time.monotonic() + 5)
    assert time.monotonic() - started < 1.0
    np.testing.assert_array_equal(result["y"], [0, 2, 4])
    assert calls == [4] and result["n"][0] == 4  # padded from 3 to 4
    alone = scheduler.run({"x": np.arange(20)}, deadline=time.monotonic() + 5)
    np.testing.assert_array_equal(alone["y"], np.arange(20) * 2)  # > max_batch_size: alone
    scheduler.close()


def test_batch_scheduler_errors_reach_every_task_and_queue_limit():
    started, release = threading.Event(), threading.Event()

    def failing(inputs):
        started.set()
        release.wait(5)
        raise ValueError("boom")

    scheduler = BatchScheduler(failing, BatchingParameters(
        max_batch_size=1, batch_timeout_micros=0, num_batch_threads=1, max_enqueued_batches=2))
    first = scheduler.submit({"x": np.zeros(1)})
    assert started.wait(5)  # the first task is now running; two more fill the queue
    queued = [scheduler.submit({"x": np.zeros(1)}) for _ in range(2)]
    with pytest.raises(ServingError) as raised:
        scheduler.submit({"x": np.zeros(1)})
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    release.set()
    for future in [first, *queued]:
        with pytest.raises(ValueError, match="boom"):
            future.result(5)
    scheduler.close()
    with pytest.raises(ServingError, match="being unloaded"):
        scheduler.submit({"x": np.zeros(1)})


def test_batch_scheduler_drops_tasks_whose_deadline_passed():
    calls, started, release = [], threading.Event(), threading.Event()

    def blocking(inputs):
        calls.append(inputs["x"].tolist())
        started.set()
        release.wait(5)
        return {"y": inputs["x"]}

    scheduler = BatchScheduler(blocking, BatchingParameters(
        max_batch_size=1, batch_timeout_micros=0, num_batch_threads=1))
    first = scheduler.submit({"x": np.array([1])})
    assert started.wait(5)  # the only batch thread is busy with the first task
    past = scheduler.submit({"x": np.array([2])}, deadline=time.monotonic() - 1)
    with pytest.raises(ServingError) as raised:  # the caller gives up after 50 ms
        scheduler.run({"x": np.array([3])}, deadline=time.monotonic() + 0.05)
    assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    release.set()
    assert first.result(5)["y"].tolist() == [1]
    with pytest.raises(ServingError, match="deadline passed"):
        past.result(5)
    scheduler.close()
    assert calls == [[1]] and scheduler.expired_tasks == 2  # neither late task ever ran


def test_concurrency_limit_refuses_at_once_and_skips_expired_work():
    limit = ConcurrencyLimit(max_concurrent=1, max_waiting=1, name="test")
    running, release, ran = threading.Event(), threading.Event(), []

    def hold():
        running.set()
        release.wait(5)
        return "held"

    holder = ThreadPoolExecutor(2)
    first = holder.submit(limit.run, hold)
    assert running.wait(5)
    with pytest.raises(ServingError) as raised:  # waits for the slot past its deadline
        limit.run(lambda: ran.append("late"), deadline=time.monotonic() + 0.05)
    assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    waiting = holder.submit(limit.run, lambda: ran.append("waited"))
    deadline = time.monotonic() + 5
    while limit.admitted < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    started = time.monotonic()
    with pytest.raises(ServingError) as raised:  # one running, one waiting: full
        limit.run(lambda: ran.append("refused"))
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < 0.1  # at once, not after the running call
    release.set()
    assert first.result(5) == "held"
    waiting.result(5)
    holder.shutdown()
    assert ran == ["waited"] and (limit.refused, limit.expired, limit.admitted) == (1, 1, 0)


@pytest.mark.parametrize("field, values, dtype", [
    ("float_val", [1.5, -2.0], types_pb2.DT_FLOAT),
    ("int_val", [0, 255], types_pb2.DT_UINT8),
    ("int64_val", [-(2**40), 7], types_pb2.DT_INT64),
    ("bool_val", [True, False], types_pb2.DT_BOOL),
    ("string_val", [b"a", b"\x00b"], types_pb2.DT_STRING),
])
def test_value_fields_decode_exactly_one_value_per_element(field, values, dtype):
    proto = tf.make_tensor_proto(values, dtype=tf.dtypes.as_dtype(dtype))
    proto.ClearField("tensor_content")
    getattr(proto, field)[:] = values
    np.testing.assert_array_equal(tensors.to_ndarray(proto), np.array(values, dtype=object)
                                  if field == "string_val" else values)
    proto.tensor_shape.dim[0].size = 3  # one value short: TensorFlow would repeat the last
    with pytest.raises(ValueError, match="needs 3"):
        tensors.to_ndarray(proto)


@pytest.mark.parametrize("array", [
    np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
    np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2),
    np.array([1, -2], dtype=np.int64),
    np.array([b"a", b"bc"], dtype=object),
    np.zeros((0, 32, 32, 3), np.uint8),
])
def test_tensor_round_trip(array):
    decoded = tensors.to_ndarray(tensors.to_tensor_proto(array))
    assert decoded.shape == array.shape
    np.testing.assert_array_equal(decoded, array)


def test_malformed_tensor_is_a_value_error():
    proto = tensors.to_tensor_proto(np.zeros((2, 2), np.float32))
    proto.tensor_content = b"\x00" * 3
    with pytest.raises(ValueError, match="needs 16"):
        tensors.to_ndarray(proto)


def test_tfserving_command_has_equivalent_flags(tmp_path):
    options = ServerOptions(tmp_path / "models.config", port=9000, rest_port=None,
                            file_system_poll_wait_seconds=5,
                            batching=BatchingParameters(max_batch_size=32),
                            batching_parameters_file=tmp_path / "batching_parameters.txt")
    command = tfserving_command(options)
    assert command[0] == "tensorflow_model_server"
    assert "--port=9000" in command and "--rest_api_port=0" in command
    assert f"--model_config_file={tmp_path / 'models.config'}" in command
    assert "--file_system_poll_wait_seconds=5" in command
    assert "--enable_batching=true" in command
    assert f"--batching_parameters_file={tmp_path / 'batching_parameters.txt'}" in command
    assert not any("op_parallelism" in flag for flag in command)  # 0: the binary's default
    threaded = dataclasses.replace(options, tensorflow_intra_op_parallelism=1,
                                   tensorflow_inter_op_parallelism=2)
    command = tfserving_command(threaded)
    assert "--tensorflow_intra_op_parallelism=1" in command
    assert "--tensorflow_inter_op_parallelism=2" in command


def test_thread_counts_cannot_change_once_tensorflow_runs():
    tf.constant(1.0) + 1.0  # TensorFlow is running in this process
    configure_tensorflow_threads(0, 0)  # 0 keeps TensorFlow's choice: nothing to change
    current = tf.config.threading.get_intra_op_parallelism_threads()
    with pytest.raises(ThreadSettingError,
                       match=r"intra-op-parallelism \d+: TensorFlow already runs.*own process"):
        configure_tensorflow_threads(current + 7 if current else 7)
    with pytest.raises(ThreadSettingError, match=r"inter-op-parallelism is -1"):
        configure_tensorflow_threads(0, -1)


def test_server_and_compare_cli_bad_flags_exit_2(capsys):
    from serving import compare
    from serving.server import __main__ as server

    for main, argv in ((server.main, ["--model-config", "x", "--backend", "docker"]),
                       (server.main, ["--model-config", "/nonexistent/models.config",
                                      "--backend", "embedded"]),
                       (compare.main, ["--target", "localhost:1",
                                       "--model-config", "/nonexistent/models.config"])):
        with pytest.raises(SystemExit) as raised:
            main(argv)
        assert raised.value.code == 2
    assert "does not exist" in capsys.readouterr().err


def test_empty_config_parses():
    assert model_entries(model_server_config_pb2.ModelServerConfig()) == []


def test_errors_never_answer_unknown_internal_or_python_names(caplog):
    from serving.server.errors import from_exception, load_failure

    tf_error = tf.errors.InternalError(None, None, 'Graph execution error:\n\nDetected at node '
                                       'x defined at (most recent call last):\n  File "a.py", '
                                       'line 1, in f\n\n<stack traces unavailable> boom\n'
                                       '\t [[{{node x}}]]')
    cases = {
        "tf internal": (tf_error, grpc.StatusCode.INVALID_ARGUMENT),
        "tf invalid": (tf.errors.InvalidArgumentError(None, None, "bad image"),
                       grpc.StatusCode.INVALID_ARGUMENT),
        "memory": (MemoryError(), grpc.StatusCode.RESOURCE_EXHAUSTED),
        "recursion": (RecursionError("maximum recursion depth"),
                      grpc.StatusCode.INVALID_ARGUMENT),
        "bug": (KeyError("resource"), grpc.StatusCode.INVALID_ARGUMENT),
    }
    for name, (error, code) in cases.items():
        failure = from_exception(error)
        assert failure.code == code, name
        assert not any(word in failure.message for word in (
            "Error", "Traceback", "File \"", "most recent call")), failure.message
    assert "incident" in from_exception(KeyError("x")).message
    assert "KeyError" in caplog.text  # the traceback is in the server's log, not the answer
    loaded = load_failure(tf.errors.DataLossError(None, None, "corrupt record"))
    assert (loaded.code, loaded.message) == (grpc.StatusCode.DATA_LOSS, "corrupt record")
    assert load_failure(OSError("disk gone")).code == grpc.StatusCode.FAILED_PRECONDITION
