"""Bounds on the work a server takes: client deadlines, and the limit on unbatched requests.

Without server-side batching each request runs on the thread that received it. A
`ConcurrencyLimit` lets `max_concurrent` of them run at once and `max_waiting` more wait for a
slot; the next one is answered UNAVAILABLE at once (as a full batch queue is), so a flood of
requests costs neither unbounded latency nor unbounded memory. A request whose deadline has
passed by the time it would start is answered DEADLINE_EXCEEDED and not run.

    limit = ConcurrencyLimit(max_concurrent=2, max_waiting=32)
    outputs = limit.run(lambda: signature(**inputs), deadline=deadline_of(context))
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

import grpc

from serving.server.errors import ServingError

Result = TypeVar("Result")


def deadline_of(context: grpc.ServicerContext | None) -> float | None:
    """The `time.monotonic()` instant a gRPC call's deadline falls at (None: no deadline)."""
    if context is None:
        return None
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def expired(what: str) -> ServingError:
    """The DEADLINE_EXCEEDED error for work that was not started because its deadline passed."""
    return ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, f"{what}: the request's deadline "
                        "passed before it could run; it was not run (raise the client timeout)")


def check_deadline(deadline: float | None, what: str) -> None:
    """Raise DEADLINE_EXCEEDED when `deadline` (monotonic seconds) has passed."""
    if deadline is not None and time.monotonic() >= deadline:
        raise expired(what)


class ConcurrencyLimit:
    """At most `max_concurrent` calls run at once and `max_waiting` wait; more are refused.

    Args:
        max_concurrent: calls running at once (the cores TensorFlow should keep busy).
        max_waiting: calls waiting for a slot before new ones get UNAVAILABLE.
        name: used in error messages.
    """

    def __init__(self, max_concurrent: int, max_waiting: int, name: str = "server") -> None:
        if max_concurrent < 1 or max_waiting < 0:
            raise ValueError(f"max_concurrent must be >= 1 and max_waiting >= 0; got "
                             f"{max_concurrent} and {max_waiting}")
        self.max_concurrent = max_concurrent
        self.max_waiting = max_waiting
        self.name = name
        self._slots = threading.Semaphore(max_concurrent)
        self._lock = threading.Lock()
        self._admitted = 0
        self.refused = 0  # calls answered UNAVAILABLE
        self.expired = 0  # calls not run because their deadline passed

    @property
    def admitted(self) -> int:
        """Calls running or waiting now."""
        return self._admitted

    def run(self, call: Callable[[], Result], deadline: float | None = None) -> Result:
        """Run `call` when a slot is free, unless too many wait or `deadline` passes first.

        Raises:
            ServingError: UNAVAILABLE when `max_concurrent + max_waiting` calls are already
                admitted; DEADLINE_EXCEEDED when the deadline passes before a slot is free.
        """
        with self._lock:
            if self._admitted >= self.max_concurrent + self.max_waiting:
                self.refused += 1
                raise ServingError(
                    grpc.StatusCode.UNAVAILABLE,
                    f"{self.name} is at capacity ({self.max_concurrent} requests running, "
                    f"{self.max_waiting} waiting); retry later",
                )
            self._admitted += 1
        try:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not self._slots.acquire(timeout=timeout):
                self.expired += 1
                raise expired(self.name)
            try:
                if deadline is not None and time.monotonic() >= deadline:
                    self.expired += 1
                    raise expired(self.name)
                return call()
            finally:
                self._slots.release()
        finally:
            with self._lock:
                self._admitted -= 1
