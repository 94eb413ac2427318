"""Benchmark: training and inference img/s, oneDNN and XLA off and on, against the CPU's ceiling.

Claim checked: on an AVX2-only CPU (where TensorFlow leaves oneDNN off) the project's default,
oneDNN on, trains the teachers and the students about twice as fast as TensorFlow's own
default; and which models XLA (`jit_compile=True`) speeds up once its compile time is counted.

Workloads (random uint8 images, the project's own builders):
  teacher_default     airbench member 32/64/64, batch 256 (configs/default.yaml's teacher)
  teacher_airbench94  airbench member 64/256/256, batch 512 (airbench94's widths)
  teacher_airbench95  airbench member 128/384/384, batch 512 (the v2 campaign's widths)
  student_cnn         Distiller, CNN 2 conv at 1M (default widths), batch 128
  student_mlp         Distiller, MLP 2 hidden at 1M (default widths), batch 128
  transfer_default    the transfer set's teacher inference: 32/64/64 with flip averaging, batch 500
  transfer_airbench94 the same for a 64/256/256 member

Method: every configuration (oneDNN off/on x XLA off/on; `onednn_on_bf16`, oneDNN on in mixed
bfloat16, on request) runs in its own subprocess, since
`TF_ENABLE_ONEDNN_OPTS` is read when TensorFlow is imported; each workload is `fit` (or
`predict`) for one warm-up epoch, which pays tracing and XLA's compile, then one timed epoch.
`compile_s` is the warm-up epoch's time minus a timed epoch's. GFLOP/s counts the conv and
dense layers in closed form (`mimic_tf.flops`), x3 for training. The ceiling is the best of
three 4096x4096 float32 `tf.matmul`s in the same subprocess. `ratio_to_matmul_peak` is the
default configuration's (oneDNN on, XLA as `jit_compile: auto` picks) GFLOP/s over the
highest matmul rate of the run.

    python benchmarks/cpu_throughput.py                 # all workloads, 4 configurations
    python benchmarks/cpu_throughput.py --workloads student_cnn,student_mlp --scale 2

Reference run: see docs/performance.md (machine, versions, one run). Prints one JSON object
last.
"""

from __future__ import annotations

import mimic_tf  # noqa: F401  (first: sets oneDNN's default before TensorFlow loads)

# isort: split

import argparse
import json
import os
import subprocess
import sys
import time

from mimic_tf.data.spec import CIFAR10

WORKLOADS = ("teacher_default", "teacher_airbench94", "teacher_airbench95", "student_cnn",
             "student_mlp", "transfer_default", "transfer_airbench94")
CONFIGURATIONS = {  # name: (TF_ENABLE_ONEDNN_OPTS, jit_compile, Keras dtype policy)
    "onednn_off": ("0", False, "float32"),
    "onednn_off_xla": ("0", True, "float32"),
    "onednn_on": ("1", False, "float32"),
    "onednn_on_xla": ("1", True, "float32"),
    "onednn_on_bf16": ("1", False, "mixed_bfloat16"),
}
DEFAULT_CONFIGURATIONS = ("onednn_off", "onednn_off_xla", "onednn_on", "onednn_on_xla")
# Images per timed epoch at --scale 1, sized for about 10-30 s each on a 2-core CPU.
IMAGES = {"teacher_default": 2560, "teacher_airbench94": 1536, "teacher_airbench95": 1024,
          "student_cnn": 3840,
          "student_mlp": 64000, "transfer_default": 4000, "transfer_airbench94": 1500}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help=f"comma-separated, of {', '.join(WORKLOADS)}")
    parser.add_argument("--configurations", default=",".join(DEFAULT_CONFIGURATIONS),
                        help=f"comma-separated, of {', '.join(CONFIGURATIONS)}")
    parser.add_argument("--scale", type=float, default=1.0, help="images per epoch x this")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


# --------------------------------------------------------------------------------------------
# Worker: one configuration, in its own process
# --------------------------------------------------------------------------------------------


