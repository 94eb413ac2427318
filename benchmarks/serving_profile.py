"""Profile: where a served request's time goes, next to the in-process signature call.

Two measurements, for `benchmarks/serving_overhead.py`'s student and loads:
  1. Batch 1, in process, no network: the p50 of each step of the server's Predict handler
     (request checks and decode, model lookup, the signature call, the response encode, the
     whole handler) against the bare signature call. The difference is the server's own work.
  2. Throughput with batching (16 callers x 16 images, a server process): CPU seconds per 1000
     images of the server process and of the client (this process), read from /proc and
     os.times(), against the CPU of the in-process 256-image call; and the cores each kept
     busy. Equal CPU per image with fewer cores busy means idle time, not per-request cost.
Reference run: 2-core AMD EPYC, no GPU, Python 3.11, TF 2.21, grpcio 1.85, command
`python benchmarks/serving_profile.py`, 1 run, other jobs loading the machine (load average in
the JSON); see docs/serving.md. For stacks, run py-spy (`py-spy record --gil -p SERVER_PID`)
on the server process while the benchmark's throughput phase runs.
Prints one JSON object last.
"""

from __future__ import annotations

import mimic_tf  # noqa: F401  (first: sets oneDNN's default before TensorFlow loads)

# isort: split

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from serving_overhead import ServerProcess, build_student, in_process_throughput
from tensorflow_serving.apis import predict_pb2

from mimic_tf.data.spec import CIFAR10
from serving import tensors
from serving.client import ServingClient, predict_request, run_closed_loop
from serving.export import export_student
from serving.model_config import (
    BatchingParameters,
    format_batching_parameters,
    read_model_server_config,
)
from serving.server import request_checks as validation
from serving.server.admission import ConcurrencyLimit
from serving.server.grpc_services import PredictionServicer
from serving.server.model_manager import ModelManager

# --- everything measured, in one visible block ------------------------------------------------
SEED = 0
STEP_CALLS = 3000  # timed calls per handler step (after 200 untimed)
CONCURRENCY = 16
REQUEST_BATCH = 16
MAX_BATCH_SIZE = 128  # as serving_overhead.py: half the 256 images in flight
SECONDS = 10.0  # per throughput side


class _Context:
    """The part of a gRPC context the handler reads."""

    def time_remaining(self) -> float:
        return 30.0

    def abort(self, code, details):
        raise RuntimeError(f"{code}: {details}")


def p50_us(call, count: int) -> float:
    """The p50 of `count` calls, microseconds, after 200 untimed ones."""
    for _ in range(200):
        call()
    durations = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        durations.append(time.perf_counter() - started)
    return round(float(np.percentile(durations, 50)) * 1e6, 1)


def handler_steps(config: Path, image: np.ndarray, count: int) -> dict[str, float]:
    """p50 (us) of each step of the batch-1 Predict handler, in process."""
    manager = ModelManager(read_model_server_config(config), poll_interval_s=0,
                           concurrency=ConcurrencyLimit(os.cpu_count() or 1, 16))
    manager.start()
    try:
        servicer = PredictionServicer(manager, validation.RequestLimits())
        request = predict_request("student", image)
        servable = manager.resolve(request.model_spec)
        signature = servable.signature_def("serving_default")
        inputs = validation.decode_inputs(request.inputs, signature, "serving_default",
                                          servicer.limits)
        outputs = servable.predict("serving_default", inputs, checked=True)
        function = servable.saved_model.signatures["serving_default"]

        def encode() -> predict_pb2.PredictResponse:
            response = predict_pb2.PredictResponse()
            for key, value in outputs.items():
                tensors.fill_tensor_proto(response.outputs[key], value)
            return response

        return {
            "model_and_signature_lookup": p50_us(lambda: manager.resolve(
                request.model_spec).signature_def("serving_default"), count),
            "checks_and_decode": p50_us(lambda: validation.decode_inputs(
                request.inputs, signature, "serving_default", servicer.limits), count),
            "signature_call": p50_us(lambda: {key: value.numpy() for key, value in function(
                images=tf.constant(image)).items()}, count),
            "response_encode": p50_us(encode, count),
            "whole_handler": p50_us(lambda: servicer.Predict(request, _Context()), count),
        }
    finally:
        manager.stop()


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


def throughput_cpu(base: Path, work: Path, images: np.ndarray,
                   seconds: float) -> dict[str, float]:
    """CPU per 1000 images and cores busy: in process against server + client."""
    signature = tf.saved_model.load(str(base / "student" / "1")).signatures["serving_default"]
    total_batch = CONCURRENCY * REQUEST_BATCH
    batching_file = work / "batching_parameters.txt"
    batching_file.write_text(format_batching_parameters(BatchingParameters(
        max_batch_size=MAX_BATCH_SIZE, batch_timeout_micros=1000, num_batch_threads=2,
        max_enqueued_batches=100)))
    server = ServerProcess(base / "models.config", work / "server.log", batching_file,
                           intra_op_threads=1)
    try:
        with ServingClient(server.target) as client:
            client.wait_until_available("student")
            request = predict_request("student", images[:REQUEST_BATCH])
            run_closed_loop(client, request, concurrency=CONCURRENCY, seconds=1.0,
                            decode_output="logits")
            in_process_throughput(signature, images, total_batch, 1.0)
            cpu_before = own_cpu_s()
            local_images, local_seconds = in_process_throughput(signature, images, total_batch,
                                                                seconds)
            local_cpu = own_cpu_s() - cpu_before
            server_before, client_before = process_cpu_s(server.process.pid), own_cpu_s()
            requests, served_seconds = run_closed_loop(client, request, concurrency=CONCURRENCY,
                                                       seconds=seconds, decode_output="logits")
            server_cpu = process_cpu_s(server.process.pid) - server_before
            client_cpu = own_cpu_s() - client_before
    finally:
        server.stop()
    served_images = requests * REQUEST_BATCH
    return {
        "in_process_images_per_s": round(local_images / local_seconds),
        "served_images_per_s": round(served_images / served_seconds),
        "in_process_cpu_ms_per_1000_images": round(1e6 * local_cpu / local_images, 1),
        "server_cpu_ms_per_1000_images": round(1e6 * server_cpu / served_images, 1),
        "client_cpu_ms_per_1000_images": round(1e6 * client_cpu / served_images, 1),
        "in_process_cores_busy": round(local_cpu / local_seconds, 2),
        "server_cores_busy": round(server_cpu / served_seconds, 2),
        "client_cores_busy": round(client_cpu / served_seconds, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=SECONDS, help="per throughput side")
    parser.add_argument("--step-calls", type=int, default=STEP_CALLS)
    args = parser.parse_args()
    load_before = os.getloadavg()
    images = np.random.default_rng(SEED).integers(0, 256, (512, 32, 32, 3), dtype=np.uint8)
    work = Path(tempfile.mkdtemp(prefix="serving-profile-"))
    base = work / "models"
    export_student(build_student(), base, "student", class_names=CIFAR10.class_names)
    result = {
        "batch1_handler_p50_us": handler_steps(base / "models.config", images[:1],
                                               args.step_calls),
        "throughput_batching": throughput_cpu(base, work, images, args.seconds),
        "load_average_before": [round(value, 2) for value in load_before],
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
