"""The gRPC services of the embedded server, on the official TF Serving servicer base classes.

`PredictionServicer` answers `Predict`, `Classify` and `GetModelMetadata` (and UNIMPLEMENTED
for `Regress` and `MultiInference`, which exported students have no signature for);
`ModelServicer` answers `GetModelStatus` and `HandleReloadConfigRequest`. Every failure
becomes the status code TF Serving gives, never an exception that escapes the handler.
"""

from __future__ import annotations

import functools
import logging

import grpc
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_management_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from serving import tensors
from serving.errors import ServingError, from_exception
from serving.model_manager import ModelManager
from serving.servable import Servable, examples_from_input
from serving.signatures import PREDICT_SIGNATURE

logger = logging.getLogger(__name__)

SIGNATURE_DEF_FIELD = "signature_def"


def _answers_errors(method):
    """Turn any exception raised by an RPC handler into the matching gRPC status."""

    @functools.wraps(method)
    def handler(self, request, context):
        try:
            return method(self, request, context)
        except Exception as error:
            failure = from_exception(error)
            if failure.code == grpc.StatusCode.INTERNAL:
                logger.exception("%s failed", method.__name__)
            context.abort(failure.code, failure.message)

    return handler


def _response_spec(servable: Servable, signature_name: str = "") -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=servable.name, signature_name=signature_name)
    spec.version.value = servable.version
    return spec


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """`tensorflow.serving.PredictionService` over a `ModelManager`."""

    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager

    @_answers_errors
    def Predict(self, request: predict_pb2.PredictRequest, context) -> predict_pb2.PredictResponse:
        servable = self.manager.resolve(request.model_spec)
        signature_name = request.model_spec.signature_name or PREDICT_SIGNATURE
        try:
            inputs = {key: tensors.to_ndarray(value) for key, value in request.inputs.items()}
        except ValueError as error:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(error)) from None
        outputs = servable.predict(signature_name, inputs, request.output_filter)
        response = predict_pb2.PredictResponse(model_spec=_response_spec(servable,
                                                                         signature_name))
        for key, value in outputs.items():
            tensors.fill_tensor_proto(response.outputs[key], value)
        return response

    @_answers_errors
    def Classify(
        self, request: classification_pb2.ClassificationRequest, context
    ) -> classification_pb2.ClassificationResponse:
        servable = self.manager.resolve(request.model_spec)
        signature_name = request.model_spec.signature_name or PREDICT_SIGNATURE
        classes, scores = servable.classify(signature_name, examples_from_input(request.input))
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
        if not request.metadata_field:
            raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, "GetModelMetadataRequest must "
                               f"specify at least one metadata_field: add '{SIGNATURE_DEF_FIELD}'")
        for field in request.metadata_field:
            if field != SIGNATURE_DEF_FIELD:
                raise ServingError(grpc.StatusCode.INVALID_ARGUMENT, f"Metadata field {field} is "
                                   f"not supported; the only field is '{SIGNATURE_DEF_FIELD}'")
        servable = self.manager.resolve(request.model_spec)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(signature)
        response = get_model_metadata_pb2.GetModelMetadataResponse(
            model_spec=_response_spec(servable)
        )
        response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
        return response

    def Regress(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "Regress is not implemented: exported "
                      "students have no regression signature; use Predict or Classify")

    def MultiInference(self, request, context):
        context.abort(grpc.StatusCode.UNIMPLEMENTED, "MultiInference is not implemented by the "
                      "embedded server; send separate Classify or Predict requests")


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """`tensorflow.serving.ModelService` over a `ModelManager`."""

    def __init__(self, manager: ModelManager) -> None:
        self.manager = manager

    @_answers_errors
    def GetModelStatus(
        self, request: get_model_status_pb2.GetModelStatusRequest, context
    ) -> get_model_status_pb2.GetModelStatusResponse:
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

