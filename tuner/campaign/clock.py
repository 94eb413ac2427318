"""A unit's clock: the seconds a unit has run, across the runs that resumed it.

A unit that a stop cuts goes on, in the next run on the same machine, from what its run folder
kept (a search's ended trials and epoch backups, a member's epoch backups), so the time before
the cut is part of the unit's cost. The clock is a small file in that run folder, rewritten
every `every` seconds while the unit runs (a kill loses at most that much), read back when the
same unit starts again, and deleted once the unit's line is in units.csv. Where the run folder
is lost, the work it held is lost with it, and the unit's time starts again from zero: what it
cost there belongs to the lost run, not to the unit that ends.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from mimic_tf.files import atomic_write_text


class UnitClock:
    """Times one unit; `seconds` counts the earlier runs of the same unit that `path` kept.

        with UnitClock(layout.unit_clock, "cnn-d3-b1M") as clock:
            ...                    # the unit runs; the file is rewritten every minute
        record(clock.seconds)      # then clock.clear() once the unit's line is written
    """

    def __init__(self, path: Path, unit: str, every: float = 60.0) -> None:
        self.path = Path(path)
        self.unit = unit
        self.every = every
        self.before = self._read_before()
        self._started: float | None = None
        self._stopped: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read_before(self) -> float:
        """The seconds an earlier, cut run of this unit saved; 0 for another unit or none."""
        try:
            saved = json.loads(self.path.read_text())
            return float(saved["seconds"]) if saved.get("unit") == self.unit else 0.0
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return 0.0

    @property
    def seconds(self) -> float:
        """This unit's seconds so far: the earlier runs' and this one's."""
        if self._started is None:
            return self.before
        end = self._stopped if self._stopped is not None else time.perf_counter()
        return self.before + end - self._started

    def save(self) -> None:
        """Write the unit's seconds so far (write, then rename)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps({"unit": self.unit,
                                                 "seconds": round(self.seconds, 1)}) + "\n")

    def _tick(self) -> None:
        while not self._stop.wait(self.every):
            self.save()

    def __enter__(self) -> UnitClock:
        self._started = time.perf_counter()
        self.save()
        self._thread = threading.Thread(target=self._tick, name="unit-clock", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._stopped = time.perf_counter()
        self.save()  # a failed unit resumes later with this time counted

    def clear(self) -> None:
        """Forget the unit's time: its line is recorded."""
        self.path.unlink(missing_ok=True)
