"""Server-side batching: concurrent requests to one signature merged into one call.

Like TF Serving's basic batch scheduler: a request (a "task" of one or more examples) waits in
a queue; a batch thread takes the oldest task and keeps adding queued tasks until the batch
holds `max_batch_size` examples or `batch_timeout_micros` have passed since that oldest task
arrived, then runs the signature once on the concatenated inputs and splits the outputs back.
`num_batch_threads` batches run at once; a task bigger than `max_batch_size` runs alone; when
`allowed_batch_sizes` is set a batch is padded (with copies of its first example) up to the
next allowed size. A full queue answers UNAVAILABLE at once, as TF Serving does. A task whose
deadline has passed (or whose caller stopped waiting) when its batch is formed is dropped
with DEADLINE_EXCEEDED, never run.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

import grpc
import numpy as np

from serving.model_config import BatchingParameters
from serving.server.admission import expired
from serving.server.errors import ServingError

Tensors = dict[str, np.ndarray]


@dataclasses.dataclass
class _Task:
    inputs: Mapping[str, np.ndarray]
    size: int  # examples in this task (leading dimension of its inputs)
    future: Future
    enqueued_at: float  # time.monotonic() when submitted
    deadline: float | None = None  # time.monotonic() after which it is not started


class BatchScheduler:
    """Batches the tasks submitted to one signature of one model version.

    Args:
        run_batch: runs the signature on a dict of batched inputs and returns a dict of numpy
            outputs whose leading dimension is the batch size.
        parameters: batch size, timeout, threads and queue depth.
        name: used in thread names and error messages.
    """

    def __init__(
        self,
        run_batch: Callable[[Mapping[str, np.ndarray]], Tensors],
        parameters: BatchingParameters,
        name: str = "batch",
    ) -> None:
        self._run_batch = run_batch
        self.parameters = parameters.validate()
        self.name = name
        self._queue: collections.deque[_Task] = collections.deque()
        self._queued_examples = 0
        self._condition = threading.Condition()
        self._gather_lock = threading.Lock()
        self._closed = False
        self.expired_tasks = 0  # tasks dropped unrun: deadline passed or caller gone
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-batch-{index}", daemon=True)
            for index in range(parameters.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def queued_examples(self) -> int:
        """Examples waiting in the queue (not yet in a running batch)."""
        return self._queued_examples

    def submit(self, inputs: Mapping[str, np.ndarray], deadline: float | None = None) -> Future:
        """Queue one task; the future resolves to its slice of the batch's outputs.

        Args:
            deadline: `time.monotonic()` instant after which the task is dropped unrun.

        Raises:
            ServingError: UNAVAILABLE when the queue is full or the scheduler is closing.
        """
        size = int(next(iter(inputs.values())).shape[0]) if inputs else 0
        task = _Task(inputs=inputs, size=size, future=Future(), enqueued_at=time.monotonic(),
                     deadline=deadline)
        max_batch = self.parameters.max_batch_size
        with self._condition:
            if self._closed:
                raise ServingError(
                    grpc.StatusCode.UNAVAILABLE,
                    f"{self.name} is being unloaded and takes no new requests; retry, the "
                    "request will go to the version that replaces it",
                )
            # Batches queued with this task, the one being filled included (TF Serving's
            # count); a task into an empty queue is always taken (a big one runs alone).
            batches = -(-(self._queued_examples + size) // max_batch)
            if self._queue and batches > self.parameters.max_enqueued_batches:
                raise ServingError(
                    grpc.StatusCode.UNAVAILABLE,
                    f"the batch scheduling queue of {self.name} is full "
                    f"({self.parameters.max_enqueued_batches} batches of up to {max_batch} "
                    "examples); retry later or raise max_enqueued_batches",
                )
            self._queue.append(task)
            self._queued_examples += size
            self._condition.notify_all()
        return task.future

    def run(self, inputs: Mapping[str, np.ndarray], deadline: float | None = None) -> Tensors:
        """Submit one task and wait for its outputs, at most until `deadline`.

        Raises:
            ServingError: UNAVAILABLE (see `submit`); DEADLINE_EXCEEDED when the deadline
                passes first (the task is then dropped unless its batch already runs).
        """
        future = self.submit(inputs, deadline)
        timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            future.cancel()  # dropped when its batch forms, unless that batch already runs
            raise expired(self.name) from None

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop taking tasks, run the ones already queued, and stop the batch threads."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))

    def _next_batch(self) -> list[_Task] | None:
        """Block until a batch is due, then take its tasks off the queue (None: closed)."""
        timeout_s = self.parameters.batch_timeout_micros / 1e6
        max_batch = self.parameters.max_batch_size
        with self._gather_lock, self._condition:
            while not self._queue:
                if self._closed:
                    return None
                self._condition.wait()
            deadline = self._queue[0].enqueued_at + timeout_s
            while not self._closed and self._queued_examples < max_batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._condition.wait(remaining)
            batch: list[_Task] = []
            batch_size = 0
            now = time.monotonic()
            while self._queue and (not batch or batch_size + self._queue[0].size <= max_batch):
                task = self._queue.popleft()
                self._queued_examples -= task.size
                if not task.future.set_running_or_notify_cancel():
                    self.expired_tasks += 1  # its caller stopped waiting
                elif task.deadline is not None and now >= task.deadline:
                    self.expired_tasks += 1
                    task.future.set_exception(expired(self.name))
                else:
                    batch.append(task)
                    batch_size += task.size
            return batch

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if batch:
                self._process(batch)

    def _padded_size(self, batch_size: int) -> int:
        sizes = self.parameters.allowed_batch_sizes
        index = bisect.bisect_left(sizes, batch_size)
        return sizes[index] if index < len(sizes) else batch_size

    def _process(self, batch: list[_Task]) -> None:
        try:
            total = sum(task.size for task in batch)
            padded = self._padded_size(total)
            if len(batch) == 1 and padded == total:
                batch[0].future.set_result(self._run_batch(batch[0].inputs))
                return
            inputs = {
                key: np.concatenate([task.inputs[key] for task in batch], axis=0)
                for key in batch[0].inputs
            }
            if padded > total and total > 0:
                inputs = {
                    key: np.concatenate([value, np.repeat(value[:1], padded - total, axis=0)])
                    for key, value in inputs.items()
                }
            outputs = self._run_batch(inputs)
            for key, value in outputs.items():
                if np.ndim(value) == 0 or value.shape[0] != padded:
                    raise ServingError(
                        grpc.StatusCode.FAILED_PRECONDITION,
                        f"batching needs every output to have the batch as its first dimension;"
                        f" output '{key}' has shape {list(np.shape(value))} for a batch of "
                        f"{padded}; serve this model without batching",
                    )
            start = 0
            for task in batch:
                stop = start + task.size
                task.future.set_result({key: value[start:stop] for key, value in outputs.items()})
                start = stop
        except BaseException as error:  # every waiting request gets the error, none hangs
            for task in batch:
                if not task.future.done():
                    task.future.set_exception(error)
