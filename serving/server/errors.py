"""The one error type the serving path raises, carrying a gRPC status code like TF Serving's.

Every failure a request can meet (unknown model, bad input, full batch queue, a TensorFlow
runtime error) becomes a `ServingError` with the status code TF Serving would give; the gRPC
servicers turn it into that status and the REST handler into the matching HTTP status.
"""

from __future__ import annotations

import itertools
import logging
import re

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
# Codes no client is ever answered: they say the server failed, or nothing at all.
_NEVER_ANSWERED = frozenset({grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL})
_incidents = itertools.count(1)  # numbers the unexpected failures in the log

logger = logging.getLogger(__name__)


class ServingError(Exception):
    """A request that cannot be answered, with the gRPC status code that says why."""

    def __init__(self, code: grpc.StatusCode, message: str, http_status: int | None = None
                 ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self._http_status = http_status

    @property
    def http_status(self) -> int:
        """The HTTP status the REST API answers (the gRPC code's unless given one)."""
        return self._http_status or HTTP_STATUS_BY_CODE.get(self.code, 400)

    def __repr__(self) -> str:
        return f"ServingError({self.code.name}, {self.message!r})"


def code_from_number(number: int) -> grpc.StatusCode:
    """The gRPC status code with this number (TensorFlow's error codes use the same numbers)."""
    return _CODE_BY_NUMBER.get(int(number), grpc.StatusCode.UNKNOWN)


def describe_name(name: str, limit: int = 100) -> str:
    """A client-chosen name, safe to put in a message: unprintable characters escaped (NUL
    as `\\x00`), cut to `limit` characters with the full length said."""
    shown = "".join(char if char.isprintable() else repr(char)[1:-1] for char in name[:limit])
    return shown if len(name) <= limit else f"{shown}...({len(name)} characters)"


# Lines of a TensorFlow runtime message that are Python stack text, not the error itself.
_TRACE_LINE = re.compile(
    r"^\s*(File \"|Traceback|Graph execution error|Detected at node .* \(most recent call "
    r"last\):|\[\[\{\{)"
)


def clean_tensorflow_message(message: str) -> str:
    """A TensorFlow runtime error's message without the Python stack TensorFlow appends."""
    lines = [line.strip().removeprefix("<stack traces unavailable>").strip()
             for line in str(message).splitlines()]
    return " ".join(line for line in lines if line and not _TRACE_LINE.match(line))


def from_exception(error: BaseException) -> ServingError:
    """Map any exception met while serving a request to a `ServingError`.

    TensorFlow runtime errors keep their code (TF and gRPC number codes alike) and lose the
    Python stack TensorFlow appends to their message; a `ValueError` or `TypeError` raised
    while converting or calling is the caller's bad input (INVALID_ARGUMENT), as is input
    nested too deeply to convert (`RecursionError`); running out of memory is
    RESOURCE_EXHAUSTED. No answer is ever UNKNOWN or INTERNAL, and none carries a Python
    exception name: anything else unexpected (and a TensorFlow error coded UNKNOWN or
    INTERNAL) is logged here with its traceback and answered INVALID_ARGUMENT with a generic
    message and an incident number that finds the log line.
    """
    if isinstance(error, ServingError):
        return error
    tf_code = getattr(error, "error_code", None)
    if tf_code is not None and hasattr(error, "message"):
        code = code_from_number(tf_code)
        if code not in _NEVER_ANSWERED:
            return ServingError(code, clean_tensorflow_message(error.message))
    elif isinstance(error, RecursionError):
        return ServingError(grpc.StatusCode.INVALID_ARGUMENT,
                            "the request is nested too deeply to convert; send flat arrays")
    elif isinstance(error, (ValueError, TypeError)):
        return ServingError(grpc.StatusCode.INVALID_ARGUMENT, str(error))
    incident = next(_incidents)
    if isinstance(error, MemoryError):
        logger.error("incident %d: out of memory answering a request", incident,
                     exc_info=error)
        return ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, "the server has not enough "
                            f"memory for this request (incident {incident}); send a smaller one")
    logger.error("incident %d: unexpected failure answering a request", incident, exc_info=error)
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, "the server could not process this "
                        f"request (incident {incident}, logged server-side); check it against "
                        "the model's signature (GetModelMetadata)")


def load_failure(error: BaseException) -> ServingError:
    """Map an exception met while loading a version to the status `GetModelStatus` reports.

    TensorFlow errors keep their code (without the Python stack in the message), a
    `ServingError` is kept as it is, and anything else is FAILED_PRECONDITION with its message
    but not its exception name (the caller logs the traceback).
    """
    if isinstance(error, ServingError):
        return error
    tf_code = getattr(error, "error_code", None)
    if tf_code is not None and hasattr(error, "message"):
        return ServingError(code_from_number(tf_code), clean_tensorflow_message(error.message))
    return ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                        f"the version could not be loaded: {error}")
