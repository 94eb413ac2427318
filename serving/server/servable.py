"""One loaded version of one model: its SavedModel, signature defs, request checks and warmup.

A `Servable` answers the work behind `Predict` and `Classify` for one `(name, version)`: it
checks the request's inputs against the signature def (names, dtypes, shapes, as TF Serving
does before running a session), calls the signature's concrete function directly (through a
`BatchScheduler` when batching is on), and runs the SavedModel's
`assets.extra/tf_serving_warmup_requests` before it is reported AVAILABLE.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2

from serving import tensors
from serving.model_config import BatchingParameters
from serving.server import request_checks
from serving.server.admission import ConcurrencyLimit, check_deadline
from serving.server.batching import BatchScheduler
from serving.server.errors import ServingError, describe_name, from_exception
from serving.signatures import (
    CLASSIFY_CLASSES,
    CLASSIFY_INPUTS,
    CLASSIFY_METHOD,
    CLASSIFY_SCORES,
    PREDICT_SIGNATURE,
    WARMUP_FILE,
)

MAX_WARMUP_RECORDS = 1000  # TF Serving reads at most this many warmup records
SERVE_TAG = "serve"


def read_signature_defs(saved_model_dir: str | Path) -> dict[str, meta_graph_pb2.SignatureDef]:
    """The signature defs of the `serve` meta graph of a SavedModel, read from its proto."""
    saved_model_dir = Path(saved_model_dir)
    saved_model = saved_model_pb2.SavedModel()
    binary, text = saved_model_dir / "saved_model.pb", saved_model_dir / "saved_model.pbtxt"
    if binary.is_file():
        saved_model.ParseFromString(binary.read_bytes())
    elif text.is_file():
        text_format.Parse(text.read_text(encoding="utf-8"), saved_model)
    else:
        raise FileNotFoundError(f"{saved_model_dir} holds no saved_model.pb; is it a SavedModel?")
    for meta_graph in saved_model.meta_graphs:
        if SERVE_TAG in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    raise ValueError(f"{saved_model_dir} has no meta graph tagged '{SERVE_TAG}'")


class Servable:
    """One version of one model, loaded and ready to run.

    Args:
        name: the model name requests use.
        version: the version number (the folder name).
        path: the SavedModel folder.
        batching: batch concurrent requests with these parameters; None runs each alone.
        concurrency: without batching, the limit on requests running and waiting at once
            (shared by every servable of a server); None: no limit.
    """

    def __init__(
        self,
        name: str,
        version: int,
        path: str | Path,
        batching: BatchingParameters | None = None,
        concurrency: ConcurrencyLimit | None = None,
    ) -> None:
        self.name = name
        self.version = int(version)
        self.path = Path(path)
        self.signature_defs = read_signature_defs(self.path)
        self.saved_model = tf.saved_model.load(str(self.path), tags=[SERVE_TAG])
        self._functions = dict(self.saved_model.signatures)
        self._batching = batching
        self._concurrency = concurrency
        self._schedulers: dict[str, BatchScheduler] = {}
        self._schedulers_lock = threading.Lock()

    @property
    def signature_names(self) -> list[str]:
        """The signatures requests can call."""
        return sorted(self._functions)

    @property
    def queued_examples(self) -> int:
        """Examples waiting in this version's batch queues (0 without batching)."""
        return sum(scheduler.queued_examples for scheduler in list(self._schedulers.values()))

    @property
    def expired_tasks(self) -> int:
        """Batched requests dropped unrun because their deadline passed (0 without batching)."""
        return sum(scheduler.expired_tasks for scheduler in list(self._schedulers.values()))

    def signature_def(self, signature_name: str) -> meta_graph_pb2.SignatureDef:
        """The signature def called `signature_name` (empty: serving_default).

        Raises:
            ServingError: NOT_FOUND when the model has no such signature.
        """
        signature_name = signature_name or PREDICT_SIGNATURE
        if signature_name not in self._functions:
            raise ServingError(
                grpc.StatusCode.NOT_FOUND,
                f"Serving signature key \"{describe_name(signature_name)}\" not found in model "
                f"'{self.name}' "
                f"version {self.version}; available signatures: "
                f"{', '.join(self.signature_names)}",
            )
        return self.signature_defs[signature_name]

    def check_inputs(self, signature_name: str, inputs: Mapping[str, np.ndarray]) -> None:
        """Check decoded input names, dtypes and shapes against the signature def.

        Raises:
            ServingError: NOT_FOUND for an unknown signature, INVALID_ARGUMENT for a missing or
                extra input, a wrong dtype or a wrong shape (naming the expected one).
        """
        signature_name = signature_name or PREDICT_SIGNATURE
        request_checks.check_arrays(self.signature_def(signature_name), signature_name, inputs)

    def predict(
        self,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
        *,
        deadline: float | None = None,
        checked: bool = False,
    ) -> dict[str, np.ndarray]:
        """Check the inputs, run the signature and return its (filtered) outputs.

        Args:
            deadline: `time.monotonic()` instant after which the work is not started.
            checked: the inputs were already checked against the signature
                (`request_checks.decode_inputs`).

        Raises:
            ServingError: for a bad request (see `check_inputs`), an unknown output in
                `output_filter` (INVALID_ARGUMENT), a full queue (UNAVAILABLE), a passed
                deadline (DEADLINE_EXCEEDED), or a runtime failure.
        """
        signature_name = signature_name or PREDICT_SIGNATURE
        if not checked:
            self.check_inputs(signature_name, inputs)
        outputs_def = self.signature_defs[signature_name].outputs
        unknown = [key for key in output_filter if key not in outputs_def]
        if unknown:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"output tensor alias not found in signature: {describe_name(unknown[0])}. "
                f"Outputs expected to be in the set {{{','.join(sorted(outputs_def))}}}.",
            )
        outputs = self._run(signature_name, inputs, deadline)
        if output_filter:
            outputs = {key: outputs[key] for key in output_filter}
        return outputs

    def classify(
        self, signature_name: str, serialized_examples: Sequence[bytes], *,
        deadline: float | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Run a classification signature on serialized `tf.Example`s.

        Returns:
            `(classes, scores)`: class labels (bytes) and scores, each `[examples, classes]`.

        Raises:
            ServingError: INVALID_ARGUMENT when the signature is not a classification one or
                the input is empty, as TF Serving does.
        """
        signature_name = signature_name or PREDICT_SIGNATURE
        signature = self.signature_def(signature_name)
        if signature.method_name != CLASSIFY_METHOD:
            raise ServingError(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"Expected classification signature method_name to be {CLASSIFY_METHOD}. Was: "
                f"{signature.method_name}. Name the classification signature in "
                "model_spec.signature_name (exported students: 'classify')",
            )
        if not serialized_examples:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Input is empty: send at least "
                               "one tf.Example in input.example_list")
        inputs = {CLASSIFY_INPUTS: np.array(list(serialized_examples), dtype=object)}
        outputs = self.predict(signature_name, inputs, deadline=deadline)
        scores = outputs.get(CLASSIFY_SCORES)
        classes = outputs.get(CLASSIFY_CLASSES)
        if scores is None and classes is None:
            raise ServingError(grpc.StatusCode.FAILED_PRECONDITION, "classification signature "
                               "has neither a 'classes' nor a 'scores' output")
        return classes, scores

    def warmup(self) -> int:
        """Replay `assets.extra/tf_serving_warmup_requests`; return the number of records run.

        Raises:
            ServingError: a warmup record failed (the version then fails to load, as in TF
                Serving).
        """
        warmup_path = self.path / WARMUP_FILE
        if not warmup_path.is_file():
            return 0
        count = 0
        for record in tf.data.TFRecordDataset(str(warmup_path)).take(MAX_WARMUP_RECORDS):
            log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            kind = log.WhichOneof("log_type")
            if kind == "predict_log":
                request = log.predict_log.request
                inputs = {key: tensors.to_ndarray(value) for key, value in request.inputs.items()}
                self.predict(request.model_spec.signature_name, inputs, request.output_filter)
            elif kind == "classify_log":
                request = log.classify_log.request
                examples = examples_from_input(request.input)
                self.classify(request.model_spec.signature_name, examples)
            else:
                raise ServingError(
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"warmup record {count} of {warmup_path} is a {kind}; the embedded server "
                    "replays predict_log and classify_log records",
                )
            count += 1
        return count

    def close(self) -> None:
        """Drain and stop the batch threads (the SavedModel is freed with the last reference)."""
        with self._schedulers_lock:
            schedulers, self._schedulers = list(self._schedulers.values()), {}
        for scheduler in schedulers:
            scheduler.close()

    def _call(self, signature_name: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            outputs = self._functions[signature_name](**inputs)
        except Exception as error:  # reported to the caller with its status code
            raise from_exception(error) from None
        return {key: value.numpy() for key, value in outputs.items()}

    def _run(self, signature_name: str, inputs: Mapping[str, np.ndarray],
             deadline: float | None = None) -> dict[str, np.ndarray]:
        if self._batching is None:
            if self._concurrency is None:
                check_deadline(deadline, f"model '{self.name}'")
                return self._call(signature_name, inputs)
            return self._concurrency.run(lambda: self._call(signature_name, inputs), deadline)
        scheduler = self._schedulers.get(signature_name)
        if scheduler is None:
            with self._schedulers_lock:
                scheduler = self._schedulers.get(signature_name)
                if scheduler is None:
                    scheduler = BatchScheduler(
                        lambda batch, key=signature_name: self._call(key, batch),
                        self._batching,
                        name=f"model '{self.name}' version {self.version} ({signature_name})",
                    )
                    self._schedulers[signature_name] = scheduler
        return scheduler.run(inputs, deadline=deadline)


def examples_from_input(
    request_input, max_bytes: int = request_checks.RequestLimits.max_merged_bytes
) -> list[bytes]:
    """The serialized examples of a `tensorflow.serving.Input`, context merged in.

    Raises:
        ServingError: INVALID_ARGUMENT when merging the context would exceed `max_bytes`.
    """
    kind = request_input.WhichOneof("kind")
    if kind == "example_list":
        return [example.SerializeToString() for example in request_input.example_list.examples]
    if kind == "example_list_with_context":
        with_context = request_input.example_list_with_context
        return request_checks.merge_context(
            with_context.context.SerializeToString(),
            [example.SerializeToString() for example in with_context.examples], max_bytes)
    return []
