"""Request checks, in TF Serving's order, done before anything the size of a request is built.

A `Predict` request is checked against the signature def it names: each input's name, dtype,
rank and shape (INVALID_ARGUMENT naming what was expected and what was sent), then the
declared element count against `RequestLimits.max_tensor_elements`, then the length of the
content against the declared shape. Only then is the tensor decoded, so a request declaring a
terabyte of pixels with no data costs no more than its own bytes. The model, version and
signature (NOT_FOUND) are resolved before, by the caller.

    limits = RequestLimits.from_message_bytes(64 << 20)
    inputs = decode_inputs(request.inputs, servable.signature_def(name), name, limits)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping, Sequence

import grpc
import numpy as np
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from serving import tensors
from serving.server.errors import ServingError


@dataclasses.dataclass(frozen=True)
class RequestLimits:
    """How large one request's tensors may be.

    `max_tensor_elements` defaults to the message size limit: every element of an honest
    request takes at least one byte of it (a uint8 in `tensor_content`, a packed bool), so a
    larger declared count cannot be the client's data.
    """

    max_tensor_elements: int = 64 * 1024 * 1024  # elements one input tensor may declare
    max_merged_bytes: int = 64 * 1024 * 1024  # tf.Examples once their context is merged in

    @classmethod
    def from_message_bytes(cls, max_message_bytes: int,
                           max_tensor_elements: int | None = None) -> RequestLimits:
        """The limits for a server whose messages are at most `max_message_bytes`."""
        return cls(max_tensor_elements=max_tensor_elements or max_message_bytes,
                   max_merged_bytes=max_message_bytes)


def invalid(message: str) -> ServingError:
    """An INVALID_ARGUMENT `ServingError`."""
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def format_shape(shape_proto: tensor_shape_pb2.TensorShapeProto) -> str:
    """A signature's shape as TF Serving prints it (`[-1, 32, 32, 3]`, `<any shape>`)."""
    if shape_proto.unknown_rank:
        return "<any shape>"
    return "[" + ", ".join(str(dim.size) for dim in shape_proto.dim) + "]"


def shape_matches(shape: tuple[int, ...], shape_proto: tensor_shape_pb2.TensorShapeProto) -> bool:
    """Whether a concrete shape fits a signature's shape (-1: any size)."""
    if shape_proto.unknown_rank:
        return True
    if len(shape) != len(shape_proto.dim):
        return False
    pairs = zip(shape_proto.dim, shape, strict=True)
    return all(dim.size < 0 or dim.size == size for dim, size in pairs)


def check_input_names(signature: meta_graph_pb2.SignatureDef, signature_name: str,
                      sent: Iterable[str]) -> None:
    """Every input the signature takes is sent, and nothing else (TF Serving's message)."""
    expected = signature.inputs
    sent = sorted(sent)
    missing = sorted(set(expected) - set(sent))
    extra = sorted(set(sent) - set(expected))
    if missing or extra:
        raise invalid(
            f"input size does not match signature: {len(sent)}!={len(expected)} "
            f"len({[_short(key) for key in sent]}) != len({sorted(expected)}). Sent extra: "
            f"{[_short(key) for key in extra]}. Missing but required: {missing}. Signature "
            f"'{signature_name}' takes: " + ", ".join(
                f"'{key}' {tensors.dtype_name(info.dtype)} {format_shape(info.tensor_shape)}"
                for key, info in sorted(expected.items())
            ),
        )


def _short(name: str, limit: int = 64) -> str:
    return name if len(name) <= limit else f"{name[:limit]}...({len(name)} characters)"


def _dtype_mismatch(key: str, signature_name: str, expected: int, sent: int) -> ServingError:
    return invalid(
        f"input '{key}' of signature '{signature_name}' expects dtype "
        f"{tensors.dtype_name(expected)} but {tensors.dtype_name(sent)} was sent; send the "
        f"tensor as {tensors.dtype_name(expected)}"
    )


def _check_shape(key: str, signature_name: str, shape: tuple[int, ...],
                 info: meta_graph_pb2.TensorInfo) -> None:
    if not shape_matches(shape, info.tensor_shape):
        raise invalid(
            f"input '{key}' of signature '{signature_name}' expects shape "
            f"{format_shape(info.tensor_shape)} (-1: any size) but shape {list(shape)} was sent"
        )


