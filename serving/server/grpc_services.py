"""The gRPC services of the embedded server, on the official TF Serving servicer base classes.

`PredictionServicer` answers `Predict`, `Classify` and `GetModelMetadata` (and UNIMPLEMENTED
for `Regress` and `MultiInference`, which exported students have no signature for);
`ModelServicer` answers `GetModelStatus` and `HandleReloadConfigRequest`. Every failure
becomes the status code TF Serving gives, never an exception that escapes the handler, never
UNKNOWN or INTERNAL. `add_services` registers both with deserializers that answer bytes which
are not the request type INVALID_ARGUMENT (gRPC itself would answer INTERNAL).
"""

from __future__ import annotations

import functools

import grpc
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from serving import tensors
from serving.server import request_checks
from serving.server.admission import check_deadline, deadline_of
from serving.server.errors import ServingError, describe_name, from_exception
from serving.server.model_manager import ModelManager
from serving.server.request_checks import RequestLimits
from serving.server.servable import Servable, examples_from_input
from serving.signatures import PREDICT_SIGNATURE

SIGNATURE_DEF_FIELD = "signature_def"


class _Undecodable:
    """What a request whose bytes are not its message type is handed to the handler as."""

    def __init__(self, type_name: str, error: str) -> None:
        self.type_name = type_name
        self.error = error


def _safe_deserializer(message_type):
    """`message_type.FromString`, answering undecodable bytes instead of raising in gRPC.

    gRPC answers a deserializer's exception with INTERNAL; this hands `_Undecodable` to the
    handler, which answers INVALID_ARGUMENT.
    """
    def deserialize(data: bytes):
        try:
            return message_type.FromString(data)
        except Exception as error:  # DecodeError, invalid UTF-8 in a string field, ...
            return _Undecodable(message_type.DESCRIPTOR.full_name, str(error))

    return deserialize


def _answers_errors(method):
    """Turn any exception raised by an RPC handler into the matching gRPC status.

    Undecodable requests are INVALID_ARGUMENT; a call whose deadline already passed is not
    started (DEADLINE_EXCEEDED); unexpected failures are logged (see `from_exception`).
    """

    @functools.wraps(method)
    def handler(self, request, context):
        try:
            if isinstance(request, _Undecodable):
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"the request is not a "
                                   f"valid {request.type_name}: {request.error}")
            check_deadline(deadline_of(context), method.__name__)
            return method(self, request, context)
        except Exception as error:
            failure = from_exception(error)
        context.abort(failure.code, failure.message)

    return handler


def _require_model_spec(request) -> None:
    """INVALID_ARGUMENT for a request with no `model_spec`, as TF Serving answers."""
    if not request.HasField("model_spec"):
        raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Missing ModelSpec: set "
                           "model_spec.name to the model to call")


