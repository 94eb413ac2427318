"""The REST API of the embedded server, in TF Serving's JSON format (stdlib `http.server`).

    GET  /v1/models/NAME[/versions/N | /labels/L]             model status
    GET  /v1/models/NAME[/versions/N | /labels/L]/metadata    signature defs
    POST /v1/models/NAME[/versions/N | /labels/L]:predict     {"instances": [...]} (row) or
                                                              {"inputs": ...} (columnar)
    POST /v1/models/NAME[/versions/N | /labels/L]:classify    {"examples": [{feature: ...}]}

Row format answers `{"predictions": [...]}`, columnar `{"outputs": ...}`; binary strings travel
as `{"b64": "..."}`; errors answer `{"error": "..."}` with the HTTP status of the gRPC code.
Requests run through the same `Servable` as gRPC, so both answer alike.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_pb2

from serving import tensors
from serving.errors import ServingError, from_exception
from serving.model_manager import ModelManager
from serving.signatures import PREDICT_SIGNATURE

logger = logging.getLogger(__name__)

_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>\d+)|/labels/(?P<label>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<verb>predict|classify|regress))?/?$"
)


def _decode_b64(value: Any) -> Any:
    """Replace every `{"b64": "..."}` object in a JSON value by its bytes."""
    if isinstance(value, dict):
        if set(value) == {"b64"}:
            return base64.b64decode(value["b64"])
        return {key: _decode_b64(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode_b64(item) for item in value]
    return value


def _to_array(value: Any, dtype_enum: int, what: str) -> np.ndarray:
    """A JSON value as an array of the signature's dtype, refusing lossy conversions."""
    dtype = tensors.numpy_dtype(dtype_enum)
    if dtype.kind == "O":
        array = np.array(value, dtype=object)
        if array.size and not all(isinstance(item, (bytes, str)) for item in array.reshape(-1)):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               f"{what} must hold strings (binary ones as {{\"b64\": ...}})")
        return array
    try:
        array = np.array(value)
    except ValueError:
        array = np.array(value, dtype=object)
    if array.dtype.kind not in "biuf":
        raise ServingError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"{what} must be a rectangular list of numbers for dtype "
            f"{tensors.dtype_name(dtype_enum)}; got ragged or non-numeric values",
        )
    if dtype.kind in "iu" and array.size:
        info = np.iinfo(dtype)
        if array.dtype.kind == "f" and not np.all(np.mod(array, 1) == 0):
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{what} holds fractional numbers but the signature expects "
                f"{tensors.dtype_name(dtype_enum)}",
            )
        if array.min() < info.min or array.max() > info.max:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{what} holds values outside [{info.min}, {info.max}] of "
                f"{tensors.dtype_name(dtype_enum)}",
            )
    return array.astype(dtype)


def _to_json(array: np.ndarray) -> Any:
    if array.dtype.kind in "OS":
        def convert(item):
            try:
                return item.decode("utf-8")
            except UnicodeDecodeError:
                return {"b64": base64.b64encode(item).decode("ascii")}
        return np.vectorize(convert, otypes=[object])(array).tolist() if array.size else []
    return array.tolist()


def _feature(value: Any) -> tf.train.Feature:
    values = value if isinstance(value, list) else [value]
    if all(isinstance(item, (bytes, str)) for item in values):
        encoded = [item if isinstance(item, bytes) else item.encode("utf-8") for item in values]
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=encoded))
    if all(isinstance(item, int) and not isinstance(item, bool) for item in values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    if all(isinstance(item, (int, float)) for item in values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))
    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"feature value {value!r} is not a "
                       "string, an int, a float or a list of one of those")


def _example(features: Any) -> bytes:
    if not isinstance(features, dict):
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                           "each entry of 'examples' must be an object of feature: value")
    example = tf.train.Example(features=tf.train.Features(
        feature={key: _feature(value) for key, value in features.items()}))
    return example.SerializeToString()


