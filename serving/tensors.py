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


# The repeated field each dtype's values travel in when `tensor_content` is empty, and the
# dtype that field holds them as (half floats travel as their 16 bits in int32s).
_VALUE_FIELD_BY_ENUM: dict[int, tuple[str, np.dtype]] = {
    types_pb2.DT_FLOAT: ("float_val", np.dtype(np.float32)),
    types_pb2.DT_DOUBLE: ("double_val", np.dtype(np.float64)),
    types_pb2.DT_HALF: ("half_val", np.dtype(np.int64)),
    **{enum: ("int_val", np.dtype(np.int64)) for enum in (
        types_pb2.DT_UINT8, types_pb2.DT_INT8, types_pb2.DT_UINT16, types_pb2.DT_INT16,
        types_pb2.DT_INT32)},
    types_pb2.DT_UINT32: ("uint32_val", np.dtype(np.uint64)),
    types_pb2.DT_INT64: ("int64_val", np.dtype(np.int64)),
    types_pb2.DT_UINT64: ("uint64_val", np.dtype(np.uint64)),
    types_pb2.DT_BOOL: ("bool_val", np.dtype(np.bool_)),
    types_pb2.DT_STRING: ("string_val", np.dtype(object)),
}


def is_decodable(dtype_enum: int) -> bool:
    """Whether requests may carry this dtype (numbers, bools, strings; not resource/variant)."""
    return dtype_enum in _VALUE_FIELD_BY_ENUM


def check_content(proto: tensor_pb2.TensorProto, shape: tuple[int, ...]) -> None:
    """Check that a `TensorProto` of a decodable dtype carries exactly `shape`'s values.

    This looks at lengths only (no copy), so it runs before anything the size of the
    declared shape is allocated. TensorFlow repeats the last value of a short `*_val` field
    to fill the shape; this refuses it instead, so a request never costs more memory than
    its own bytes.

    Raises:
        ValueError: content shorter or longer than the shape (the message says both).
    """
    elements = math.prod(shape)
    dtype = _NUMPY_BY_ENUM.get(proto.dtype)
    if dtype is not None and proto.tensor_content:
        expected_bytes = elements * dtype.itemsize
        if len(proto.tensor_content) != expected_bytes:
            raise ValueError(
                f"tensor_content has {len(proto.tensor_content)} bytes but shape {list(shape)} "
                f"of {dtype_name(proto.dtype)} needs {expected_bytes}"
            )
        return
    field, _ = _VALUE_FIELD_BY_ENUM[proto.dtype]
    count = len(getattr(proto, field))
    if count != elements:
        raise ValueError(
            f"tensor holds {count} values in {field} but shape {list(shape)} needs {elements}; "
            "send one value per element (or the raw bytes in tensor_content)"
        )


def _from_value_field(proto: tensor_pb2.TensorProto, shape: tuple[int, ...]) -> np.ndarray:
    """Decode a `TensorProto` whose values are in its `*_val` field (checked lengths)."""
    field, carrier = _VALUE_FIELD_BY_ENUM[proto.dtype]
    values = getattr(proto, field)
    if proto.dtype == types_pb2.DT_STRING:
        array = np.empty(len(values), dtype=object)
        array[:] = list(values)
        return array.reshape(shape)
    array = np.array(values, dtype=carrier)
    if proto.dtype == types_pb2.DT_HALF:
        return (array & 0xFFFF).astype(np.uint16).view(np.float16).reshape(shape)
    dtype = _NUMPY_BY_ENUM[proto.dtype]
    if dtype.kind in "iu" and array.size and dtype.itemsize < carrier.itemsize:
        info = np.iinfo(dtype)
        if array.min() < info.min or array.max() > info.max:
            raise ValueError(f"{field} holds values outside [{info.min}, {info.max}] of "
                             f"{dtype_name(proto.dtype)}")
    return array.astype(dtype, copy=False).reshape(shape)


def to_ndarray(proto: tensor_pb2.TensorProto) -> np.ndarray:
    """Decode a `TensorProto` into a numpy array.

    Raises:
        ValueError: the proto is malformed (for example `tensor_content` of the wrong length
            for its shape and dtype, a negative dimension, or a dtype with no numpy
            equivalent such as resource or variant).
    """
    if proto.tensor_shape.unknown_rank:
        raise ValueError("tensor declares an unknown rank; send a fully defined shape")
    shape = shape_of(proto)
    if any(size < 0 for size in shape):
        raise ValueError(f"tensor shape {list(shape)} has a negative dimension; send a fully "
                         "defined shape")
    if not is_decodable(proto.dtype):
        raise ValueError(f"tensors of dtype {dtype_name(proto.dtype)} cannot be decoded; send "
                         "numbers, booleans or strings")
    check_content(proto, shape)
    dtype = _NUMPY_BY_ENUM.get(proto.dtype)
    if dtype is not None and proto.tensor_content:
        return np.frombuffer(proto.tensor_content, dtype=dtype).reshape(shape)
    return _from_value_field(proto, shape)