def _response_spec(servable: Servable, signature_name: str = "") -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=servable.name, signature_name=signature_name)
    spec.version.value = servable.version
    return spec


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """`tensorflow.serving.PredictionService` over a `ModelManager`."""

    def __init__(self, manager: ModelManager, limits: RequestLimits | None = None) -> None:
        self.manager = manager
        self.limits = limits or RequestLimits()

    @_answers_errors
    def Predict(self, request: predict_pb2.PredictRequest, context) -> predict_pb2.PredictResponse:
        _require_model_spec(request)
        servable = self.manager.resolve(request.model_spec)
        signature_name = request.model_spec.signature_name or PREDICT_SIGNATURE
        signature = servable.signature_def(signature_name)
        inputs = request_checks.decode_inputs(request.inputs, signature, signature_name,
                                              self.limits)
        outputs = servable.predict(signature_name, inputs, request.output_filter,
                                   deadline=deadline_of(context), checked=True)
        response = predict_pb2.PredictResponse(model_spec=_response_spec(servable,
                                                                         signature_name))
        for key, value in outputs.items():
            tensors.fill_tensor_proto(response.outputs[key], value)
        return response

    @_answers_errors
    def Classify(
        self, request: classification_pb2.ClassificationRequest, context
    ) -> classification_pb2.ClassificationResponse:
        _require_model_spec(request)
        servable = self.manager.resolve(request.model_spec)
        signature_name = request.model_spec.signature_name or PREDICT_SIGNATURE
        examples = examples_from_input(request.input, self.limits.max_merged_bytes)
        classes, scores = servable.classify(signature_name, examples,
                                            deadline=deadline_of(context))
        response = classification_pb2.ClassificationResponse(
            model_spec=_response_spec(servable, signature_name)
        )
        num_examples = len(scores) if scores is not None else len(classes)
        for row in range(num_examples):
            classifications = response.result.classifications.add()
            num_classes = scores.shape[1] if scores is not None else classes.shape[1]
            for column in range(num_classes):
                label = classes[row, column] if classes is not None else b""
                classifications.classes.add(
                    label=label.decode("utf-8") if isinstance(label, bytes) else str(label),
                    score=float(scores[row, column]) if scores is not None else 0.0,
                )
        return response

    @_answers_errors
    def GetModelMetadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, context
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        _require_model_spec(request)
        if not request.metadata_field:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "GetModelMetadataRequest must "
                               f"specify at least one metadata_field: add '{SIGNATURE_DEF_FIELD}'")
        for field in request.metadata_field:
            if field != SIGNATURE_DEF_FIELD:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "Metadata field "
                                   f"{describe_name(field)} is not supported; the only field "
                                   f"is '{SIGNATURE_DEF_FIELD}'")
        servable = self.manager.resolve(request.model_spec)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(signature)
        response = get_model_metadata_pb2.GetModelMetadataResponse(
            model_spec=_response_spec(servable)
        )
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
        return response

    @_answers_errors
    def Regress(self, request, context):
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED, "Regress is not implemented: exported "
                           "students have no regression signature; use Predict or Classify")

    @_answers_errors
    def MultiInference(self, request, context):
        raise ServingError(grpc.StatusCode.UNIMPLEMENTED, "MultiInference is not implemented by "
                           "the embedded server; send separate Classify or Predict requests")


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """`tensorflow.serving.ModelService` over a `ModelManager`."""

    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager

    @_answers_errors
    def GetModelStatus(
        self, request: get_model_status_pb2.GetModelStatusRequest, context
    ) -> get_model_status_pb2.GetModelStatusResponse:
        _require_model_spec(request)
        response = get_model_status_pb2.GetModelStatusResponse()
        for state in self.manager.version_states(request.model_spec):
            status = response.model_version_status.add(version=state.version, state=state.state)
            status.status.error_code = state.error_code.value[0]
            status.status.error_message = state.error_message
        return response

    @_answers_errors
    def HandleReloadConfigRequest(
        self, request: model_management_pb2.ReloadConfigRequest, context
    ) -> model_management_pb2.ReloadConfigResponse:
        self.manager.reload(request.config)
        return model_management_pb2.ReloadConfigResponse()



PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"
# Each service's methods: (request type, response type), as the official stubs declare them.
_METHODS = {
    PREDICTION_SERVICE: {
        "Classify": (classification_pb2.ClassificationRequest,
                     classification_pb2.ClassificationResponse),
        "Regress": (regression_pb2.RegressionRequest, regression_pb2.RegressionResponse),
        "Predict": (predict_pb2.PredictRequest, predict_pb2.PredictResponse),
        "MultiInference": (inference_pb2.MultiInferenceRequest,
                           inference_pb2.MultiInferenceResponse),
        "GetModelMetadata": (get_model_metadata_pb2.GetModelMetadataRequest,
                             get_model_metadata_pb2.GetModelMetadataResponse),
    },
    MODEL_SERVICE: {
        "GetModelStatus": (get_model_status_pb2.GetModelStatusRequest,
                           get_model_status_pb2.GetModelStatusResponse),
        "HandleReloadConfigRequest": (model_management_pb2.ReloadConfigRequest,
                                      model_management_pb2.ReloadConfigResponse),
    },
}


def add_services(server: grpc.Server, manager: ModelManager,
                 limits: RequestLimits | None = None) -> None:
    """Register both services on `server`, as the official `add_*_to_server` functions do,
    but with deserializers that turn undecodable bytes into INVALID_ARGUMENT."""
    servicers = {PREDICTION_SERVICE: PredictionServicer(manager, limits),
                 MODEL_SERVICE: ModelServicer(manager)}
    for service, methods in _METHODS.items():
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(
                getattr(servicers[service], name),
                request_deserializer=_safe_deserializer(request_type),
                response_serializer=response_type.SerializeToString,
            )
            for name, (request_type, response_type) in methods.items()
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
        server.add_registered_method_handlers(service, handlers)
