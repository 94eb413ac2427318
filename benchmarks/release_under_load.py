"""Benchmark: a release under load. Clients asking for label `stable` never see a failure.

Claim checked: while `--clients` threads send batch-1 Predict requests for the version label
`stable` back to back to a live server (a separate `python -m serving.server` process polling
`models.config` every 0.2 s), the release gate pushes a second student (canary), refuses a
worse one, `promote` makes the canary stable and `rollback` takes stable back, and not one
request fails (JSON key `failures`, target 0). Each phase reports the versions its answers came
from: before the promote only the first version, between the promote taking effect and the
rollback only the second, after the rollback took effect only the first.

    python benchmarks/release_under_load.py \
        --first runs/default/models/cnn-d1-b100k/1 --second runs/default/models/cnn-d2-b100k/1 \
        --worse runs/default/models/mlp-d1-b100k/1 [--data auto] [--limit 2000]

The serving base is a temporary folder (or `--serving-base`). The gate evaluates on the first
`--limit` validation images. Prints progress, the `status` table, then one JSON object last.
Reference run (2-core AMD EPYC, no GPU, Python 3.11, TF 2.21, 1 run): see docs/serving.md.
"""

from __future__ import annotations

import mimic_tf  # noqa: F401  (first: sets oneDNN's default before TensorFlow loads)

# isort: split

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mimic_tf.data import load_splits  # noqa: E402
from serving.client import ServingClient, predict_request  # noqa: E402
from serving.release.evaluator import Thresholds  # noqa: E402
from serving.release.gate import release_candidate  # noqa: E402
from serving.release.infra_validation import free_loopback_port  # noqa: E402
from serving.release.serving_base import promote, rollback  # noqa: E402
from serving.release.status import format_status, status_rows  # noqa: E402


class StableClients:
    """Threads sending Predict(label=stable) back to back, recording every answer."""

    def __init__(self, target: str, image, count: int) -> None:
        self.client = ServingClient(target, timeout_s=30)
        self.request = predict_request("student", image, version_label="stable",
                                       output_filter=["classes"])
        self.answers: list[tuple[float, float, int]] = []  # started, ended, version
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(count)]

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                response = self.client.prediction.Predict(self.request, timeout=30)
                self.answers.append((started, time.monotonic(),
                                     response.model_spec.version.value))
            except Exception as error:  # noqa: BLE001 - every failure is the measurement
                self.failures.append(repr(error)[:300])

    def stable_version(self) -> int:
        return self.client.prediction.Predict(self.request, timeout=30).model_spec.version.value

    def wait_for(self, version: int, timeout_s: float = 60.0) -> float:
        deadline = time.monotonic() + timeout_s
        while self.stable_version() != version:
            if time.monotonic() > deadline:
                raise TimeoutError(f"stable did not become version {version}")
            time.sleep(0.02)
        return time.monotonic()

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self.client.close()


def versions_between(answers, after: float, before: float) -> list[int]:
    """The versions of the answers to requests sent after `after` and answered before `before`."""
    return sorted({version for started, ended, version in answers
                   if started > after and ended < before})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", type=Path, default=Path("runs/default/models/cnn-d1-b100k/1"))
    parser.add_argument("--second", type=Path, default=Path("runs/default/models/cnn-d2-b100k/1"))
    parser.add_argument("--worse", type=Path, default=Path("runs/default/models/mlp-d1-b100k/1"))
    parser.add_argument("--serving-base", type=Path)
    parser.add_argument("--data", default="auto")
    parser.add_argument("--limit", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    base = args.serving_base or Path(tempfile.mkdtemp(prefix="release-under-load-"))
    splits = load_splits(source=args.data)
    images = splits.validation_images[: args.limit]
    labels = splits.validation_labels[: args.limit]
    data = f"{splits.source} validation ({len(images)} images)"
    gate = {"data": data, "latency_requests": 300}

    first = release_candidate(args.first, base, "student", images, labels,
                              Thresholds(min_accuracy=0.3), **gate)
    port = free_loopback_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "serving.server", "--model-config", str(base / "models.config"),
         "--port", str(port), "--rest-port", "0", "--backend", "embedded",
         "--file-system-poll-wait-seconds", "0", "--model-config-poll-wait-seconds", "0.2"],
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    clients = StableClients(f"127.0.0.1:{port}", images[:1], args.clients)
    try:
        with ServingClient(f"127.0.0.1:{port}") as probe:
            probe.wait_until_available("student", timeout_s=120)
        clients.start()
        started = time.monotonic()
        second = release_candidate(args.second, base, "student", images, labels,
                                   Thresholds(max_accuracy_drop=0.05), **gate)
        refused = release_candidate(args.worse, base, "student", images, labels,
                                    Thresholds(max_accuracy_drop=0.01), **gate)
        promote_called = time.monotonic()
        promote(base, "student")
        promoted_at = clients.wait_for(second.version)
        time.sleep(2.0)
        rollback_called = time.monotonic()
        rollback(base, "student")
        rolled_back_at = clients.wait_for(first.version)
        time.sleep(2.0)
        finished = time.monotonic()
    finally:
        clients.stop()
        server.terminate()
        server.wait(timeout=30)
    print(format_status(status_rows(base, "student")), end="")
    answers = clients.answers
    print(json.dumps({
        "serving_base": str(base),
        "pushed": [first.version, second.version],
        "refused_reasons": refused.reasons,
        "requests": len(answers) + len(clients.failures),
        "failures": len(clients.failures),
        "first_failures": clients.failures[:3],
        "seconds_under_load": round(finished - started, 1),
        "versions_before_promote": versions_between(answers, 0, promote_called),
        "versions_after_promote": versions_between(answers, promoted_at, rollback_called),
        "versions_after_rollback": versions_between(answers, rolled_back_at, finished + 1),
        "promote_took_effect_s": round(promoted_at - promote_called, 3),
        "rollback_took_effect_s": round(rolled_back_at - rollback_called, 3),
    }))


if __name__ == "__main__":
    main()
