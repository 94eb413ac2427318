"""Malformed requests, as a hostile client sends them, each refused with TF Serving's code.

Every case goes to one embedded server (a tiny seeded student, 1 MiB message limit, loopback
ports picked by the OS) over gRPC with TF Serving's own stubs, raw bytes, or REST, and asserts
the exact status code, that no message carries Python stack text or an exception name, and
that the server still answers a good request correctly afterwards.
"""

from __future__ import annotations

import collections
import http.client
import json
import socket

import grpc
import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import resource_handle_pb2, tensor_pb2, types_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from mimic_tf.data.spec import CIFAR10
from serving import tensors
from serving.export import export_student
from serving.server.model_server import EmbeddedServer, ServerOptions
from serving.signatures import encode_image_example

OK = grpc.StatusCode.OK
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
UNIMPLEMENTED = grpc.StatusCode.UNIMPLEMENTED
MAX_MESSAGE_BYTES = 1 << 20
IMAGE = np.random.default_rng(5).integers(0, 256, size=(1, 32, 32, 3), dtype=np.uint8)
HOSTILE_NAMES = ["..", "../mlp", "/", "mlp/1", "/etc/passwd", "mlp\x00", "\x00", "a" * 5000,
                 "mlp%00", "ml\u202ep"]
# Words that would mean Python leaked into an answer.
LEAKS = ("Traceback", "most recent call", 'File "', "KeyError", "MemoryError", "ValueError",
         "TypeError", "RecursionError", "AttributeError", "Exception")


def student() -> keras.Model:
    """uint8 [32, 32, 3] -> scaled -> Flatten -> Dense(10), seeded."""
    pixels = keras.Input((32, 32, 3), dtype="uint8")
    scaled = keras.layers.Rescaling(1 / 255)(keras.ops.cast(pixels, "float32"))
    logits = keras.layers.Dense(10, kernel_initializer=keras.initializers.GlorotUniform(seed=4))(
        keras.layers.Flatten()(scaled))
    return keras.Model(pixels, logits, name="fuzz_student")


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz-models")
    model = student()
    export_student(model, base, "mlp", class_names=CIFAR10.class_names)
    options = ServerOptions(base / "models.config", port=0, rest_port=0,
                            file_system_poll_wait_seconds=0, max_message_bytes=MAX_MESSAGE_BYTES)
    with EmbeddedServer(options) as server:
        channel = grpc.insecure_channel(server.target, options=[
            ("grpc.max_send_message_length", 8 * MAX_MESSAGE_BYTES)])
        yield server, channel, model
        channel.close()


# --- request builders -------------------------------------------------------------------------


def tensor(dtype=types_pb2.DT_UINT8, shape=(1, 32, 32, 3), content=None, unknown_rank=False,
           **values):
    """A hand-made TensorProto; `content` defaults to the bytes `shape` of uint8 needs."""
    proto = tensor_pb2.TensorProto(dtype=dtype)
    proto.tensor_shape.unknown_rank = unknown_rank
    if shape is not None:
        for size in shape:
            proto.tensor_shape.dim.add().size = size
    if content is None and not values:
        content = IMAGE.tobytes() if shape == (1, 32, 32, 3) else b""
    if content:
        proto.tensor_content = content
    for field, value in values.items():
        getattr(proto, field).extend(value)
    return proto


def predict(inputs=None, name="mlp", signature="", version=None, label=None, output_filter=(),
            spec=True):
    request = predict_pb2.PredictRequest(output_filter=list(output_filter))
    if spec:
        request.model_spec.name = name
        request.model_spec.signature_name = signature
        if version is not None:
            request.model_spec.version.value = version
        if label is not None:
            request.model_spec.version_label = label
    for key, proto in ({"images": tensor()} if inputs is None else inputs).items():
        request.inputs[key].CopyFrom(proto)
    return ("Predict", request)


def classify(examples=None, name="mlp", signature="classify", spec=True):
    request = classification_pb2.ClassificationRequest()
    if spec:
        request.model_spec.name, request.model_spec.signature_name = name, signature
    for example in [encode_image_example(IMAGE[0])] if examples is None else examples:
        request.input.example_list.examples.add().ParseFromString(example)
    return ("Classify", request)


