"""The embedded server queried with the official TF Serving stubs (and REST), in process."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import grpc
import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)
from tensorflow_serving.config import model_server_config_pb2

from mimic_tf.data.spec import CIFAR10
from mimic_tf.preprocessing import PerImageStandardization
from serving.client import ServingClient
from serving.compare import compare_models, write_comparison
from serving.export import export_student, write_models_config
from serving.model_config import BatchingParameters, read_model_server_config
from serving.server.errors import ServingError
from serving.server.model_server import EmbeddedServer, ServerOptions
from serving.signatures import encode_image_example

IMAGES = np.random.default_rng(3).integers(0, 256, size=(64, 32, 32, 3), dtype=np.uint8)
AVAILABLE = get_model_status_pb2.ModelVersionStatus.State.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.State.END
MAX_MESSAGE_BYTES = 1 << 20  # the test server refuses requests over 1 MiB


def tiny_mlp(seed: int = 0) -> keras.Model:
    """uint8 images -> PerImageStandardization -> Flatten -> Dense(10), seeded."""
    inputs = keras.Input((32, 32, 3), dtype="uint8")
    x = PerImageStandardization()(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(
        10, kernel_initializer=keras.initializers.GlorotUniform(seed=seed))(x)
    return keras.Model(inputs, outputs, name="tiny_mlp")


def tiny_cnn(seed: int = 0) -> keras.Model:
    """uint8 images -> PerImageStandardization -> conv -> pool -> Dense(10), seeded."""
    init = keras.initializers.GlorotUniform(seed=seed)
    inputs = keras.Input((32, 32, 3), dtype="uint8")
    x = PerImageStandardization()(inputs)
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu", kernel_initializer=init)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, kernel_initializer=init)(x)
    return keras.Model(inputs, outputs, name="tiny_cnn")


def predict_request(name, images, **spec) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
    return request


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    students = {"mlp": tiny_mlp(), "cnn": tiny_cnn()}
    for name, model in students.items():
        export_student(model, base, name, class_names=CIFAR10.class_names)
    config = read_model_server_config(base / "models.config")
    config.model_config_list.config[1].version_labels["stable"] = 1  # mlp (sorted: cnn, mlp)
    (base / "models.config").write_text(str(config))
    write_models_config(base)  # keeps the label
    return base, students


@pytest.fixture(scope="module")
def server(models):
    base, _ = models
    options = ServerOptions(base / "models.config", port=0, rest_port=0,
                            file_system_poll_wait_seconds=0, max_message_bytes=MAX_MESSAGE_BYTES)
    with EmbeddedServer(options) as running:
        yield running


@pytest.fixture(scope="module")
def stubs(server):
    channel = grpc.insecure_channel(server.target, options=[
        ("grpc.max_send_message_length", 8 * MAX_MESSAGE_BYTES)])
    yield (prediction_service_pb2_grpc.PredictionServiceStub(channel),
           model_service_pb2_grpc.ModelServiceStub(channel))
    channel.close()


def test_predict_equals_keras(server, stubs, models):
    prediction, _ = stubs
    response = prediction.Predict(predict_request("mlp", IMAGES[:5]), timeout=10)
    expected = models[1]["mlp"](IMAGES[:5], training=False).numpy()
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["logits"]), expected, atol=1e-5)
    assert tf.make_ndarray(response.outputs["classes"]).dtype == np.int64
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["classes"]),
                                  expected.argmax(axis=1))
    assert (response.model_spec.name, response.model_spec.version.value,
            response.model_spec.signature_name) == ("mlp", 1, "serving_default")


def test_predict_by_version_label_and_output_filter(stubs):
    prediction, _ = stubs
    request = predict_request("mlp", IMAGES[:2], version_label="stable")
    request.output_filter.append("classes")
    response = prediction.Predict(request, timeout=10)
    assert list(response.outputs) == ["classes"] and response.model_spec.version.value == 1


def test_classify(stubs, models):
    prediction, _ = stubs
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name, request.model_spec.signature_name = "cnn", "classify"
    for image in IMAGES[:3]:
        request.input.example_list.examples.add().ParseFromString(encode_image_example(image))
    response = prediction.Classify(request, timeout=10)
    probabilities = tf.nn.softmax(models[1]["cnn"](IMAGES[:3], training=False)).numpy()
    assert len(response.result.classifications) == 3
    first = response.result.classifications[0].classes
    assert [c.label for c in first][:3] == ["airplane", "automobile", "bird"]
    scores = [[c.score for c in r.classes] for r in response.result.classifications]
    np.testing.assert_allclose(scores, probabilities, atol=1e-5)


def test_classify_on_predict_signature_is_invalid(stubs):
    prediction, _ = stubs
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "cnn"  # serving_default is a predict signature
    request.input.example_list.examples.add().ParseFromString(encode_image_example(IMAGES[0]))
    with pytest.raises(grpc.RpcError) as raised:
        prediction.Classify(request, timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "tensorflow/serving/classify" in raised.value.details()


def test_get_model_metadata(stubs):
    prediction, _ = stubs
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "cnn"
    response = prediction.GetModelMetadata(request, timeout=10)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    serving_default = signature_map.signature_def["serving_default"]
    assert serving_default.inputs["images"].dtype == tf.uint8.as_datatype_enum
    assert set(serving_default.outputs) == {"logits", "probabilities", "classes"}
    assert signature_map.signature_def["classify"].method_name == "tensorflow/serving/classify"
    assert response.model_spec.version.value == 1


def test_get_model_status(stubs):
    _, model_service = stubs
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "mlp"
    (status,) = model_service.GetModelStatus(request, timeout=10).model_version_status
    assert (status.version, status.state, status.status.error_code) == (1, AVAILABLE, 0)


def _mutate(request, case):
    if case == "missing input":
        del request.inputs["images"]
    elif case == "wrong dtype":
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(IMAGES[:1].astype(np.float32)))
    elif case == "wrong shape":
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(IMAGES[:1, :28, :28]))
    elif case == "extra input":
        request.inputs["labels"].CopyFrom(tf.make_tensor_proto(np.zeros(1, np.int64)))
    elif case == "unknown output":
        request.output_filter.append("embeddings")
    elif case == "malformed tensor":
        request.inputs["images"].tensor_content = b"\x00" * 10
    return request


@pytest.mark.parametrize("case, code, message", [
    ("missing input", grpc.StatusCode.INVALID_ARGUMENT, "Missing but required: ['images']"),
    ("wrong dtype", grpc.StatusCode.INVALID_ARGUMENT, "expects dtype uint8 but float32"),
    ("wrong shape", grpc.StatusCode.INVALID_ARGUMENT, "expects shape [-1, 32, 32, 3]"),
    ("extra input", grpc.StatusCode.INVALID_ARGUMENT, "Sent extra: ['labels']"),
    ("unknown output", grpc.StatusCode.INVALID_ARGUMENT, "output tensor alias not found"),
    ("malformed tensor", grpc.StatusCode.INVALID_ARGUMENT, "tensor_content has 10 bytes"),
])
def test_bad_requests_are_refused_and_server_keeps_serving(stubs, case, code, message):
    prediction, _ = stubs
    with pytest.raises(grpc.RpcError) as raised:
        prediction.Predict(_mutate(predict_request("mlp", IMAGES[:1]), case), timeout=10)
    assert raised.value.code() == code
    assert message in raised.value.details()
    assert prediction.Predict(predict_request("mlp", IMAGES[:1]), timeout=10).outputs["logits"]


@pytest.mark.parametrize("name, spec, code, message", [
    ("nope", {}, grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)"),
    ("mlp", {"version": 9}, grpc.StatusCode.NOT_FOUND, "Specific(mlp, 9)"),
    ("mlp", {"signature_name": "embed"}, grpc.StatusCode.NOT_FOUND, "\"embed\" not found"),
    ("mlp", {"version_label": "canary"}, grpc.StatusCode.INVALID_ARGUMENT,
     "Unrecognized servable version label: canary"),
])
def test_unknown_model_version_signature(stubs, name, spec, code, message):
    prediction, model_service = stubs
    with pytest.raises(grpc.RpcError) as raised:
        prediction.Predict(predict_request(name, IMAGES[:1], **spec), timeout=10)
    assert raised.value.code() == code
    assert message in raised.value.details()


def test_unknown_model_status_and_metadata_not_found(stubs):
    prediction, model_service = stubs
    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = "nope"
    metadata_request = get_model_metadata_pb2.GetModelMetadataRequest(
        metadata_field=["signature_def"])
    metadata_request.model_spec.name = "nope"
    for call, request in ((model_service.GetModelStatus, status_request),
                          (prediction.GetModelMetadata, metadata_request)):
        with pytest.raises(grpc.RpcError) as raised:
            call(request, timeout=10)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_too_large_request_is_refused_cleanly(stubs):
    prediction, _ = stubs
    too_many = np.zeros((400, 32, 32, 3), np.uint8)  # 1.2 MB > the 1 MiB limit
    with pytest.raises(grpc.RpcError) as raised:
        prediction.Predict(predict_request("mlp", too_many), timeout=10)
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert prediction.Predict(predict_request("mlp", IMAGES[:1]), timeout=10).outputs


def test_regress_and_multi_inference_unimplemented(stubs):
    prediction, _ = stubs
    for call, request in ((prediction.Regress, regression_pb2.RegressionRequest()),
                          (prediction.MultiInference, inference_pb2.MultiInferenceRequest())):
        with pytest.raises(grpc.RpcError) as raised:
            call(request, timeout=10)
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


def _rest(server, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{server.rest_port}{path}", data=data)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_rest_predict_equals_grpc_predict(server, stubs):
    prediction, _ = stubs
    grpc_logits = tf.make_ndarray(
        prediction.Predict(predict_request("cnn", IMAGES[:4]), timeout=10).outputs["logits"])
    status, body = _rest(server, "/v1/models/cnn:predict", {"instances": IMAGES[:4].tolist()})
    assert status == 200
    rest_logits = np.array([row["logits"] for row in body["predictions"]], np.float32)
    np.testing.assert_array_equal(rest_logits, grpc_logits)
    status, body = _rest(server, "/v1/models/cnn/versions/1:predict",
                         {"inputs": {"images": IMAGES[:4].tolist()}})
    np.testing.assert_array_equal(np.array(body["outputs"]["logits"], np.float32), grpc_logits)


def test_rest_status_metadata_and_errors(server):
    status, body = _rest(server, "/v1/models/mlp")
    assert status == 200
    assert body == {"model_version_status": [{"version": "1", "state": "AVAILABLE", "status": {
        "error_code": "OK", "error_message": ""}}]}
    status, body = _rest(server, "/v1/models/mlp/metadata")
    assert "serving_default" in body["metadata"]["signature_def"]["signature_def"]
    assert _rest(server, "/v1/models/nope:predict", {"instances": []})[0] == 404
    status, body = _rest(server, "/v1/models/mlp:predict", {"instances": [[[[300] * 3] * 32] * 32]})
    assert status == 400 and "outside [0, 255]" in body["error"]


def test_rest_classify(server):
    import base64

    examples = [{"image/encoded": {"b64": base64.b64encode(
        tf.train.Example.FromString(encode_image_example(image)).features
        .feature["image/encoded"].bytes_list.value[0]).decode()}} for image in IMAGES[:2]]
    status, body = _rest(server, "/v1/models/cnn:classify",
                         {"signature_name": "classify", "examples": examples})
    assert status == 200 and len(body["result"]) == 2 and body["result"][0][0][0] == "airplane"


def test_compare_writes_results(server, models, tmp_path):
    base, _ = models
    labels = np.arange(len(IMAGES)) % 10
    results = compare_models(server.target, base / "models.config", IMAGES, labels, ["mlp"],
                             latency_requests=30, throughput_seconds=0.1,
                             batch_sizes=(1, 8), concurrencies=(1, 2))
    (result,) = results
    assert result.accuracy_match and result.max_abs_logit_diff == 0.0
    assert result.params == 32 * 32 * 3 * 10 + 10
    assert result.latency_p50_ms <= result.latency_p95_ms <= result.latency_p99_ms
    assert set(result.throughput) == {(1, 1), (1, 2), (8, 1), (8, 2)}
    paths = write_comparison(results, tmp_path, command="test", data="random")
    assert paths["csv"].read_text().startswith("model,version,params")
    assert "| mlp | 1 |" in paths["md"].read_text()
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"


# --- servers of their own: batching, new versions, reload, drain --------------------------


def batching_options(models, **batching) -> ServerOptions:
    """Options of a server of the test models that batches with these parameters.

    Warmup is off when batches wait long: each warmup request would wait the timeout.
    """
    base, _ = models
    return ServerOptions(base / "models.config", port=0, rest_port=None,
                         file_system_poll_wait_seconds=0,
                         batching=BatchingParameters(**batching),
                         enable_model_warmup=batching["batch_timeout_micros"] < 100_000)


@pytest.fixture(scope="module")
def batching_server(models):
    options = batching_options(models, max_batch_size=16, batch_timeout_micros=2000,
                               num_batch_threads=2)
    with EmbeddedServer(options) as running:
        yield running


def test_concurrent_clients_get_in_process_outputs(batching_server, models):
    base, _ = models
    signature = tf.saved_model.load(str(base / "mlp" / "1")).signatures["serving_default"]
    expected = signature(images=tf.constant(IMAGES))["logits"].numpy()

    def client_run(client_index):
        with ServingClient(batching_server.target, timeout_s=20) as client:
            results = []
            for request_index in range(50):
                row = (client_index * 50 + request_index) % len(IMAGES)
                results.append((row, client.predict("mlp", IMAGES[row:row + 1])["logits"][0]))
            return results

    with ThreadPoolExecutor(8) as pool:
        runs = list(pool.map(client_run, range(8)))
    assert sum(len(run) for run in runs) == 400
    for run in runs:
        for row, logits in run:
            np.testing.assert_allclose(logits, expected[row], atol=1e-5, rtol=0)


def test_new_version_is_picked_up_and_reload_config(tmp_path):
    export_student(tiny_mlp(seed=1), tmp_path, "growing", class_names=CIFAR10.class_names)
    options = ServerOptions(tmp_path / "models.config", port=0, rest_port=None,
                            file_system_poll_wait_seconds=0.1)
    with EmbeddedServer(options) as server, ServingClient(server.target) as client:
        assert client.available_versions("growing") == [1]
        export_student(tiny_mlp(seed=2), tmp_path, "growing", class_names=CIFAR10.class_names)
        client.wait_until_available("growing", version=2, timeout_s=20)
        deadline = time.monotonic() + 20
        while client.available_versions("growing") != [2] and time.monotonic() < deadline:
            time.sleep(0.05)
        states = {s.version: s.state for s in client.model_status("growing")}
        assert states == {1: END, 2: AVAILABLE}
        response = client.prediction.Predict(predict_request("growing", IMAGES[:1]), timeout=10)
        assert response.model_spec.version.value == 2

        config = read_model_server_config(tmp_path / "models.config")
        entry = config.model_config_list.config[0]
        entry.model_version_policy.specific.versions.extend([1, 2])
        entry.version_labels["stable"] = 1
        entry.version_labels["canary"] = 2
        client.reload_config(config)
        assert client.available_versions("growing") == [1, 2]
        assert client.predict("growing", IMAGES[:1], version_label="stable")["logits"].shape == (
            1, 10)
        client.reload_config(model_server_config_pb2.ModelServerConfig())
        with pytest.raises(grpc.RpcError) as raised:
            client.predict("growing", IMAGES[:1])
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND


def test_stop_drains_requests_in_flight(models):
    options = batching_options(models, max_batch_size=64, batch_timeout_micros=1_000_000,
                               num_batch_threads=1)
    server = EmbeddedServer(options).start()
    outcome = {}

    def slow_request():  # waits 1 s in the batch queue
        with ServingClient(server.target, max_attempts=1) as client:
            outcome["logits"] = client.predict("mlp", IMAGES[:1])["logits"]

    thread = threading.Thread(target=slow_request)
    thread.start()
    servable = server.manager.resolve(predict_request("mlp", IMAGES[:1]).model_spec)
    deadline = time.monotonic() + 10
    while servable.queued_examples == 0 and time.monotonic() < deadline:
        time.sleep(0.005)  # until the request waits in the batch queue
    server.stop(grace_s=10)
    thread.join(10)
    assert outcome["logits"].shape == (1, 10)


def test_full_batch_queue_is_unavailable_at_once_and_late_requests_never_run(models):
    options = batching_options(models, max_batch_size=2, batch_timeout_micros=1_000_000,
                               num_batch_threads=1, max_enqueued_batches=1)
    with EmbeddedServer(options) as server, ServingClient(server.target,
                                                          max_attempts=1) as client:
        servable = server.manager.resolve(predict_request("mlp", IMAGES[:1]).model_spec)

        def wait_for_queue(examples):
            deadline = time.monotonic() + 10
            while servable.queued_examples != examples and time.monotonic() < deadline:
                time.sleep(0.005)

        with pytest.raises(grpc.RpcError) as raised:  # waits 1 s for a batch: gives up first
            client.predict("mlp", IMAGES[:1], timeout_s=0.2)
        assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        wait_for_queue(0)  # the batch formed after 1 s, without the request nobody waits for
        assert servable.expired_tasks == 1

        waiting = ThreadPoolExecutor(1).submit(client.predict, "mlp", IMAGES[:1])
        wait_for_queue(1)  # one batch being filled: the limit
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as raised:  # two more need a second batch
            client.predict("mlp", IMAGES[:2])
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - started < 0.5  # at once, not after the 1 s batch timeout
        assert "queue" in raised.value.details()
        assert waiting.result(10)["logits"].shape == (1, 10)


def test_failed_warmup_keeps_version_unavailable_and_config_file_is_polled(tmp_path):
    from serving.server.model_manager import ModelManager
    from serving.server.servable import WARMUP_FILE

    version_dir = export_student(tiny_mlp(seed=3), tmp_path / "models", "broken",
                                 class_names=CIFAR10.class_names)
    with open(version_dir / WARMUP_FILE, "ab") as warmup:
        warmup.write(b"not a TFRecord")
    config_path = tmp_path / "live.config"
    config_path.write_text("")
    manager = ModelManager(read_model_server_config(config_path), poll_interval_s=0,
                           config_path=config_path, config_poll_interval_s=0.05)
    manager.start()
    try:
        assert manager.model_names == []
        config_path.write_text((tmp_path / "models" / "models.config").read_text())
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "broken"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                (state,) = manager.version_states(request.model_spec)
                if state.state == END:
                    break
            except ServingError:
                pass
            time.sleep(0.05)
        assert state.state == END and state.error_code == grpc.StatusCode.DATA_LOSS
        with pytest.raises(ServingError, match="Servable not found"):
            manager.resolve(request.model_spec)
    finally:
        manager.stop()


def test_auto_backend_runs_the_real_binary_when_on_path(tmp_path):
    import os
    import subprocess
    import sys

    fake = tmp_path / "bin" / "tensorflow_model_server"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho \"fake tfserving $@\"\n")
    fake.chmod(0o755)
    config = tmp_path / "models.config"
    config.write_text("model_config_list { }\n")
    environment = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}",
                   "TF_CPP_MIN_LOG_LEVEL": "3"}
    finished = subprocess.run(
        [sys.executable, "-m", "serving.server", "--model-config", str(config), "--port", "9100",
         "--rest-port", "0", "--enable-batching", "--tensorflow-intra-op-parallelism", "1"],
        capture_output=True, text=True, env=environment, timeout=120)
    assert finished.returncode == 0, finished.stderr
    assert "fake tfserving --port=9100 --rest_api_port=0" in finished.stdout
    assert f"--model_config_file={config}" in finished.stdout
    assert "--tensorflow_intra_op_parallelism=1 --enable_batching=true " \
        "--batching_parameters_file=" in finished.stdout
    assert (tmp_path / "batching_parameters.txt").is_file()


def test_embedded_server_cli_applies_thread_flags_and_stops_on_sigterm(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    config = tmp_path / "models.config"
    config.write_text("model_config_list { }\n")
    server = subprocess.Popen(
        [sys.executable, "-m", "serving.server", "--backend", "embedded", "--model-config",
         str(config), "--port", "0", "--rest-port", "0",
         "--tensorflow-intra-op-parallelism", "1", "--tensorflow-inter-op-parallelism", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    try:
        ready = next(line for line in server.stdout if "ready:" in line)
        assert "grpc=127.0.0.1:" in ready
        assert "intra_op_threads=1 inter_op_threads=2" in ready
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    finally:
        server.kill()
        server.stdout.close()
