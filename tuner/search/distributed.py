"""Distributed search with KerasTuner's own chief/worker mode, one oracle port per search.

KerasTuner reads three environment variables (docs/tuner.md):

    KERASTUNER_TUNER_ID      'chief' for the oracle process, any other unique id for workers
    KERASTUNER_ORACLE_IP     the chief's address, e.g. 127.0.0.1
    KERASTUNER_ORACLE_PORT   the base port: search i of a run is served on base + i

and mimic-tf one more, for long runs: `MIMIC_TF_WORKER_WAIT`, the seconds a worker waits for
the chief to serve a search (default 600).

The chief prepares the teacher and the transfer set, then serves each search's oracle in
turn; workers run the trials. A run has several searches and KerasTuner serves one oracle per
process at a time, so search i uses port `base + i`: a worker never reaches the oracle of a
search the chief already left. A worker skips a search that is complete on disk or that the
chief has moved past (a later port answers). All processes share the output folder.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator, Sequence

import grpc

from mimic_tf.layout import SearchLayout
from tuner.artifacts import search_complete

TUNER_ID = "KERASTUNER_TUNER_ID"
ORACLE_IP = "KERASTUNER_ORACLE_IP"
ORACLE_PORT = "KERASTUNER_ORACLE_PORT"
WORKER_WAIT = "MIMIC_TF_WORKER_WAIT"  # seconds a worker waits for the chief, if not the default
WORKER_WAIT_SECONDS = 600.0  # a worker gives up on a search the chief never serves
POLL_SECONDS = 0.5


class DistributedSetupError(ValueError):
    """KerasTuner's chief/worker variables are set but incomplete or malformed."""


def is_distributed() -> bool:
    """True when KerasTuner's chief/worker variables are set."""
    return ORACLE_IP in os.environ


def is_chief() -> bool:
    """True in the process that serves the oracles."""
    return is_distributed() and "chief" in os.environ.get(TUNER_ID, "")


def is_worker() -> bool:
    """True in a process that runs trials for a chief."""
    return is_distributed() and not is_chief()


def check_environment() -> None:
    """Raise DistributedSetupError naming the missing or bad variable."""
    if not is_distributed():
        return
    for name in (ORACLE_PORT, TUNER_ID):
        if not os.environ.get(name):
            raise DistributedSetupError(
                f"{ORACLE_IP} is set but {name} is not: a distributed search needs "
                f"{TUNER_ID}, {ORACLE_IP} and {ORACLE_PORT}"
            )
    port = os.environ[ORACLE_PORT]
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise DistributedSetupError(f"{ORACLE_PORT}={port!r} is not a port number (1..65535)")
    worker_wait_seconds()


def worker_wait_seconds() -> float:
    """How long a worker waits for the chief to serve a search: `$MIMIC_TF_WORKER_WAIT`, or
    WORKER_WAIT_SECONDS. The chief builds the teacher and transfer set first, and a search is
    served only when the last one's trials have all ended, so a campaign whose transfer set
    or trials take longer than ten minutes sets it higher (scripts/cpu-replication-v2.sh)."""
    text = os.environ.get(WORKER_WAIT, "")
    if not text:
        return WORKER_WAIT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise DistributedSetupError(f"{WORKER_WAIT}={text!r} is not a number of seconds above 0")
    return seconds


def oracle_port() -> int:
    """`KERASTUNER_ORACLE_PORT`: the run's base port, or inside `search_port` the current one."""
    return int(os.environ[ORACLE_PORT])


@contextlib.contextmanager
def search_port(index: int) -> Iterator[None]:
    """Point KerasTuner at search `index`'s oracle (base port + index) while inside."""
    if not is_distributed():
        yield
        return
    base = os.environ[ORACLE_PORT]
    os.environ[ORACLE_PORT] = str(int(base) + index)
    try:
        yield
    finally:
        os.environ[ORACLE_PORT] = base


def _port_answers(port: int, timeout: float = POLL_SECONDS) -> bool:
    channel = grpc.insecure_channel(f"{os.environ[ORACLE_IP]}:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
        return True
    except grpc.FutureTimeoutError:
        return False
    finally:
        channel.close()


def wait_for_chief(base: int, complete: Sequence[bool]) -> None:
    """Block a worker until the chief serves one of the run's searches (its setup is done).

    `complete` says of each search of the run, in run order (mimic searches, then baselines),
    whether it needs no serving; search i is served on port `base + i`."""
    wait = worker_wait_seconds()
    deadline = time.monotonic() + wait
    count = len(complete)
    while not all(complete):
        if any(_port_answers(base + i) for i in range(count) if not complete[i]):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"no chief answered on ports {base}..{base + count - 1} of "
                               f"{os.environ[ORACLE_IP]} for {wait:.0f}s (more: set "
                               f"{WORKER_WAIT} to the seconds a worker may wait)")
        time.sleep(POLL_SECONDS)


def worker_should_join(index: int, count: int, search: SearchLayout, max_trials: int) -> bool:
    """Wait until search `index` is served (True), or is complete or passed by (False)."""
    base = oracle_port()  # called outside `search_port`: the base port
    wait = worker_wait_seconds()
    deadline = time.monotonic() + wait
    while True:
        if search_complete(search, max_trials):
            return False
        if _port_answers(base + index):
            return True
        if any(_port_answers(base + later, 0.1) for later in range(index + 1, count)):
            return False
        if time.monotonic() > deadline:
            print(f"worker: no chief served search {index} for {wait:.0f}s; "
                  "skipping it")
            return False
        time.sleep(POLL_SECONDS)


def serve_oracle(
    oracle, report: Callable[[str], None] | None = None, poll_seconds: float = POLL_SECONDS
) -> None:
    """Serve `oracle` to the workers until its search is over, then stop the server.

    KerasTuner's own `oracle_chief.start_server` with three changes: it checks every
    `poll_seconds` (not every 20 s) whether the last worker has left, it stops the gRPC
    server and frees the port before the chief moves on to the next search, and it
    `report`s each finished trial (one line instead of KerasTuner's tables).

    KerasTuner has no public API for the chief's server: its servicer, gRPC stubs and exit
    test live in `keras_tuner.src` only, so this function is the one place that imports them
    (pyproject.toml bounds keras-tuner below 2 for it).
    """
    from concurrent import futures

    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer, exit_chief

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    servicer = OracleServicer(oracle)
    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)
    server.add_insecure_port(f"{os.environ[ORACLE_IP]}:{oracle_port()}")
    server.start()
    reported = len(oracle.end_order)
    try:
        while not (servicer.stop_triggered and exit_chief(oracle)):
            time.sleep(poll_seconds)
            if report is not None and len(oracle.end_order) != reported:
                reported = len(oracle.end_order)
                best = oracle.get_best_trials(1)
                score = f"{best[0].score:.4f}" if best and best[0].score is not None else "n/a"
                running = ", ".join(f"{t.trial_id} on {tuner_id}"
                                    for tuner_id, t in oracle.ongoing_trials.items())
                report(f"{reported}/{oracle.max_trials} trials finished, best val_accuracy "
                       f"{score}; running: {running or 'none'}")
    finally:
        server.stop(grace=1.0).wait()