class RestApi:
    """The JSON handlers, independent of the HTTP server (so they are easy to test)."""

    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager

    @staticmethod
    def model_spec(match: re.Match) -> model_pb2.ModelSpec:
        """The `ModelSpec` a matched URL names (model, and version or label if given)."""
        spec = model_pb2.ModelSpec(name=match["name"])
        if match["version"]:
            spec.version.value = int(match["version"])
        elif match["label"]:
            spec.version_label = match["label"]
        return spec

    def status(self, spec: model_pb2.ModelSpec) -> dict:
        """`GET /v1/models/NAME`: the state of each version."""
        response = get_model_status_pb2.GetModelStatusResponse()
        for state in self.manager.version_states(spec):
            status = response.model_version_status.add(version=state.version, state=state.state)
            status.status.error_code = state.error_code.value[0]
            status.status.error_message = state.error_message
        return json_format.MessageToDict(response, preserving_proto_field_name=True,
                                         always_print_fields_with_no_presence=True)

    def metadata(self, spec: model_pb2.ModelSpec) -> dict:
        """`GET /v1/models/NAME/metadata`: the signature defs."""
        servable = self.manager.resolve(spec)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(signature)
        return {
            "model_spec": {"name": servable.name, "signature_name": "",
                           "version": str(servable.version)},
            "metadata": {"signature_def": json_format.MessageToDict(
                signature_map, preserving_proto_field_name=True)},
        }

    def predict(self, spec: model_pb2.ModelSpec, body: Mapping[str, Any]) -> dict:
        """`POST ...:predict` with `instances` (row format) or `inputs` (columnar)."""
        servable = self.manager.resolve(spec)
        signature_name = body.get("signature_name") or PREDICT_SIGNATURE
        signature = servable.signature_def(signature_name)
        input_keys = sorted(signature.inputs)
        if ("instances" in body) == ("inputs" in body):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "the request body must hold "
                               "exactly one of 'instances' (row format) or 'inputs' (columnar)")
        row_format = "instances" in body
        payload = _decode_b64(body["instances"] if row_format else body["inputs"])
        if row_format:
            if not isinstance(payload, list):
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "'instances' must be a list")
            if payload and all(isinstance(item, dict) for item in payload):
                columns = {key: [item.get(key) for item in payload]
                           for key in {key for item in payload for key in item}}
            elif len(input_keys) == 1:
                columns = {input_keys[0]: payload}
            else:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "signature "
                                   f"'{signature_name}' has inputs {input_keys}; each instance "
                                   "must be an object naming them")
        elif isinstance(payload, dict) and set(payload) <= set(signature.inputs) and payload:
            columns = payload
        elif len(input_keys) == 1:
            columns = {input_keys[0]: payload}
        else:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "'inputs' must be an object "
                               f"naming the inputs {input_keys}")
        inputs = {
            key: _to_array(value, signature.inputs[key].dtype, f"input '{key}'")
            if key in signature.inputs else np.asarray(value)
            for key, value in columns.items()
        }
        outputs = servable.predict(signature_name, inputs, body.get("output_filter") or ())
        if not row_format:
            if len(outputs) == 1:
                return {"outputs": _to_json(next(iter(outputs.values())))}
            return {"outputs": {key: _to_json(value) for key, value in outputs.items()}}
        as_lists = {key: _to_json(value) for key, value in outputs.items()}
        num_rows = len(next(iter(as_lists.values()))) if as_lists else 0
        if len(as_lists) == 1:
            return {"predictions": next(iter(as_lists.values()))}
        return {"predictions": [{key: value[row] for key, value in as_lists.items()}
                                for row in range(num_rows)]}

    def classify(self, spec: model_pb2.ModelSpec, body: Mapping[str, Any]) -> dict:
        """`POST ...:classify` with `examples` (and an optional `context`)."""
        servable = self.manager.resolve(spec)
        examples = _decode_b64(body.get("examples"))
        if not isinstance(examples, list):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "the request body must hold "
                               "'examples': a list of {feature: value} objects")
        context = _example(_decode_b64(body["context"])) if "context" in body else b""
        serialized = [context + _example(example) for example in examples]
        classes, scores = servable.classify(body.get("signature_name") or "", serialized)
        result = []
        for row in range(len(serialized)):
            labels = _to_json(classes[row]) if classes is not None else [""] * scores.shape[1]
            row_scores = scores[row].tolist() if scores is not None else [0.0] * len(labels)
            result.append([[label, score] for label, score in zip(labels, row_scores, strict=True)])
        return {"result": result}


class RestServer:
    """TF Serving's REST API on a `ThreadingHTTPServer` running in a daemon thread.

    Args:
        manager: the models to serve.
        host: the address to bind (127.0.0.1 by default: loopback only).
        port: the port; 0 picks a free one (see `port` after construction).
        max_body_bytes: larger request bodies are refused with HTTP 413.
    """

    def __init__(self, manager: ModelManager, host: str = "127.0.0.1", port: int = 8501,
                 max_body_bytes: int = 64 * 1024 * 1024) -> None:
        api = RestApi(manager)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "mimic-tf-serving"

            def log_message(self, format: str, *args) -> None:
                logger.debug("REST %s", format % args)

            def _send(self, status: int, payload: dict) -> None:
                body = json.dumps(payload).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _handle(self, method: str) -> None:
                try:
                    match = _PATH.match(self.path.split("?", 1)[0])
                    if match is None:
                        raise ServingError(grpc.StatusCode.NOT_FOUND, f"no such resource "
                                           f"{self.path}; try /v1/models/NAME or "
                                           "/v1/models/NAME:predict")
                    spec = api.model_spec(match)
                    if method == "GET" and not match["verb"]:
                        payload = api.metadata(spec) if match["metadata"] else api.status(spec)
                    elif method == "POST" and match["verb"] in ("predict", "classify"):
                        length = int(self.headers.get("Content-Length") or 0)
                        if length > max_body_bytes:
                            self.rfile.read(length)
                            raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"request "
                                               f"body of {length} bytes exceeds the limit of "
                                               f"{max_body_bytes}; send smaller batches")
                        try:
                            body = json.loads(self.rfile.read(length) or b"{}")
                        except json.JSONDecodeError as error:
                            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                               f"request body is not JSON: {error}") from None
                        if not isinstance(body, dict):
                            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                               "request body must be a JSON object")
                        handler = api.predict if match["verb"] == "predict" else api.classify
                        payload = handler(spec, body)
                    else:
                        raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                                           f"{method} {self.path} is not supported")
                    self._send(200, payload)
                except Exception as error:  # every failure is an answer, never a dead server
                    failure = from_exception(error)
                    if failure.code == grpc.StatusCode.INTERNAL:
                        logger.exception("REST %s %s failed", method, self.path)
                    self._send(failure.http_status, {"error": failure.message})

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.host = host
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="rest-server",
                                        daemon=True)

    def start(self) -> RestServer:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting requests and close the socket."""
        self._server.shutdown()
        self._server.server_close()