def classify_with_context(context_bytes: int, count: int):
    """A Classify request whose examples share a context of `context_bytes` of padding."""
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name, request.model_spec.signature_name = "mlp", "classify"
    with_context = request.input.example_list_with_context
    with_context.context.ParseFromString(example(pad=tf.train.Feature(
        bytes_list=tf.train.BytesList(value=[bytes(context_bytes)]))))
    for _ in range(count):
        with_context.examples.add().ParseFromString(encode_image_example(IMAGE[0]))
    return ("Classify", request)


def example(**features) -> bytes:
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def metadata(name="mlp", fields=("signature_def",), version=None, spec=True):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=list(fields))
    if spec:
        request.model_spec.name = name
        if version is not None:
            request.model_spec.version.value = version
    return ("GetModelMetadata", request)


def status(name="mlp", version=None, label=None, spec=True):
    request = get_model_status_pb2.GetModelStatusRequest()
    if spec:
        request.model_spec.name = name
        if version is not None:
            request.model_spec.version.value = version
        if label is not None:
            request.model_spec.version_label = label
    return ("GetModelStatus", request)


def raw(method, data: bytes):
    return (method, data)


def rest(path, body=None, method="POST", headers=None):
    return ("REST", (method, path, body, headers or {}))


def png(height: int, width: int) -> bytes:
    return tf.io.encode_png(np.zeros((height, width, 3), np.uint8)).numpy()


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


_SERVICE_OF = {"GetModelStatus": "tensorflow.serving.ModelService"}
ALL_DTYPES = [value for value in types_pb2.DataType.values() if value != types_pb2.DT_UINT8]


# --- the cases: (id, request, expected code) --------------------------------------------------

