"""Soak: one embedded server process under 16 concurrent clients for 60 s, 10% of them hostile.

Claims checked (one run):
  1. Every good request is answered correctly: `good_errors` counts good requests that failed
     or whose logits differ from the in-process signature's by more than 1e-4 (target 0).
  2. Every malformed request gets its exact expected status code (`malformed_wrong_code`,
     target 0): huge declared shapes with no data, wrong and numpy-less dtypes, short content,
     unknown signatures, hostile model names, undecodable bytes, malformed REST JSON.
  3. The server's memory stays flat: resident set size (VmRSS of the server process) at the
     start of the soak (after a warmup under the same load) and at its end; growth
     `rss_growth_percent` target < 5.
  4. The server is alive at the end (`server_alive`) and exits 0 on SIGTERM.

Method: the seeded CNN of benchmarks/serving_overhead.py (356,810 parameters) is exported and
served by `python -m serving.server --backend embedded` in a child process (no batching,
TF Serving's default; `--tensorflow-intra-op-parallelism 1`); 16 client threads in this
process, each with its own gRPC channel (no retries, so nothing is hidden), send batch-1
Predict requests back to back; each request is malformed with probability 0.1 (seeded). The
RSS is sampled every second. Latency percentiles are over the good requests.
Reference run: 2-core AMD EPYC (x86_64), no GPU, Python 3.11, TF 2.21, Keras 3.15,
grpcio 1.85; command `python benchmarks/serving_soak.py`, 1 run; see docs/serving.md.
Prints one JSON object last.
"""

from __future__ import annotations

import mimic_tf  # noqa: F401  (first: sets oneDNN's default before TensorFlow loads)

# isort: split

import argparse
import http.client
import json
import os
import random
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc
import keras
import numpy as np
import tensorflow as tf
from serving_overhead import ServerProcess, build_student
from tensorflow.core.framework import types_pb2

from mimic_tf.data.spec import CIFAR10
from serving import tensors
from serving.client import ServingClient, predict_request
from serving.export import export_student

# --- everything measured, in one visible block ------------------------------------------------
SEED = 0
CLIENTS = 16  # concurrent client threads
SECONDS = 60.0  # the soak, after the warmup
WARMUP_SECONDS = 10.0  # the same load before rss_start is read
MALFORMED_FRACTION = 0.10  # of all requests
RSS_SAMPLE_SECONDS = 1.0
LOGIT_TOLERANCE = 1e-4
SERVER_INTRA_OP_THREADS = 1
TIMEOUT_S = 30.0  # each request's deadline


def rss_mb(pid: int) -> float:
    """Resident set size of a process, MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def malformed_requests(image: np.ndarray) -> list[tuple[str, str, object, int]]:
    """(name, kind, request, expected code) of the hostile requests the clients mix in."""
    def predict(mutate, **spec):
        request = predict_request("student", image, **spec)
        mutate(request.inputs["images"])
        return request

    def set_shape(*sizes):
        def mutate(proto):
            del proto.tensor_shape.dim[:]
            for size in sizes:
                proto.tensor_shape.dim.add().size = size
            proto.tensor_content = b""
        return mutate

    def set_dtype(dtype):
        def mutate(proto):
            proto.dtype = dtype
        return mutate

    def truncate(proto):
        proto.tensor_content = proto.tensor_content[:-1]

    invalid, not_found = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
    return [
        ("terabyte shape, no data", "Predict", predict(set_shape(1 << 40, 32, 32, 3)), invalid),
        ("300 MB shape, no data", "Predict", predict(set_shape(100_000, 32, 32, 3)), invalid),
        ("float32 dtype", "Predict", predict(set_dtype(types_pb2.DT_FLOAT)), invalid),
        ("resource dtype", "Predict", predict(set_dtype(types_pb2.DT_RESOURCE)), invalid),
        ("variant dtype", "Predict", predict(set_dtype(types_pb2.DT_VARIANT)), invalid),
        ("content one byte short", "Predict", predict(truncate), invalid),
        ("unknown signature, huge shape", "Predict",
         predict(set_shape(1 << 40, 32, 32, 3), signature_name="embed"), not_found),
        ("model ../student", "Predict", predict_request("../student", image), not_found),
        ("model of 5000 characters", "Predict", predict_request("s" * 5000, image), not_found),
        ("model with NUL", "Predict", predict_request("student\x00", image), not_found),
        ("garbage bytes", "raw", b"\xff\xfe garbage", invalid),
        ("REST malformed JSON", "REST", b'{"instances": [', invalid),
        ("REST nested 50000 deep", "REST",
         b'{"instances": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", invalid),
        ("REST wrong nesting", "REST", b'{"instances": [[1, 2, 3]]}', invalid),
    ]


class Soak:
    """The counters and latencies of all client threads (each thread appends its own)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.good_latencies: list[float] = []
        self.good_errors: list[str] = []
        self.malformed = 0
        self.malformed_wrong: list[str] = []


