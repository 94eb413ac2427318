"""Benchmark: the embedded TF Serving-compatible server against the same SavedModel in process.

Claims checked (one run, side by side, same SavedModel, same images):
  1. Latency: at batch 1, the p50 of a full gRPC round trip over loopback (client builds the
     PredictRequest, server checks and runs the signature, client decodes the response) is at
     most 0.4 ms above the p50 of calling the signature's concrete function directly in process
     (`loaded.signatures["serving_default"](images=...)`, outputs to numpy; not model.predict).
     JSON key `p50_overhead_ms` (target <= 0.4). `grpc_echo_latency_ms` is the same round trip
     to a gRPC server process with no model (it answers a fixed response): the floor of the
     overhead that Python gRPC itself sets.
  2. Throughput: with server-side batching on, 16 concurrent callers each sending
     `--request-batch` images reach at least 90% of the in-process images/s at the same total
     batch size (16 x request batch per signature call). JSON key `throughput_ratio`
     (target >= 0.9).

Method: the student is exported with `serving.export.export_student` (or `--model-dir` names an
existing SavedModel version folder); the server runs as a separate process
(`python -m serving.server --backend embedded`, loopback, first without batching for latency,
then with batching for throughput) so client and server do not share a GIL, and is stopped with
SIGTERM. Latencies are reported as p50/p95/p99 over `--latency-requests` sequential requests
after warmup; throughputs are images/s over `--seconds` seconds.
The server runs with `--tensorflow-intra-op-parallelism 1` (`--server-intra-op-threads`).
Reference runs: 2-core x86_64 CPU (AMD EPYC), no GPU, other jobs loading the machine (load
average 2-3), Python 3.11, TF 2.21, Keras 3.15, grpcio 1.85, command
`python benchmarks/serving_overhead.py`, 3 runs: p50 overhead 1.392, 1.188, 0.902 ms (gRPC
echo floor 1.021, 0.924, 0.777 ms); throughput ratio 0.900, 0.926, 0.986. Three runs with
nothing else running: overhead 1.160, 1.263, 1.308 ms (echo 1.091, 0.978, 0.877 ms); ratio
0.907, 0.863, 0.852. Earlier runs on a
2-core Intel Xeon, other job paused: overhead 0.665-0.763 ms, ratio 0.747-0.772.
Prints one JSON object last.
"""

from __future__ import annotations

import mimic_tf  # noqa: F401  (first: sets oneDNN's default before TensorFlow loads)

# isort: split

import argparse
import functools
import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent import futures
from pathlib import Path

import grpc
import keras
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from mimic_tf.data.spec import CIFAR10
from mimic_tf.preprocessing import PerImageStandardization
from serving import tensors
from serving.client import ServingClient, predict_request, run_closed_loop
from serving.export import export_student, write_models_config
from serving.model_config import BatchingParameters, format_batching_parameters

# --- everything measured, in one visible block ------------------------------------------------
SEED = 0
LATENCY_REQUESTS = 2000  # sequential batch-1 requests timed, per side
LATENCY_WARMUP = 200  # untimed requests before them
CONCURRENCY = 16  # concurrent callers in the throughput test
REQUEST_BATCH = 16  # images per request in the throughput test (total batch = 16 x 16 = 256)
THROUGHPUT_SECONDS = 10.0  # total throughput measurement per side
ROUNDS = 10  # in-process and served measurements alternate in this many rounds
# Server batching, as TF Serving advises: callers = 2 x max batch, so one batch fills while the
# other runs. max_batch_size = half the total batch (8 requests of 16 images). (A quarter, 4
# batches in flight, was tried: no better in paired runs; see docs/serving.md.)
BATCHES_IN_FLIGHT = 2
BATCH_TIMEOUT_MICROS = 1000  # wait up to 1 ms for a batch to fill
NUM_BATCH_THREADS = 2  # batches run at once
# The server's --tensorflow-intra-op-parallelism. With 1, each batch thread runs its batch on
# one core and TensorFlow's idle worker threads stop competing with the gRPC threads for CPU.
SERVER_INTRA_OP_THREADS = 1
REPO_ROOT = Path(__file__).resolve().parent.parent