def check_tensor_proto(key: str, proto: tensor_pb2.TensorProto, info: meta_graph_pb2.TensorInfo,
                       signature_name: str, limits: RequestLimits) -> tuple[int, ...]:
    """Check one input `TensorProto` against its signature entry; return its shape.

    Order: dtype, a declared shape (known rank, no negative size), the shape against the
    signature's, the element count against `limits`, the content length against the shape.
    Nothing proportional to the declared shape is allocated.

    Raises:
        ServingError: INVALID_ARGUMENT naming what was expected and what was sent.
    """
    if proto.dtype != info.dtype:
        raise _dtype_mismatch(key, signature_name, info.dtype, proto.dtype)
    if not tensors.is_decodable(proto.dtype):
        raise invalid(f"input '{key}' has dtype {tensors.dtype_name(proto.dtype)}, which a "
                      "request cannot carry; send numbers, booleans or strings")
    if proto.tensor_shape.unknown_rank:
        raise invalid(f"input '{key}' declares an unknown rank; send its shape, "
                      f"{format_shape(info.tensor_shape)}")
    shape = tensors.shape_of(proto)
    if any(size < 0 for size in shape):
        raise invalid(f"input '{key}' has shape {list(shape)} with a negative dimension; send "
                      f"a fully defined shape matching {format_shape(info.tensor_shape)}")
    _check_shape(key, signature_name, shape, info)
    elements = math.prod(shape)
    if elements > limits.max_tensor_elements:
        raise invalid(f"input '{key}' declares shape {list(shape)}: {elements} elements, more "
                      f"than the {limits.max_tensor_elements} one tensor may have (the server's "
                      "message size limit); send smaller batches")
    try:
        tensors.check_content(proto, shape)
    except ValueError as error:
        raise invalid(f"input '{key}': {error}") from None
    return shape


def decode_inputs(inputs: Mapping[str, tensor_pb2.TensorProto],
                  signature: meta_graph_pb2.SignatureDef, signature_name: str,
                  limits: RequestLimits) -> dict[str, np.ndarray]:
    """Check a request's input tensors against a signature def, then decode them.

    Raises:
        ServingError: INVALID_ARGUMENT for a missing or extra input or a tensor that does not
            fit its signature entry or `limits` (see `check_tensor_proto`).
    """
    check_input_names(signature, signature_name, inputs)
    for key, proto in inputs.items():
        check_tensor_proto(key, proto, signature.inputs[key], signature_name, limits)
    try:
        return {key: tensors.to_ndarray(proto) for key, proto in inputs.items()}
    except ValueError as error:
        raise invalid(str(error)) from None


def merge_context(context: bytes, examples: Sequence[bytes], max_bytes: int) -> list[bytes]:
    """Each serialized example with the serialized context prepended, as TF Serving merges
    `example_list_with_context`; refused before merging when that would exceed `max_bytes`
    (a large context shared by many tiny examples would otherwise multiply a request's size).

    Raises:
        ServingError: INVALID_ARGUMENT when the merged examples would exceed `max_bytes`.
    """
    if not context:
        return list(examples)
    merged = len(context) * len(examples) + sum(len(example) for example in examples)
    if merged > max_bytes:
        raise invalid(f"{len(examples)} examples sharing a context of {len(context)} bytes "
                      f"make {merged} bytes once merged, more than the {max_bytes} allowed; "
                      "send fewer examples per request or a smaller context")
    return [context + example for example in examples]


def check_arrays(signature: meta_graph_pb2.SignatureDef, signature_name: str,
                 inputs: Mapping[str, np.ndarray]) -> None:
    """Check decoded inputs (REST, warmup) against a signature def: names, dtypes, shapes.

    Raises:
        ServingError: INVALID_ARGUMENT naming the expected input, dtype or shape.
    """
    check_input_names(signature, signature_name, inputs)
    for key, value in inputs.items():
        info = signature.inputs[key]
        if not tensors.is_decodable(info.dtype):
            raise invalid(f"input '{key}' of signature '{signature_name}' has dtype "
                          f"{tensors.dtype_name(info.dtype)}, which a request cannot carry")
        expected_dtype = tensors.numpy_dtype(info.dtype)
        is_string = expected_dtype.kind == "O"
        if (is_string and value.dtype.kind not in "OSU") or (
            not is_string and value.dtype != expected_dtype
        ):
            raise _dtype_mismatch(key, signature_name, info.dtype, tensors.dtype_enum_of(value))
        _check_shape(key, signature_name, tuple(value.shape), info)
