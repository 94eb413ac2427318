"""Memory across trials: does a long search grow the process without bound?

Runs 30 smoke trials in one process (configs/smoke.yaml: synthetic images, a 30k-parameter
budget, 1 epoch per trial; 15 trials of an MLP-2 search, then 15 of a CNN-1 search, random
tuner, so every trial builds a student of different widths) through `tuner.experiment`, and
reads the resident set size (RSS, /proc/self/statm) when each trial ends.

Reported: RSS after the first and after the last trial, and
`rss_growth = rss_last / rss_first - 1` (the tuner promises < 0.25).

Measured on: 2-core x86_64 CPU VM (shared), 24 GB RAM, no GPU; Python 3.11, TensorFlow 2.21,
Keras 3.15.1, KerasTuner 1.4.8; one run per invocation. Result of one run there:
RSS 924 MB after trial 1, 1041 MB after trial 30, rss_growth 0.127, 55 s.

    python benchmarks/tuner_memory.py [--trials 30] [--out /tmp/tuner-memory]

The last line printed is one JSON object.
"""

from __future__ import annotations

import mimic_tf  # noqa: F401  (first: sets oneDNN's default before TensorFlow loads)

# isort: split

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mimic_tf.config import load_config  # noqa: E402

GROWTH_LIMIT = 0.25


def rss_bytes() -> int:
    """Resident set size of this process now."""
    with open("/proc/self/statm") as stream:
        resident_pages = int(stream.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30, help="trials in all (default 30)")
    parser.add_argument("--out", default=None, help="output root (default: a temporary dir)")
    args = parser.parse_args(argv)

    import keras
    import tensorflow as tf

    import tuner.experiment as experiment
    from tuner.search.progress import Progress

    samples: list[int] = []

    class MeasuringProgress(Progress):
        def trial_done(self, seconds: float, score: float | None) -> None:
            super().trial_done(seconds, score)
            samples.append(rss_bytes())

    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="tuner-memory-"))
    started = time.perf_counter()
    per_search = args.trials // 2
    for family, depth, trials in (("mlp", 2, per_search), ("cnn", 1, args.trials - per_search)):
        key = "search.mlp_depths" if family == "mlp" else "search.cnn_depths"
        config = load_config("smoke", overrides={
            key: [depth], "search.trials": trials, "search.tuner": "random",
            "search.top_k": 1, "search.export": False,
        })
        experiment.run_experiment(config, (family,), out, verbose=0,
                                  progress_class=MeasuringProgress)
    seconds = time.perf_counter() - started
    if not args.out:
        shutil.rmtree(out, ignore_errors=True)

    growth = samples[-1] / samples[0] - 1.0
    result = {
        "benchmark": "tuner_memory",
        "trials": len(samples),
        "rss_first_mb": round(samples[0] / 2**20, 1),
        "rss_last_mb": round(samples[-1] / 2**20, 1),
        "rss_max_mb": round(max(samples) / 2**20, 1),
        "rss_growth": round(growth, 4),
        "limit": GROWTH_LIMIT,
        "ok": growth < GROWTH_LIMIT,
        "seconds": round(seconds, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                     "python": platform.python_version()},
    }
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