def _matmul_gflops(tf) -> float:
    size = 4096
    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))
    best = float("inf")
    for _ in range(4):  # the first one warms up
        started = time.perf_counter()
        _ = (a @ b).numpy()
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def _timed_fit(model, dataset, steps: int, batch_size: int) -> tuple[float, float]:
    """(img/s of the timed epoch, compile seconds) of `fit` over `steps` steps an epoch."""
    from epoch_timer import EpochTimer  # beside this script

    timer = EpochTimer()
    model.fit(dataset, epochs=2, steps_per_epoch=steps, callbacks=[timer], verbose=0)
    warmup, timed = timer.seconds
    return steps * batch_size / timed, max(warmup - timed, 0.0)


def _timed_predict(model, images, batch_size: int) -> tuple[float, float]:
    started = time.perf_counter()
    model.predict(images, batch_size=batch_size, verbose=0)
    warmup = time.perf_counter() - started
    started = time.perf_counter()
    model.predict(images, batch_size=batch_size, verbose=0)
    timed = time.perf_counter() - started
    return len(images) / timed, max(warmup - timed, 0.0)


def run_worker(configuration: str, workloads: list[str], scale: float) -> dict:
    onednn, jit_compile, precision = CONFIGURATIONS[configuration]
    os.environ["TF_ENABLE_ONEDNN_OPTS"] = onednn
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np
    import tensorflow as tf

    from mimic_tf import runtime
    from mimic_tf.budgets import default_widths
    from mimic_tf.config import AirbenchConfig
    from mimic_tf.distiller import Distiller
    from mimic_tf.flops import TRAINING_FLOPS_PER_FORWARD, forward_flops
    from mimic_tf.students import build_student
    from mimic_tf.teachers import airbench, airbench_recipe, build_ensemble

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    results: dict = {"onednn": runtime.onednn_enabled(), "xla": jit_compile,
                     "precision": precision,
                     "matmul_gflops": _matmul_gflops(tf), "workloads": {}}

    def images(count: int) -> np.ndarray:
        return rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)

    def repeated(*arrays, batch_size: int):
        return (tf.data.Dataset.from_tensor_slices(arrays).batch(batch_size, drop_remainder=True)
                .cache().repeat().prefetch(tf.data.AUTOTUNE))

    def airbench_member(widths, batch_size: int, steps: int):
        config = AirbenchConfig(widths=widths, batch_size=batch_size, lookahead_every=0,
                                precision=precision)
        model = airbench.build_airbench_member(config, images(1024), num_classes=10)
        airbench_recipe.compile_member(model, config, total_steps=2 * steps,
                                       jit_compile=jit_compile)
        return model

    for workload in workloads:
        count = int(IMAGES[workload] * scale)
        if workload.startswith("teacher_"):
            widths, batch_size = {"teacher_default": ((32, 64, 64), 256),
                                  "teacher_airbench94": ((64, 256, 256), 512),
                                  "teacher_airbench95": ((128, 384, 384), 512)}[workload]
            steps = max(count // batch_size, 1)
            model = airbench_member(widths, batch_size, steps)
            labels = np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch_size * steps)]
            dataset = repeated(images(batch_size * steps), labels, batch_size=batch_size)
            img_s, compile_s = _timed_fit(model, dataset, steps, batch_size)
            flops = forward_flops(model) * TRAINING_FLOPS_PER_FORWARD
        elif workload.startswith("student_"):
            family = workload.removeprefix("student_")
            batch_size = 128
            steps = max(count // batch_size, 1)
            student = build_student(family, 2, 1e6, seed=0, dtype_policy=precision,
                                    **default_widths(family, 2, 1e6), spec=CIFAR10)
            model = Distiller(student)
            model.compile(optimizer=keras.optimizers.SGD(0.005, momentum=0.9, nesterov=True),
                          jit_compile=jit_compile)
            total = batch_size * steps
            dataset = repeated(images(total), rng.normal(size=(total, 10)).astype(np.float32),
                               rng.integers(0, 10, total), batch_size=batch_size)
            img_s, compile_s = _timed_fit(model, dataset, steps, batch_size)
            flops = forward_flops(student) * TRAINING_FLOPS_PER_FORWARD
        else:
            widths = (32, 64, 64) if workload == "transfer_default" else (64, 256, 256)
            member = airbench_member(widths, 500, 1)
            ensemble = build_ensemble([member], flip_average=True)
            ensemble.compile(jit_compile=jit_compile)
            img_s, compile_s = _timed_predict(ensemble, images(count), 500)
            flops = forward_flops(member) * 2  # the image and its mirror
        results["workloads"][workload] = {
            "img_s": round(img_s, 1), "compile_s": round(compile_s, 1),
            "gflops": round(img_s * flops / 1e9, 1), "mflop_per_image": round(flops / 1e6, 1),
        }
        print(f"  {configuration:15s} {workload:20s} {img_s:9.1f} img/s  "
              f"compile {compile_s:5.1f} s  {img_s * flops / 1e9:6.1f} GFLOP/s",
              file=sys.stderr, flush=True)
    return results


# --------------------------------------------------------------------------------------------
# Driver: every configuration in a subprocess, then the table
# --------------------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    workloads = [w for w in args.workloads.split(",") if w]
    if args.worker:
        print(json.dumps(run_worker(args.worker, workloads, args.scale)))
        return
    unknown = sorted(set(workloads) - set(WORKLOADS))
    configurations = [c for c in args.configurations.split(",") if c]
    unknown += sorted(set(configurations) - set(CONFIGURATIONS))
    if unknown:
        sys.exit(f"unknown workload or configuration {unknown}; "
                 f"workloads: {', '.join(WORKLOADS)}; configurations: {', '.join(CONFIGURATIONS)}")
    from mimic_tf.runtime import XLA_PAYS, cpu_name

    runs = {}
    for configuration in configurations:
        print(f"{configuration}: starting a subprocess", file=sys.stderr, flush=True)
        output = subprocess.run(
            [sys.executable, __file__, "--worker", configuration, "--workloads",
             ",".join(workloads), "--scale", str(args.scale)],
            check=True, stdout=subprocess.PIPE, text=True,
            env={k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"},
        ).stdout
        runs[configuration] = json.loads(output.strip().splitlines()[-1])

    peak = max(run["matmul_gflops"] for run in runs.values())
    family_of = {"teacher_default": "airbench", "teacher_airbench94": "airbench",
                 "teacher_airbench95": "airbench",
                 "student_cnn": "cnn", "student_mlp": "mlp", "transfer_default": "airbench",
                 "transfer_airbench94": "airbench"}
    summary: dict = {"cpu": cpu_name(), "matmul_gflops": {c: round(r["matmul_gflops"], 1)
                                                          for c, r in runs.items()},
                     "workloads": {}}
    print(f"\n{cpu_name()}; matmul ceiling {peak:.0f} GFLOP/s\n", file=sys.stderr)
    print("| workload | " + " | ".join(configurations) + " | compile s (XLA, oneDNN on) "
          "| default's GFLOP/s | of matmul peak |", file=sys.stderr)
    print("|---" * (len(configurations) + 4) + "|", file=sys.stderr)
    for workload in workloads:
        default = "onednn_on_xla" if XLA_PAYS.get(("cpu", family_of[workload])) else "onednn_on"
        entry = {"img_s": {c: runs[c]["workloads"][workload]["img_s"] for c in runs},
                 "compile_s": {c: runs[c]["workloads"][workload]["compile_s"] for c in runs},
                 "mflop_per_image": next(iter(runs.values()))["workloads"][workload][
                     "mflop_per_image"],
                 "default": default}
        if default in runs:
            gflops = runs[default]["workloads"][workload]["gflops"]
            entry["gflops"] = gflops
            entry["ratio_to_matmul_peak"] = round(gflops / peak, 3)
        summary["workloads"][workload] = entry
        xla_compile = runs.get("onednn_on_xla", {}).get("workloads", {}).get(workload, {})
        print(f"| {workload} | " + " | ".join(f"{entry['img_s'][c]:,.0f}" for c in runs)
              + f" | {xla_compile.get('compile_s', '-')} | {entry.get('gflops', '-')} | "
              f"{entry.get('ratio_to_matmul_peak', '-')} |", file=sys.stderr)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
