"""Searches side by side on one machine (`search.parallel`, `tuner.run --parallel N`).

A lane is a `tuner.run` process with its share of the cores (`cores / lanes` TensorFlow
threads) that takes the run's pending searches one at a time, the costliest first, until none
is left. Each search stays what it was in one process: its trials one after another, the
Bayesian oracle informed by the trials before, seeded the same. What runs side by side is
whole searches, so nothing is shared but the run folder, and small nets use the cores far
better two at a time than one net on both (benchmarks/parallel_trials.py: 1.3-2.6x here).

    parent: teacher, transfer set  ->  lanes: the searches, each tested as it ends
        ->  lanes again: the hard-label baselines (each needs its twin's best architecture)
        ->  parent: export, push, frontier, report (reading what the lanes measured)

A lane claims a search by creating `lanes/<search>.claim` exclusively, so two lanes never run
the same one; the parent clears the claims before the lanes start, so a run killed part way
resumes like any other. Lanes print their progress lines with a prefix (`lane 2 | ...`);
each lane's whole output is in `lanes/lane<N>.log`.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from mimic_tf.layout import ExperimentLayout
from mimic_tf.vocabulary import CNN
from tuner.search.cells import Cell

# TensorFlow's C++ log lines ("I0000 00:00:17966... port.cc:153] oneDNN custom operations..."),
# printed by a lane's import: kept in its log, not relayed to the terminal.
TENSORFLOW_LOG_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d")


class LaneFailedError(RuntimeError):
    """A lane ended with an error; the message names its log."""


def lane_count(parallel: int, pending: int, gpus: int) -> int:
    """How many lanes run `pending` searches: `parallel` (0: one a core on a CPU, one where a
    GPU is visible, since lanes would share it), never more than the searches."""
    wanted = parallel if parallel > 0 else (1 if gpus else os.cpu_count() or 1)
    return max(1, min(wanted, pending))


def costliest_first(cells: Sequence[Cell]) -> list[Cell]:
    """The order lanes take searches in: CNNs before MLPs (an epoch costs 5-25x more), larger
    budgets and deeper nets first, so the last search to end is a short one."""
    return sorted(cells, key=lambda c: (c.family == CNN, c.budget, c.depth), reverse=True)


def claim(layout: ExperimentLayout, name: str) -> bool:
    """True when this process is the first to claim search `name`."""
    layout.lanes.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(layout.lanes / f"{name}.claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(descriptor, f"{os.getpid()}\n".encode())
    os.close(descriptor)
    return True


def clear_claims(layout: ExperimentLayout) -> None:
    """Remove every claim (before lanes start: a killed run's claims hold no process)."""
    for path in layout.lanes.glob("*.claim") if layout.lanes.is_dir() else ():
        path.unlink(missing_ok=True)


def lane_command(layout: ExperimentLayout, families: Sequence[str], out: str | Path,
                 phase: str, count: int) -> list[str]:
    """The command of one lane: the run's resolved config (flags applied), its folder."""
    return [sys.executable, "-m", "tuner.run", "--family", ",".join(families),
            "--config", str(layout.config_file), "--out", str(out), "--lane", phase,
            "--lanes", str(count)]


def run_lanes(
    layout: ExperimentLayout,
    families: Sequence[str],
    out: str | Path,
    phase: str,
    count: int,
    log: Callable[[str], None] | None = print,
) -> None:
    """Run `count` lanes of `phase` to their end; their lines go to `log` (None: logs only).
    Raises LaneFailedError when a lane fails, after stopping the others."""
    clear_claims(layout)
    threads = max(1, (os.cpu_count() or 1) // count)
    environment = {**os.environ, "TF_NUM_INTRAOP_THREADS": str(threads),
                   "TF_NUM_INTEROP_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = lane_command(layout, families, out, phase, count)
    if log is not None:
        log(f"{phase}: {count} lanes side by side, {threads} thread{'s' * (threads > 1)} "
            f"each (search.parallel; their logs: {layout.lanes}/lane<N>.log)")
    lanes, readers = [], []
    try:
        for number in range(1, count + 1):
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       text=True, env=environment)
            lanes.append(process)
            reader = threading.Thread(target=_relay, args=(process, number, layout, log),
                                      daemon=True)
            reader.start()
            readers.append(reader)
        failed = _wait_for_all(lanes)
        for reader in readers:
            reader.join()
    finally:
        for process in lanes:
            if process.poll() is None:
                process.terminate()
                process.wait()
        clear_claims(layout)
    if failed is not None:
        number, code = failed
        raise LaneFailedError(
            f"lane {number} of {count} ended with exit {code}: its output is in "
            f"{layout.lanes / f'lane{number}.log'}; run the same command again to go on "
            "(finished trials are kept), or with --parallel 1 to run the searches one after "
            "another in this process")


def _wait_for_all(lanes: Sequence[subprocess.Popen]) -> tuple[int, int] | None:
    """Wait for every lane; the first that fails stops the rest: (its number, exit code)."""
    while True:
        codes = [process.poll() for process in lanes]
        for number, code in enumerate(codes, start=1):
            if code not in (None, 0):
                for process in lanes:
                    if process.poll() is None:
                        process.terminate()
                return number, code
        if all(code == 0 for code in codes):
            return None
        try:
            next(p for p in lanes if p.poll() is None).wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            pass


def _relay(process: subprocess.Popen, number: int, layout: ExperimentLayout,
           log: Callable[[str], None] | None) -> None:
    """Copy a lane's lines into its log file and, prefixed, to `log`."""
    path = layout.lanes / f"lane{number}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as stream:
        for line in process.stdout:
            stream.write(line)
            stream.flush()
            if log is not None and line.strip() and not TENSORFLOW_LOG_LINE.match(line):
                log(f"lane {number} | {line.rstrip()}")