def build_student(seed: int = SEED) -> keras.Model:
    """A small seeded CNN of about 357k parameters: 3 conv blocks, a 128-unit dense layer."""
    init = keras.initializers.GlorotUniform(seed=seed)
    inputs = keras.Input((32, 32, 3), dtype="uint8")
    x = PerImageStandardization()(inputs)
    for filters in (32, 64, 128):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu",
                                kernel_initializer=init)(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(128, activation="relu", kernel_initializer=init)(x)
    outputs = keras.layers.Dense(10, kernel_initializer=init)(x)
    return keras.Model(inputs, outputs, name="bench_cnn")


def percentiles(seconds: list[float]) -> dict[str, float]:
    p50, p95, p99 = np.percentile(np.asarray(seconds) * 1e3, [50, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99)}


class EchoServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """Answers every Predict with the outputs of a batch-1 student call, precomputed."""

    def __init__(self) -> None:
        self.response = predict_pb2.PredictResponse()
        for key, value in (("logits", np.zeros((1, 10), np.float32)),
                           ("probabilities", np.zeros((1, 10), np.float32)),
                           ("classes", np.zeros((1,), np.int64))):
            tensors.fill_tensor_proto(self.response.outputs[key], value)

    def Predict(self, request, context):
        tensors.to_ndarray(request.inputs["images"])
        return self.response


def serve_echo(port_queue) -> None:
    """A gRPC server process with no model: the floor under the served overhead."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(EchoServicer(), server)
    port_queue.put(server.add_insecure_port("127.0.0.1:0"))
    server.start()
    server.wait_for_termination()


def echo_latency(images: np.ndarray, count: int) -> dict[str, float]:
    """p50/p95/p99 of batch-1 Predict round trips to `serve_echo` in a child process."""
    context = multiprocessing.get_context("spawn")
    port_queue = context.Queue()
    process = context.Process(target=serve_echo, args=(port_queue,), daemon=True)
    process.start()
    try:
        with ServingClient(f"127.0.0.1:{port_queue.get(timeout=120)}") as client:
            call = functools.partial(served_call, client)
            timed_calls(call, images, 0, LATENCY_WARMUP)
            return percentiles(timed_calls(call, images, 0, count))
    finally:
        process.kill()


def in_process_call(signature, images: np.ndarray) -> None:
    """One direct signature call, outputs to numpy."""
    outputs = signature(images=tf.constant(images))
    {key: value.numpy() for key, value in outputs.items()}


def served_call(client: ServingClient, images: np.ndarray) -> None:
    """One Predict round trip: build the request, call, decode every output."""
    response = client.prediction.Predict(predict_request("student", images), timeout=30)
    {key: tensors.to_ndarray(value) for key, value in response.outputs.items()}


def timed_calls(call, images: np.ndarray, start: int, count: int) -> list[float]:
    """Durations of `count` batch-1 calls on consecutive images."""
    durations = []
    for index in range(start, start + count):
        started = time.perf_counter()
        call(images[index % len(images)][None])
        durations.append(time.perf_counter() - started)
    return durations


def in_process_throughput(signature, images: np.ndarray, batch_size: int,
                          seconds: float) -> tuple[int, float]:
    """(images, seconds) of back-to-back direct calls at `batch_size`."""
    batch = tf.constant(np.resize(images, (batch_size, *images.shape[1:])))
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        {key: value.numpy() for key, value in signature(images=batch).items()}
        count += 1
    return count * batch_size, time.perf_counter() - started


def served_throughput(client: ServingClient, images: np.ndarray, request_batch: int,
                      concurrency: int, seconds: float) -> tuple[int, float]:
    """(images, seconds) of `concurrency` callers sending `request_batch` images each."""
    batch = np.resize(images, (request_batch, *images.shape[1:])).astype(np.uint8)
    request = predict_request("student", batch)
    requests, elapsed = run_closed_loop(client, request, concurrency=concurrency,
                                        seconds=seconds, decode_output="logits")
    return requests * request_batch, elapsed


class ServerProcess:
    """`python -m serving.server` in a child process on a free loopback port."""

    def __init__(self, config: Path, log_path: Path, batching_file: Path | None = None,
                 intra_op_threads: int = 0, extra_args: Sequence[str] = ()) -> None:
        command = [sys.executable, "-m", "serving.server", "--backend", "embedded",
                   "--model-config", str(config), "--port", "0", "--rest-port", "0",
                   "--file-system-poll-wait-seconds", "0",
                   "--tensorflow-intra-op-parallelism", str(intra_op_threads), *extra_args]
        if batching_file is not None:
            command += ["--batching-parameters-file", str(batching_file)]
        self.log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        self.process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                        stderr=self.log, text=True, env=environment)
        for line in self.process.stdout:
            if "ready:" in line:
                self.target = line.split("grpc=")[1].split()[0]
                rest = line.split("rest=")[1].split()[0]
                self.rest_port = None if rest == "None" else int(rest)
                return
        raise RuntimeError(f"the server exited before it was ready; see {log_path}")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self.log.close()
        return code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path,
                        help="an exported SavedModel version folder (default: build a CNN)")
    parser.add_argument("--latency-requests", type=int, default=LATENCY_REQUESTS)
    parser.add_argument("--request-batch", type=int, default=REQUEST_BATCH)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--seconds", type=float, default=THROUGHPUT_SECONDS,
                        help="total seconds of throughput measurement per side")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--batch-timeout-micros", type=int, default=BATCH_TIMEOUT_MICROS)
    parser.add_argument("--batch-threads", type=int, default=NUM_BATCH_THREADS)
    parser.add_argument("--max-batch-size", type=int,
                        help="server max_batch_size (default: half the total batch)")
    parser.add_argument("--server-intra-op-threads", type=int, default=SERVER_INTRA_OP_THREADS,
                        help="the server's --tensorflow-intra-op-parallelism (0: every core)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    images = np.random.default_rng(SEED).integers(0, 256, (512, 32, 32, 3), dtype=np.uint8)
    work = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    try:
        base = work / "models"
        if args.model_dir is None:
            export_student(build_student(), base, "student", class_names=CIFAR10.class_names)
        else:
            shutil.copytree(args.model_dir, base / "student" / "1")
            write_models_config(base)
        version_dir = base / "student" / "1"
        params = json.loads((version_dir / "assets.extra" / "mimic_tf.json").read_text())[
            "params"] if (version_dir / "assets.extra" / "mimic_tf.json").is_file() else None
        signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
        total_batch = args.concurrency * args.request_batch
        per_round = max(1, args.latency_requests // args.rounds)

        # Latency: the plain server (no batching, TF Serving's default), rounds alternating.
        local_durations: list[float] = []
        remote_durations: list[float] = []
        server = ServerProcess(base / "models.config", work / "server.log",
                               intra_op_threads=args.server_intra_op_threads)
        try:
            with ServingClient(server.target) as client:
                client.wait_until_available("student")
                local_call = functools.partial(in_process_call, signature)
                remote_call = functools.partial(served_call, client)
                timed_calls(local_call, images, 0, LATENCY_WARMUP)
                timed_calls(remote_call, images, 0, LATENCY_WARMUP)
                for round_index in range(args.rounds):
                    start = round_index * per_round
                    local_durations += timed_calls(local_call, images, start, per_round)
                    remote_durations += timed_calls(remote_call, images, start, per_round)
        finally:
            server.stop()
        local_latency = percentiles(local_durations)
        remote_latency = percentiles(remote_durations)
        echo = echo_latency(images, len(remote_durations))

        # Throughput: the batching server, rounds alternating.
        max_batch_size = args.max_batch_size or max(1, total_batch // BATCHES_IN_FLIGHT)
        batching = BatchingParameters(max_batch_size=max_batch_size,
                                      batch_timeout_micros=args.batch_timeout_micros,
                                      num_batch_threads=args.batch_threads,
                                      max_enqueued_batches=100)
        batching_file = work / "batching_parameters.txt"
        batching_file.write_text(format_batching_parameters(batching))
        server = ServerProcess(base / "models.config", work / "server-batching.log",
                               batching_file, intra_op_threads=args.server_intra_op_threads)
        local_images = local_seconds = remote_images = remote_seconds = 0.0
        try:
            with ServingClient(server.target) as client:
                client.wait_until_available("student")
                round_seconds = args.seconds / args.rounds
                in_process_throughput(signature, images, total_batch, 0.5)  # warmup
                served_throughput(client, images, args.request_batch, args.concurrency, 0.5)
                for _ in range(args.rounds):
                    count, seconds = in_process_throughput(signature, images, total_batch,
                                                           round_seconds)
                    local_images, local_seconds = local_images + count, local_seconds + seconds
                    count, seconds = served_throughput(client, images, args.request_batch,
                                                       args.concurrency, round_seconds)
                    remote_images, remote_seconds = (remote_images + count,
                                                     remote_seconds + seconds)
        finally:
            sigterm_exit_code = server.stop()
        local_throughput = local_images / local_seconds
        remote_throughput = remote_images / remote_seconds
    finally:
        shutil.rmtree(work, ignore_errors=True)

    result = {
        "p50_overhead_ms": remote_latency["p50_ms"] - local_latency["p50_ms"],
        "throughput_ratio": remote_throughput / local_throughput,
        "in_process_latency_ms": local_latency,
        "served_latency_ms": remote_latency,
        "grpc_echo_latency_ms": echo,
        "in_process_images_per_s": local_throughput,
        "served_images_per_s": remote_throughput,
        "concurrency": args.concurrency,
        "request_batch": args.request_batch,
        "total_batch": total_batch,
        "server_intra_op_threads": args.server_intra_op_threads,
        "batching": {"max_batch_size": max_batch_size,
                     "batch_timeout_micros": args.batch_timeout_micros,
                     "num_batch_threads": args.batch_threads},
        "latency_requests_per_side": len(remote_durations),
        "params": params,
        "server_exit_code_after_sigterm": sigterm_exit_code,
        "load_average_before": [round(value, 2) for value in load_before],
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
        "cpus": os.cpu_count(),
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__,
                     "grpcio": grpc.__version__},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
