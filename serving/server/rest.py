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
from serving.server import request_checks
from serving.server.errors import ServingError, describe_name, from_exception
from serving.server.model_manager import ModelManager
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
            if not isinstance(value["b64"], str):
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, '{"b64": ...} must hold a '
                                   "string of base64")
            try:
                return base64.b64decode("".join(value["b64"].split()), validate=True)
            except ValueError:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, '{"b64": ...} holds '
                                   "characters outside the base64 alphabet") from None
        return {key: _decode_b64(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode_b64(item) for item in value]
    return value


def _string_field(body: Mapping[str, Any], key: str) -> str:
    """An optional string field of a request body ('' when absent)."""
    value = body.get(key) or ""
    if not isinstance(value, str):
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"'{key}' must be a string")
    return value


def _to_array(value: Any, dtype_enum: int, what: str) -> np.ndarray:
    """A JSON value as an array of the signature's dtype, refusing lossy conversions."""
    if not tensors.is_decodable(dtype_enum):
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"{what} has dtype "
                           f"{tensors.dtype_name(dtype_enum)}, which a request cannot carry")
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

    def __init__(self, manager: ModelManager,
                 max_merged_bytes: int = request_checks.RequestLimits.max_merged_bytes) -> None:
        self.manager = manager
        self.max_merged_bytes = max_merged_bytes  # classify examples, context merged in

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
        signature_name = _string_field(body, "signature_name") or PREDICT_SIGNATURE
        signature = servable.signature_def(signature_name)
        output_filter = body.get("output_filter") or []
        if not isinstance(output_filter, list) or not all(
                isinstance(key, str) for key in output_filter):
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                               "'output_filter' must be a list of output names")
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
        elif isinstance(payload, dict):
            columns = payload
        elif len(input_keys) == 1:
            columns = {input_keys[0]: payload}
        else:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "'inputs' must be an object "
                               f"naming the inputs {input_keys}")
        request_checks.check_input_names(signature, signature_name, columns)
        inputs = {key: _to_array(value, signature.inputs[key].dtype, f"input '{key}'")
                  for key, value in columns.items()}
        outputs = servable.predict(signature_name, inputs, output_filter)
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
        serialized = request_checks.merge_context(
            context, [_example(example) for example in examples], self.max_merged_bytes)
        classes, scores = servable.classify(_string_field(body, "signature_name"), serialized)
        result = []
        for row in range(len(serialized)):
            labels = _to_json(classes[row]) if classes is not None else [""] * scores.shape[1]
            row_scores = scores[row].tolist() if scores is not None else [0.0] * len(labels)
            result.append([[label, score] for label, score in zip(labels, row_scores, strict=True)])
        return {"result": result}


# What a connection beyond `max_connections` is answered before it is closed.
_BUSY_BODY = json.dumps({"error": "the REST server is at capacity; retry later"}).encode()
_BUSY_RESPONSE = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                  b"Connection: close\r\nContent-Length: " + str(len(_BUSY_BODY)).encode()
                  + b"\r\n\r\n" + _BUSY_BODY)
DRAIN_FACTOR = 4  # bodies up to this many times the limit are read and dropped, not kept


class _BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most `max_connections` at once; more get 503 at once."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler, max_connections: int) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_connections)

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            try:
                request.sendall(_BUSY_RESPONSE)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class RestServer:
    """TF Serving's REST API on a `ThreadingHTTPServer` running in a daemon thread.

    Args:
        manager: the models to serve.
        host: the address to bind (127.0.0.1 by default: loopback only).
        port: the port; 0 picks a free one (see `port` after construction).
        max_body_bytes: larger request bodies are refused with HTTP 413 (and not kept).
        max_connections: connections served at once; more are answered 503 at once.
        idle_timeout_s: a connection that sends nothing for this long is closed.
    """

    def __init__(self, manager: ModelManager, host: str = "127.0.0.1", port: int = 8501,
                 max_body_bytes: int = 64 * 1024 * 1024, max_connections: int = 64,
                 idle_timeout_s: float = 30.0) -> None:
        api = RestApi(manager, max_body_bytes)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "mimic-tf-serving"
            timeout = idle_timeout_s

            def _read_body(self) -> dict:
                """The JSON object of the request body (errors: ServingError)."""
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                except ValueError:
                    length = -1
                if length < 0:
                    self.close_connection = True
                    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Content-Length must "
                                       "be a non-negative integer")
                if length > max_body_bytes:
                    remaining = length if length <= DRAIN_FACTOR * max_body_bytes else 0
                    while remaining > 0:  # read and drop, so the client reads the answer
                        chunk = self.rfile.read(min(1 << 16, remaining))
                        if not chunk:
                            break
                        remaining -= len(chunk)
                    self.close_connection = True
                    raise ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"request body of "
                                       f"{length} bytes exceeds the limit of {max_body_bytes}; "
                                       "send smaller batches", http_status=413)
                data = self.rfile.read(length) if length else b""
                if len(data) < length:
                    self.close_connection = True
                    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"the body ended after "
                                       f"{len(data)} of its {length} bytes")
                try:
                    body = json.loads(data or b"{}")
                except (ValueError, RecursionError) as error:
                    reason = ("nested too deeply" if isinstance(error, RecursionError)
                              else str(error))
                    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                       f"request body is not JSON: {reason}") from None
                if not isinstance(body, dict):
                    raise ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                                       "request body must be a JSON object")
                return body

            def log_message(self, format: str, *args) -> None:
                logger.debug("REST %s", format % args)

            def _send(self, status: int, payload: dict) -> None:
                body = json.dumps(payload).encode("utf-8")
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:  # the client is gone; nothing to answer
                    self.close_connection = True

            def _handle(self, method: str) -> None:
                try:
                    match = _PATH.match(self.path.split("?", 1)[0])
                    if match is None:
                        raise ServingError(grpc.StatusCode.NOT_FOUND, f"no such resource "
                                           f"{describe_name(self.path)}; try /v1/models/NAME or "
                                           "/v1/models/NAME:predict")
                    spec = api.model_spec(match)
                    if method == "GET" and not match["verb"]:
                        payload = api.metadata(spec) if match["metadata"] else api.status(spec)
                    elif method == "POST" and match["verb"] in ("predict", "classify"):
                        body = self._read_body()
                        handler = api.predict if match["verb"] == "predict" else api.classify
                        payload = handler(spec, body)
                    else:
                        raise ServingError(grpc.StatusCode.UNIMPLEMENTED,
                                           f"{method} {describe_name(self.path)} is not "
                                           "supported")
                except (TimeoutError, ConnectionError):  # the client went quiet or away
                    self.close_connection = True
                    return
                except Exception as error:  # every failure is an answer, never a dead server
                    failure = from_exception(error)
                    self._send(failure.http_status, {"error": failure.message})
                    return
                self._send(200, payload)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        self._server = _BoundedHTTPServer((host, port), Handler, max_connections)
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
