"""The one error type the serving path raises, carrying a gRPC status code like TF Serving's.

Every failure a request can meet (unknown model, bad input, full batch queue, a TensorFlow
runtime error) becomes a `ServingError` with the status code TF Serving would give; the gRPC
servicers turn it into that status and the REST handler into the matching HTTP status.
"""

from __future__ import annotations

import grpc

# HTTP statuses the REST API answers for each gRPC code, as TF Serving's REST handler does.
HTTP_STATUS_BY_CODE: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}

_CODE_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


class ServingError(Exception):
    """A request that cannot be answered, with the gRPC status code that says why."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        """The HTTP status the REST API answers for this error."""
        return HTTP_STATUS_BY_CODE.get(self.code, 500)

    def __repr__(self) -> str:
        return f"ServingError({self.code.name}, {self.message!r})"


def code_from_number(number: int) -> grpc.StatusCode:
    """The gRPC status code with this number (TensorFlow's error codes use the same numbers)."""
    return _CODE_BY_NUMBER.get(int(number), grpc.StatusCode.UNKNOWN)


def from_exception(error: BaseException) -> ServingError:
    """Map any exception met while serving a request to a `ServingError`.

    TensorFlow runtime errors keep their code (TF and gRPC number codes alike); a
    `ValueError` or `TypeError` raised while converting or calling is the caller's bad
    input (INVALID_ARGUMENT); anything else is INTERNAL.
    """
    if isinstance(error, ServingError):
        return error
    tf_code = getattr(error, "error_code", None)
    if tf_code is not None and hasattr(error, "message"):
        return ServingError(code_from_number(tf_code), str(error.message).strip())
    if isinstance(error, (ValueError, TypeError)):
        return ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(error))
    return ServingError(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")