def client_loop(index: int, target: str, rest_port: int, images: np.ndarray,
                expected: np.ndarray, hostile: list, stop: threading.Event, soak: Soak,
                record: threading.Event) -> None:
    """One client: batch-1 Predicts back to back, a malformed one with probability 0.1."""
    chooser = random.Random(SEED + index)
    with ServingClient(target, max_attempts=1, timeout_s=TIMEOUT_S) as client:
        raw = client.channel.unary_unary("/tensorflow.serving.PredictionService/Predict")
        rest = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=TIMEOUT_S)
        row = index
        while not stop.is_set():
            if chooser.random() < MALFORMED_FRACTION:
                name, kind, request, code = chooser.choice(hostile)
                try:
                    if kind == "REST":
                        rest.request("POST", "/v1/models/student:predict", body=request)
                        response = rest.getresponse()
                        response.read()
                        received = {400: grpc.StatusCode.INVALID_ARGUMENT}.get(
                            response.status, response.status)
                    else:
                        call = raw if kind == "raw" else client.prediction.Predict
                        call(request, timeout=TIMEOUT_S)
                        received = grpc.StatusCode.OK
                except grpc.RpcError as error:
                    received = error.code()
                if record.is_set():
                    with soak.lock:
                        soak.malformed += 1
                        if received != code:
                            soak.malformed_wrong.append(f"{name}: {received}")
                continue
            row = (row + CLIENTS) % len(images)
            started = time.perf_counter()
            try:
                request = predict_request("student", images[row:row + 1])
                response = client.prediction.Predict(request, timeout=TIMEOUT_S)
                logits = tensors.to_ndarray(response.outputs["logits"])
                error = None if np.allclose(logits[0], expected[row], atol=LOGIT_TOLERANCE,
                                            rtol=0) else f"row {row}: wrong logits"
            except grpc.RpcError as failure:
                error = f"row {row}: {failure.code().name} {failure.details()}"
            elapsed = time.perf_counter() - started
            if record.is_set():
                with soak.lock:
                    soak.good_latencies.append(elapsed)
                    if error is not None:
                        soak.good_errors.append(error)
        rest.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--warmup-seconds", type=float, default=WARMUP_SECONDS)
    parser.add_argument("--clients", type=int, default=CLIENTS)
    args = parser.parse_args()
    images = np.random.default_rng(SEED).integers(0, 256, (256, 32, 32, 3), dtype=np.uint8)
    work = Path(tempfile.mkdtemp(prefix="serving-soak-"))
    try:
        base = work / "models"
        export_student(build_student(), base, "student", class_names=CIFAR10.class_names)
        signature = tf.saved_model.load(str(base / "student" / "1")).signatures[
            "serving_default"]
        expected = np.concatenate([signature(images=tf.constant(images[start:start + 64]))[
            "logits"].numpy() for start in range(0, len(images), 64)])
        hostile = malformed_requests(images[:1])
        rest_port = free_port()
        server = ServerProcess(base / "models.config", work / "server.log",
                               intra_op_threads=SERVER_INTRA_OP_THREADS,
                               extra_args=["--rest-port", str(rest_port)])
        pid = server.process.pid
        with ServingClient(server.target) as client:
            client.wait_until_available("student")
        soak, stop, record = Soak(), threading.Event(), threading.Event()
        threads = [threading.Thread(target=client_loop, args=(
            index, server.target, rest_port, images, expected, hostile, stop, soak, record))
            for index in range(args.clients)]
        for thread in threads:
            thread.start()
        time.sleep(args.warmup_seconds)
        rss_start = rss_mb(pid)
        samples = [rss_start]
        record.set()
        started = time.monotonic()
        while time.monotonic() - started < args.seconds:
            time.sleep(RSS_SAMPLE_SECONDS)
            samples.append(rss_mb(pid))
        record.clear()
        elapsed = time.monotonic() - started
        rss_end = rss_mb(pid)
        stop.set()
        for thread in threads:
            thread.join(TIMEOUT_S + 5)
        server_alive = server.process.poll() is None
        with ServingClient(server.target, max_attempts=1) as client:
            after = client.predict("student", images[:1])["logits"][0]
        answers_after = bool(np.allclose(after, expected[0], atol=LOGIT_TOLERANCE, rtol=0))
        exit_code = server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    latencies_ms = np.asarray(soak.good_latencies) * 1e3
    p50, p99 = (float(value) for value in np.percentile(latencies_ms, [50, 99]))
    result = {
        "good_requests": len(soak.good_latencies),
        "good_errors": len(soak.good_errors),
        "first_good_errors": soak.good_errors[:5],
        "malformed_requests": soak.malformed,
        "malformed_wrong_code": len(soak.malformed_wrong),
        "first_malformed_wrong": soak.malformed_wrong[:5],
        "malformed_fraction": soak.malformed / max(1, soak.malformed + len(soak.good_latencies)),
        "good_requests_per_s": len(soak.good_latencies) / elapsed,
        "p50_ms": p50,
        "p99_ms": p99,
        "rss_start_mb": round(rss_start, 1),
        "rss_end_mb": round(rss_end, 1),
        "rss_max_mb": round(max(samples), 1),
        "rss_growth_percent": round(100 * (rss_end - rss_start) / rss_start, 2),
        "server_alive": server_alive,
        "answers_correctly_after": answers_after,
        "server_exit_code_after_sigterm": exit_code,
        "clients": args.clients,
        "seconds": round(elapsed, 1),
        "warmup_seconds": args.warmup_seconds,
        "cpus": os.cpu_count(),
        "versions": {"python": sys.version.split()[0], "tensorflow": tf.__version__,
                     "keras": keras.__version__, "grpcio": grpc.__version__},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
