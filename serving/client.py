"""A small gRPC client over the official TF Serving stubs.

    with ServingClient("localhost:8500") as client:
        outputs = client.predict("best_student", images)          # {"logits": ..., ...}
        labels = client.classify("best_student", images)          # [[(name, score), ...], ...]

The channel carries the message size limits and retries calls that fail with UNAVAILABLE
(only that code: a server restarting or a full batch queue) through gRPC's own retry policy;
every call has a deadline.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc
import numpy as np
from tensorflow.core.example import example_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    input_pb2,
    model_management_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)
from tensorflow_serving.config import model_server_config_pb2

from serving import tensors
from serving.signatures import (
    CLASSIFY_SIGNATURE,
    IMAGES_INPUT,
    PREDICT_SIGNATURE,
    encode_image_example,
)

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
AVAILABLE = get_model_status_pb2.ModelVersionStatus.State.AVAILABLE
END = get_model_status_pb2.ModelVersionStatus.State.END


class ModelLoadError(RuntimeError):
    """A model a client waits for failed to load, or the wait was given up."""


def model_spec(
    name: str,
    version: int | None = None,
    version_label: str | None = None,
    signature_name: str = "",
) -> model_pb2.ModelSpec:
    """A `ModelSpec` naming a model and, optionally, a version or a version label."""
    if version is not None and version_label is not None:
        raise ValueError("pass a version or a version label, not both")
    spec = model_pb2.ModelSpec(name=name, signature_name=signature_name)
    if version is not None:
        spec.version.value = int(version)
    elif version_label is not None:
        spec.version_label = version_label
    return spec


def predict_request(
    name: str,
    inputs: np.ndarray | Mapping[str, np.ndarray],
    *,
    version: int | None = None,
    version_label: str | None = None,
    signature_name: str = PREDICT_SIGNATURE,
    output_filter: Sequence[str] = (),
) -> predict_pb2.PredictRequest:
    """A `PredictRequest`; a bare array is sent as the `images` input."""
    if not isinstance(inputs, Mapping):
        inputs = {IMAGES_INPUT: inputs}
    request = predict_pb2.PredictRequest(
        model_spec=model_spec(name, version, version_label, signature_name),
        output_filter=list(output_filter),
    )
    for key, value in inputs.items():
        tensors.fill_tensor_proto(request.inputs[key], value)
    return request


def _retry_service_config(attempts: int) -> str:
    return json.dumps({
        "methodConfig": [{
            "name": [{"service": "tensorflow.serving.PredictionService"},
                     {"service": "tensorflow.serving.ModelService"}],
            "retryPolicy": {
                "maxAttempts": attempts,
                "initialBackoff": "0.1s",
                "maxBackoff": "2s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }]
    })


class ServingClient:
    """Calls TF Serving (or the embedded server) with the official stubs.

    Args:
        target: `host:port` of the gRPC server.
        timeout_s: the deadline of each call, unless the call passes its own.
        max_message_bytes: the largest request or response this channel carries.
        max_attempts: tries per call when the server answers UNAVAILABLE (1: no retry; gRPC
            caps it at 5).
    """

    def __init__(
        self,
        target: str,
        *,
        timeout_s: float = 30.0,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_attempts: int = 4,
    ) -> None:
        self.target = target
        self.timeout_s = timeout_s
        self.channel = grpc.insecure_channel(target, options=[
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.enable_retries", 1 if max_attempts > 1 else 0),
            ("grpc.service_config", _retry_service_config(max(2, min(max_attempts, 5)))),
        ])
        self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def predict(
        self,
        name: str,
        inputs: np.ndarray | Mapping[str, np.ndarray],
        *,
        timeout_s: float | None = None,
        **request_options: Any,
    ) -> dict[str, np.ndarray]:
        """`Predict`: the signature's outputs as numpy arrays (a bare array is `images`).

        `request_options` are `predict_request`'s: `version`, `version_label`,
        `signature_name`, `output_filter`.
        """
        request = predict_request(name, inputs, **request_options)
        response = self.prediction.Predict(request, timeout=timeout_s or self.timeout_s)
        return {key: tensors.to_ndarray(value) for key, value in response.outputs.items()}

    def classify(
        self,
        name: str,
        images: np.ndarray,
        *,
        version: int | None = None,
        signature_name: str = CLASSIFY_SIGNATURE,
        timeout_s: float | None = None,
    ) -> list[list[tuple[str, float]]]:
        """`Classify` uint8 images `[N, H, W, C]`: per image, (class name, score) pairs."""
        examples = [encode_image_example(image) for image in np.asarray(images)]
        request = classification_pb2.ClassificationRequest(
            model_spec=model_spec(name, version, signature_name=signature_name),
            input=input_pb2.Input(example_list=input_pb2.ExampleList(
                examples=[example_pb2.Example.FromString(e) for e in examples])),
        )
        response = self.prediction.Classify(request, timeout=timeout_s or self.timeout_s)
        return [[(entry.label, entry.score) for entry in classifications.classes]
                for classifications in response.result.classifications]

    def signature_defs(
        self, name: str, *, version: int | None = None, timeout_s: float | None = None
    ) -> dict[str, meta_graph_pb2.SignatureDef]:
        """`GetModelMetadata`: the model's signature defs."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=model_spec(name, version), metadata_field=["signature_def"])
        response = self.prediction.GetModelMetadata(request, timeout=timeout_s or self.timeout_s)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        return dict(signature_map.signature_def)

    def model_status(
        self, name: str, *, version: int | None = None, timeout_s: float | None = None
    ) -> list[get_model_status_pb2.ModelVersionStatus]:
        """`GetModelStatus`: the state of each version of a model."""
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=model_spec(name, version))
        response = self.models.GetModelStatus(request, timeout=timeout_s or self.timeout_s)
        return list(response.model_version_status)

    def available_versions(self, name: str) -> list[int]:
        """The versions of a model that are AVAILABLE, ascending."""
        return sorted(status.version for status in self.model_status(name)
                      if status.state == AVAILABLE)

    def wait_until_available(self, name: str, *, version: int | None = None,
                             timeout_s: float = 60.0,
                             give_up: Callable[[], str | None] | None = None) -> int:
        """Poll until the model (or that version) is AVAILABLE; return the version.

        `give_up`, called between polls, returns a reason to stop waiting (e.g. the server
        process exited) or None.

        Raises:
            ModelLoadError: the version (or every version) failed to load, or `give_up` gave a
                reason.
            TimeoutError: it did not become available in time.
        """
        deadline = time.monotonic() + timeout_s
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            reason = give_up() if give_up is not None else None
            if reason:
                raise ModelLoadError(reason)
            try:
                statuses = [status for status in self.model_status(name)
                            if version is None or status.version == version]
                available = sorted(s.version for s in statuses if s.state == AVAILABLE)
                if available:
                    return available[-1]
                if statuses and all(status.state == END for status in statuses):
                    raise ModelLoadError(f"model '{name}' (version {version or 'latest'}) "
                                         f"failed to load: {statuses[0].status.error_message}")
                last_error = f"states {[status.state for status in statuses]}"
            except grpc.RpcError as error:
                last_error = f"{error.code().name}: {error.details()}"
            time.sleep(0.1)
        raise TimeoutError(f"model '{name}' (version {version or 'latest'}) not AVAILABLE at "
                           f"{self.target} after {timeout_s} s ({last_error})")

    def reload_config(self, config: model_server_config_pb2.ModelServerConfig,
                      timeout_s: float | None = None) -> None:
        """`HandleReloadConfigRequest`: replace the served models."""
        request = model_management_pb2.ReloadConfigRequest(config=config)
        self.models.HandleReloadConfigRequest(request, timeout=timeout_s or self.timeout_s)

    def close(self) -> None:
        """Close the channel."""
        self.channel.close()

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def run_closed_loop(
    client: ServingClient,
    request: predict_pb2.PredictRequest,
    *,
    concurrency: int,
    seconds: float,
    decode_output: str | None = None,
) -> tuple[int, float]:
    """(requests completed, seconds) of `concurrency` callers each sending `request` back to
    back for `seconds`; with `decode_output`, each caller also decodes that output tensor.

    Raises RuntimeError naming the first failure if any request failed.
    """
    completed = [0] * concurrency
    errors: list[grpc.RpcError] = []
    start_barrier = threading.Barrier(concurrency + 1)
    deadline = [0.0]

    def caller(index: int) -> None:
        start_barrier.wait()
        try:
            while time.perf_counter() < deadline[0]:
                response = client.prediction.Predict(request, timeout=client.timeout_s)
                if decode_output is not None:
                    tensors.to_ndarray(response.outputs[decode_output])
                completed[index] += 1
        except grpc.RpcError as error:
            errors.append(error)

    threads = [threading.Thread(target=caller, args=(index,)) for index in range(concurrency)]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    deadline[0] = started + seconds
    start_barrier.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} of the closed-loop requests failed, first: {errors[0]}")
    return sum(completed), elapsed
