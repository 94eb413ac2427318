"""Conversions between numpy arrays and `tensorflow.TensorProto`, fast on the serving path.

`tf.make_tensor_proto` and `tf.make_ndarray` are general but slow for the small tensors a
batch-1 request carries; numeric tensors here go through `tensor_content` (raw bytes, as TF
Serving writes its responses) and `numpy.frombuffer`, and everything else (the `*_val`
fields, strings, half floats) falls back to TensorFlow's own converters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2

# Numeric dtypes sent as raw `tensor_content` bytes, keyed both ways.
_NUMPY_BY_ENUM: dict[int, np.dtype] = {
    types_pb2.DT_FLOAT: np.dtype(np.float32),
    types_pb2.DT_DOUBLE: np.dtype(np.float64),
    types_pb2.DT_HALF: np.dtype(np.float16),
    types_pb2.DT_UINT8: np.dtype(np.uint8),
    types_pb2.DT_INT8: np.dtype(np.int8),
    types_pb2.DT_UINT16: np.dtype(np.uint16),
    types_pb2.DT_INT16: np.dtype(np.int16),
    types_pb2.DT_UINT32: np.dtype(np.uint32),
    types_pb2.DT_INT32: np.dtype(np.int32),
    types_pb2.DT_UINT64: np.dtype(np.uint64),
    types_pb2.DT_INT64: np.dtype(np.int64),
    types_pb2.DT_BOOL: np.dtype(np.bool_),
}
_ENUM_BY_NUMPY: dict[np.dtype, int] = {dtype: enum for enum, dtype in _NUMPY_BY_ENUM.items()}


def dtype_name(dtype_enum: int) -> str:
    """The TensorFlow name of a `DataType` enum value (`uint8`, `float32`, `string`...)."""
    try:
        return tf.dtypes.as_dtype(dtype_enum).name
    except TypeError:
        return f"<unknown dtype {dtype_enum}>"


def numpy_dtype(dtype_enum: int) -> np.dtype:
    """The numpy dtype TensorFlow uses for a `DataType` enum value (object for strings)."""
    if dtype_enum in _NUMPY_BY_ENUM:
        return _NUMPY_BY_ENUM[dtype_enum]
    return np.dtype(tf.dtypes.as_dtype(dtype_enum).as_numpy_dtype)


def dtype_enum_of(array: np.ndarray) -> int:
    """The `DataType` enum value of a numpy array's dtype (strings and bytes are DT_STRING)."""
    if array.dtype.kind in "OSU":
        return types_pb2.DT_STRING
    if array.dtype in _ENUM_BY_NUMPY:
        return _ENUM_BY_NUMPY[array.dtype]
    return tf.dtypes.as_dtype(array.dtype).as_datatype_enum


def shape_of(proto: tensor_pb2.TensorProto) -> tuple[int, ...]:
    """The shape a `TensorProto` declares."""
    return tuple(dim.size for dim in proto.tensor_shape.dim)


def fill_tensor_proto(proto: tensor_pb2.TensorProto, array: np.ndarray | Sequence) -> None:
    """Encode an array into an empty `TensorProto` in place (avoids a copy into a map entry).

    Numeric arrays go to `tensor_content`, strings and bytes to `string_val`.
    """
    array = np.asarray(array)
    dims = proto.tensor_shape.dim
    for size in array.shape:
        dims.add().size = size
    if array.dtype.kind in "OSU":
        proto.dtype = types_pb2.DT_STRING
        proto.string_val.extend(
            value if isinstance(value, bytes) else str(value).encode("utf-8")
            for value in array.reshape(-1).tolist()
        )
    elif array.dtype in _ENUM_BY_NUMPY:
        proto.dtype = _ENUM_BY_NUMPY[array.dtype]
        proto.tensor_content = array.tobytes()  # C order whatever the array's layout
    else:
        proto.CopyFrom(tf.make_tensor_proto(array))


def to_tensor_proto(array: np.ndarray | Sequence) -> tensor_pb2.TensorProto:
    """Encode an array as a `TensorProto` (numeric: `tensor_content`; strings: `string_val`)."""
    proto = tensor_pb2.TensorProto()
    fill_tensor_proto(proto, array)
    return proto


def to_ndarray(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """Decode a `TensorProto` into a numpy array.

    Raises:
        ValueError: the proto is malformed (for example `tensor_content` of the wrong length
            for its shape and dtype, or a negative dimension).
    """
    shape = shape_of(proto)
    if any(size < 0 for size in shape):
        raise ValueError(f"tensor shape {list(shape)} has a negative dimension; send a fully "
                         "defined shape")
    dtype = _NUMPY_BY_ENUM.get(proto.dtype)
    if dtype is not None and proto.tensor_content:
        expected_bytes = math.prod(shape) * dtype.itemsize
        if len(proto.tensor_content) != expected_bytes:
            raise ValueError(
                f"tensor_content has {len(proto.tensor_content)} bytes but shape {list(shape)} "
                f"of {dtype_name(proto.dtype)} needs {expected_bytes}"
            )
        return np.frombuffer(proto.tensor_content, dtype=dtype).reshape(shape)
    try:
        return tf.make_ndarray(proto)
    except (TypeError, ValueError) as error:
        raise ValueError(f"cannot decode tensor of dtype {dtype_name(proto.dtype)} and shape "
                         f"{list(shape)}: {error}") from None