CASES = [
    # Predict: every other dtype (values, refs, resource, variant, invalid, unknown enum)
    *[(f"predict dtype {types_pb2.DataType.Name(value)}", predict({"images": tensor(value)}),
       INVALID) for value in ALL_DTYPES],
    ("predict dtype 999 (no such enum)", predict({"images": tensor(999)}), INVALID),
    ("predict resource handle", predict({"images": tensor(
        types_pb2.DT_RESOURCE, shape=(1,), resource_handle_val=[
            resource_handle_pb2.ResourceHandleProto(device="cpu")])}), INVALID),
    ("predict variant", predict({"images": tensor(
        types_pb2.DT_VARIANT, shape=(1,), variant_val=[
            tensor_pb2.VariantTensorDataProto(type_name="x")])}), INVALID),
    # Predict: shapes
    ("predict negative batch", predict({"images": tensor(shape=(-1, 32, 32, 3))}), INVALID),
    ("predict negative height", predict({"images": tensor(shape=(1, -32, 32, 3))}), INVALID),
    ("predict zero height", predict({"images": tensor(shape=(1, 0, 32, 3))}), INVALID),
    ("predict huge batch no data", predict({"images": tensor(shape=(1 << 40, 32, 32, 3))}),
     INVALID),
    ("predict 2^62 batch", predict({"images": tensor(shape=(1 << 62, 32, 32, 3))}), INVALID),
    ("predict int64-max dims", predict({"images": tensor(shape=(2**63 - 1,) * 4)}), INVALID),
    ("predict few hundred MB declared", predict({"images": tensor(shape=(100_000, 32, 32, 3))}),
     INVALID),
    ("predict batch just over element limit", predict({"images": tensor(
        shape=(MAX_MESSAGE_BYTES // 3072 + 1, 32, 32, 3))}), INVALID),
    ("predict rank 3", predict({"images": tensor(shape=(32, 32, 3))}), INVALID),
    ("predict rank 5", predict({"images": tensor(shape=(1, 1, 32, 32, 3))}), INVALID),
    ("predict missing shape", predict({"images": tensor(shape=None, content=IMAGE.tobytes())}),
     INVALID),
    ("predict unknown rank", predict({"images": tensor(shape=None, content=IMAGE.tobytes(),
                                                        unknown_rank=True)}), INVALID),
    ("predict channels 4", predict({"images": tensor(shape=(1, 32, 32, 4),
                                                      content=bytes(4096))}), INVALID),
    # Predict: content against shape
    ("predict content one byte short", predict({"images": tensor(
        content=IMAGE.tobytes()[:-1])}), INVALID),
    ("predict content one byte long", predict({"images": tensor(
        content=IMAGE.tobytes() + b"\x00")}), INVALID),
    ("predict content double", predict({"images": tensor(content=IMAGE.tobytes() * 2)}),
     INVALID),
    ("predict no content", predict({"images": tensor(content=b"")}), INVALID),
    ("predict one int_val broadcast", predict({"images": tensor(content=b"", int_val=[7])}),
     INVALID),
    ("predict int_val short", predict({"images": tensor(content=b"", int_val=[1] * 3071)}),
     INVALID),
    ("predict int_val out of range", predict({"images": tensor(content=b"",
                                                                int_val=[300] * 3072)}), INVALID),
    ("predict int_val negative", predict({"images": tensor(content=b"", int_val=[-1] * 3072)}),
     INVALID),
    ("predict string_val on uint8", predict({"images": tensor(content=b"",
                                                               string_val=[b"x"] * 3072)}),
     INVALID),
    # Predict: names
    ("predict no inputs", predict({}), INVALID),
    ("predict extra input", predict({"images": tensor(), "labels": tensor(
        types_pb2.DT_INT64, shape=(1,), int64_val=[3])}), INVALID),
    ("predict wrong input name", predict({"image": tensor()}), INVALID),
    ("predict input name 5000 chars", predict({"x" * 5000: tensor()}), INVALID),
    ("predict input name NUL", predict({"images\x00": tensor()}), INVALID),
    ("predict unknown output_filter", predict(output_filter=["embeddings"]), INVALID),
    ("predict hostile output_filter", predict(output_filter=["o" * 5000]), INVALID),
    ("predict classify signature with images", predict(signature="classify"), INVALID),
    # Predict: order of checks (the signature before the tensors, the model before both)
    ("predict unknown signature", predict(signature="embed"), NOT_FOUND),
    ("predict unknown signature, huge tensor", predict(
        {"images": tensor(shape=(1 << 40, 32, 32, 3))}, signature="embed"), NOT_FOUND),
    ("predict unknown signature, resource dtype", predict(
        {"images": tensor(types_pb2.DT_RESOURCE)}, signature="embed"), NOT_FOUND),
    ("predict signature NUL", predict(signature="serving_default\x00"), NOT_FOUND),
    ("predict unknown model, huge tensor", predict(
        {"images": tensor(shape=(1 << 40, 32, 32, 3))}, name="nope"), NOT_FOUND),
    ("predict version 99", predict(version=99), NOT_FOUND),
    ("predict version -1", predict(version=-1), NOT_FOUND),
    ("predict unknown label", predict(label="canary"), INVALID),
    ("predict hostile label", predict(label="../\x00" * 1000), INVALID),
    ("predict no model_spec", predict(spec=False), INVALID),
    ("predict empty model name", predict(name=""), NOT_FOUND),
    *[(f"predict hostile model {name[:12]!r}", predict(name=name), NOT_FOUND)
      for name in HOSTILE_NAMES],
    ("predict empty body", raw("Predict", b""), INVALID),
    ("predict garbage bytes", raw("Predict", b"\xff\xfe\xfd garbage \x00\x01"), INVALID),
    ("predict invalid UTF-8 model name", raw("Predict", b"\x0a\x04\x0a\x02\xc3\x28"), INVALID),
    ("predict over the message limit", predict({"images": tensor(
        shape=(400, 32, 32, 3), content=bytes(400 * 3072))}), EXHAUSTED),
    # Classify
    ("classify no model_spec", classify(spec=False), INVALID),
    ("classify unknown model", classify(name="nope"), NOT_FOUND),
    ("classify hostile model", classify(name="a" * 5000), NOT_FOUND),
    ("classify unknown signature", classify(signature="embed"), NOT_FOUND),
    ("classify on predict signature", classify(signature=""), INVALID),
    ("classify no examples", classify(examples=[]), INVALID),
    ("classify example without the feature", classify(examples=[example()]), INVALID),
    ("classify feature of int64", classify(examples=[example(**{
        "image/encoded": tf.train.Feature(int64_list=tf.train.Int64List(value=[1]))})]),
     INVALID),
    ("classify feature of two images", classify(examples=[example(**{
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[png(32, 32)] * 2))})]), INVALID),
    ("classify garbage image", classify(examples=[example(**{
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"xx"]))})]),
     INVALID),
    ("classify image 8x8", classify(examples=[example(**{
        "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[png(8, 8)]))})]), INVALID),
    ("classify good and bad example", classify(examples=[encode_image_example(IMAGE[0]),
                                                          example()]), INVALID),
    ("classify context x examples over the limit", classify_with_context(100_000, 20),
     INVALID),
    ("classify garbage bytes", raw("Classify", b"\x12\xff\xff\xff\xff\x0f"), INVALID),
    ("classify empty body", raw("Classify", b""), INVALID),
    # GetModelMetadata
    ("metadata no field", metadata(fields=()), INVALID),
    ("metadata unknown field", metadata(fields=("weights",)), INVALID),
    ("metadata hostile field", metadata(fields=("f\x00" * 2500,)), INVALID),
    ("metadata no model_spec", metadata(spec=False), INVALID),
    ("metadata unknown model", metadata(name="nope"), NOT_FOUND),
    ("metadata version 3", metadata(version=3), NOT_FOUND),
    *[(f"metadata hostile model {name[:12]!r}", metadata(name=name), NOT_FOUND)
      for name in HOSTILE_NAMES[:4]],
    ("metadata garbage bytes", raw("GetModelMetadata", b"\x0a\xff"), INVALID),
    # GetModelStatus
    ("status no model_spec", status(spec=False), INVALID),
    ("status unknown model", status(name="nope"), NOT_FOUND),
    ("status version 3", status(version=3), NOT_FOUND),
    ("status unknown label", status(label="stable"), INVALID),
    *[(f"status hostile model {name[:12]!r}", status(name=name), NOT_FOUND)
      for name in HOSTILE_NAMES[:4]],
    ("status garbage bytes", raw("GetModelStatus", b"\x0a\x05\x0a"), INVALID),
    # Unimplemented
    ("regress", raw("Regress", b""), UNIMPLEMENTED),
    # REST: bodies
    ("rest malformed JSON", rest("/v1/models/mlp:predict", b"{"), INVALID),
    ("rest empty body", rest("/v1/models/mlp:predict", b""), INVALID),
    ("rest body a list", rest("/v1/models/mlp:predict", b"[]"), INVALID),
    ("rest body null", rest("/v1/models/mlp:predict", b"null"), INVALID),
    ("rest body not UTF-8", rest("/v1/models/mlp:predict", b"\xff\xfe{}"), INVALID),
    ("rest instances and inputs", rest("/v1/models/mlp:predict",
                                       b'{"instances": [], "inputs": []}'), INVALID),
    ("rest instances not a list", rest("/v1/models/mlp:predict", b'{"instances": 3}'), INVALID),
    ("rest wrong nesting", rest("/v1/models/mlp:predict", b'{"instances": [[1, 2, 3]]}'),
     INVALID),
    ("rest ragged", rest("/v1/models/mlp:predict", b'{"instances": [[1, 2], [3]]}'), INVALID),
    ("rest strings for uint8", rest("/v1/models/mlp:predict",
                                    json.dumps({"instances": [[["a"] * 3] * 32] * 32}).encode()),
     INVALID),
    ("rest fractions for uint8", rest("/v1/models/mlp:predict", json.dumps(
        {"instances": [[[[0.5] * 3] * 32] * 32]}).encode()), INVALID),
    ("rest negative for uint8", rest("/v1/models/mlp:predict", json.dumps(
        {"instances": [[[[-1] * 3] * 32] * 32]}).encode()), INVALID),
    ("rest NaN", rest("/v1/models/mlp:predict", b'{"instances": [NaN]}'), INVALID),
    ("rest nested 100000 deep", rest("/v1/models/mlp:predict",
                                     f'{{"instances": {nested(100_000)}}}'.encode()), INVALID),
    ("rest huge flat array", rest("/v1/models/mlp:predict", json.dumps(
        {"inputs": {"images": [0] * 300_000}}).encode()), INVALID),
    ("rest unknown input", rest("/v1/models/mlp:predict", json.dumps(
        {"inputs": {"images": IMAGE.tolist(), "labels": [1]}}).encode()), INVALID),
    ("rest instances objects with wrong key", rest("/v1/models/mlp:predict", json.dumps(
        {"instances": [{"image": IMAGE[0].tolist()}]}).encode()), INVALID),
    ("rest signature_name a number", rest("/v1/models/mlp:predict",
                                          b'{"signature_name": 5, "instances": []}'), INVALID),
    ("rest unknown signature", rest("/v1/models/mlp:predict",
                                    b'{"signature_name": "embed", "instances": []}'), NOT_FOUND),
    ("rest output_filter not a list", rest("/v1/models/mlp:predict", json.dumps(
        {"instances": IMAGE.tolist(), "output_filter": "logits"}).encode()), INVALID),
    ("rest classify examples not a list", rest("/v1/models/mlp:classify",
                                               b'{"signature_name": "classify", "examples": 1}'),
     INVALID),
    ("rest classify bad b64", rest("/v1/models/mlp:classify", json.dumps(
        {"signature_name": "classify", "examples": [{"image/encoded": {"b64": "%%%"}}]}
    ).encode()), INVALID),
    ("rest classify b64 a number", rest("/v1/models/mlp:classify", json.dumps(
        {"signature_name": "classify", "examples": [{"image/encoded": {"b64": 5}}]}).encode()),
     INVALID),
    ("rest classify context x examples over the limit", rest("/v1/models/mlp:classify",
                                                             json.dumps({
        "signature_name": "classify", "context": {"pad": "p" * 100_000},
        "examples": [{}] * 20}).encode()), INVALID),
    ("rest classify feature an object", rest("/v1/models/mlp:classify", json.dumps(
        {"signature_name": "classify", "examples": [{"image/encoded": {"a": 1}}]}).encode()),
     INVALID),
    ("rest classify int beyond int64", rest("/v1/models/mlp:classify", json.dumps(
        {"signature_name": "classify", "examples": [{"n": 2**70}]}).encode()), INVALID),
    # REST: lengths
    ("rest body over the limit", rest("/v1/models/mlp:predict", b" " * (MAX_MESSAGE_BYTES + 1)),
     EXHAUSTED),
    ("rest Content-Length 10^12, no body", rest("/v1/models/mlp:predict", b"",
                                                 headers={"Content-Length": str(10**12)}),
     EXHAUSTED),
    ("rest Content-Length negative", rest("/v1/models/mlp:predict", b"",
                                          headers={"Content-Length": "-5"}), INVALID),
    ("rest Content-Length not a number", rest("/v1/models/mlp:predict", b"",
                                              headers={"Content-Length": "ten"}), INVALID),
    # REST: paths and names
    ("rest unknown model", rest("/v1/models/nope:predict", b'{"instances": []}'), NOT_FOUND),
    ("rest model ..", rest("/v1/models/..:predict", b'{"instances": []}'), NOT_FOUND),
    ("rest model %00", rest("/v1/models/%00:predict", b'{"instances": []}'), NOT_FOUND),
    ("rest model 5000 chars", rest("/v1/models/" + "a" * 5000, method="GET"), NOT_FOUND),
    ("rest path traversal", rest("/v1/models/../../etc/passwd", method="GET"), NOT_FOUND),
    ("rest version too big", rest("/v1/models/mlp/versions/99999999999999999999999",
                                  method="GET"), INVALID),
    ("rest version 7 metadata", rest("/v1/models/mlp/versions/7/metadata", method="GET"),
     NOT_FOUND),
    ("rest unknown label", rest("/v1/models/mlp/labels/canary:predict", b'{"instances": []}'),
     INVALID),
    ("rest regress", rest("/v1/models/mlp:regress", b"{}"), UNIMPLEMENTED),
    ("rest GET predict", rest("/v1/models/mlp:predict", method="GET"), UNIMPLEMENTED),
]

HTTP_STATUS = {INVALID: 400, NOT_FOUND: 404, EXHAUSTED: 413, UNIMPLEMENTED: 501, OK: 200}


def _grpc_call(channel, method, request):
    service = _SERVICE_OF.get(method, "tensorflow.serving.PredictionService")
    if isinstance(request, bytes):
        call = channel.unary_unary(f"/{service}/{method}")
    else:
        stub = (model_service_pb2_grpc.ModelServiceStub(channel) if method == "GetModelStatus"
                else prediction_service_pb2_grpc.PredictionServiceStub(channel))
        call = getattr(stub, method)
    try:
        call(request, timeout=20)
    except grpc.RpcError as error:
        return error.code(), error.details() or ""
    return OK, ""


def _rest_call(port, method, path, body, headers):
    if "Content-Length" in headers:  # a lying header: sent by hand, body not sent
        with socket.create_connection(("127.0.0.1", port), timeout=20) as connection:
            connection.sendall(f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: "
                               f"{headers['Content-Length']}\r\n\r\n".encode() + body)
            response = http.client.HTTPResponse(connection)
            response.begin()
            return response.status, response.read().decode()
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        connection.request(method, path, body=body)
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


@pytest.mark.parametrize("kind, sent, code",
                         [(*request, code) for _, request, code in CASES],
                         ids=[case[0] for case in CASES])
def test_malformed_request_gets_exact_code(fuzz_server, kind, sent, code):
    server, channel, _ = fuzz_server
    if kind == "REST":
        status_code, body = _rest_call(server.rest_port, *sent)
        assert status_code == HTTP_STATUS[code], body
        message = json.loads(body)["error"]
    else:
        received, message = _grpc_call(channel, kind, sent)
        assert received == code, message
    assert message, "every refusal says why"
    assert not any(leak in message for leak in LEAKS), message
    assert len(message) < 2000, "names are cut, not echoed whole"


def test_case_count_and_codes():
    """At least 60 cases, over every RPC and REST, with the spread of codes asserted."""
    kinds = collections.Counter(case[1][0] for case in CASES)
    assert len(CASES) >= 60
    assert set(kinds) >= {"Predict", "Classify", "GetModelMetadata", "GetModelStatus", "REST"}
    codes = collections.Counter(case[2].name for case in CASES)
    assert set(codes) == {"INVALID_ARGUMENT", "NOT_FOUND", "RESOURCE_EXHAUSTED",
                          "UNIMPLEMENTED"}


def test_server_still_answers_good_requests(fuzz_server):
    """After every malformed request above (pytest runs them first), a good one is right."""
    server, channel, model = fuzz_server
    _, request = predict()
    response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
        request, timeout=20)
    expected = model(IMAGE, training=False).numpy()
    np.testing.assert_allclose(tensors.to_ndarray(response.outputs["logits"]), expected,
                               atol=1e-5)
    _, request = predict({"images": tensor(content=b"", int_val=IMAGE.reshape(-1).tolist())})
    response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
        request, timeout=20)
    np.testing.assert_allclose(tensors.to_ndarray(response.outputs["logits"]), expected,
                               atol=1e-5)
    for _, request in (classify(), classify_with_context(10, 2)):
        classified = prediction_service_pb2_grpc.PredictionServiceStub(channel).Classify(
            request, timeout=20)
        assert len(classified.result.classifications[-1].classes) == 10
    status_code, body = _rest_call(server.rest_port, "POST", "/v1/models/mlp:predict",
                                   json.dumps({"instances": IMAGE.tolist()}).encode(), {})
    assert status_code == 200
    np.testing.assert_allclose(json.loads(body)["predictions"][0]["logits"], expected[0],
                               atol=1e-5)
