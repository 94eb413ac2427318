"""How TensorFlow runs on the machine at hand: oneDNN's CPU kernels and XLA.

TensorFlow 2.21 turns its oneDNN kernels on by default only on x86 CPUs with AVX512_VNNI,
AVX512_BF16 or AMX; on an AVX2-only CPU they stay off, and convolutions run on Eigen at about
half the speed (measured by `benchmarks/cpu_throughput.py`). The switch is the environment
variable `TF_ENABLE_ONEDNN_OPTS`, read once, when TensorFlow is imported. So `import mimic_tf`
calls `default_onednn()`, which sets it to `1` where TensorFlow would leave it off, and
changes nothing when the user has set it (to anything), when TensorFlow is already imported,
when the CPU is one TensorFlow turns oneDNN on for anyway, or when an NVIDIA GPU is present.

    import mimic_tf                      # before anything imports TensorFlow
    mimic_tf.runtime.describe()   # {"onednn": True, "onednn_source": "mimic-tf default", ...}

XLA (`jit_compile`) is a per-model choice made at `compile` time: `resolve_jit_compile`
turns the config's `auto | true | false` into a bool for one family on the device at hand,
from what `benchmarks/cpu_throughput.py` measured (see `XLA_PAYS`). Likewise
`resolve_precision` turns `precision: auto` into the Keras dtype policy that trains fastest
on the device at hand (see `BFLOAT16_CPU_FLAGS`), and `steps_per_execution` how many batches
one `tf.function` call of `fit` runs.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from mimic_tf.vocabulary import AUTO_PRECISION, JIT_COMPILE_CHOICES, PRECISIONS

ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
# The CPU flags for which TensorFlow turns oneDNN on by itself (tensorflow/core/util/util.cc).
ONEDNN_DEFAULT_CPU_FLAGS = ("avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")

# Where XLA paid, counting the compile time every new model pays, measured by
# `python benchmarks/cpu_throughput.py` on a 2-core AMD EPYC (AVX2, FMA), oneDNN on, over a
# trial as the searches run it (see docs/performance.md). Keys: (device, family); families
# absent here keep XLA off. GPUs are left to Keras' own default (XLA on where it can).
XLA_PAYS: dict[tuple[str, str], bool] = {
    ("cpu", "mlp"): False,
    ("cpu", "cnn"): False,
    ("cpu", "airbench"): False,
    ("cpu", "paper"): False,
}

# The CPU flags with which `precision: auto` trains in mixed bfloat16: native bfloat16
# instructions, which oneDNN's kernels use. Without them bfloat16 is emulated and several times
# slower than float32. Measured by `python benchmarks/cpu_throughput.py --configurations
# onednn_on,onednn_on_bf16` (docs/performance.md): mixed bfloat16 trains the campaign's teacher
# member 1.87x as fast as float32 on an Intel Xeon with AMX, 1.34-1.45x on a Zen 4 EPYC with
# AVX512_BF16, and 7x slower on an AVX2-only EPYC.
BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")

_decision: dict[str, str] = {}


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def has_nvidia_gpu() -> bool:
    """Whether an NVIDIA GPU is visible, without importing TensorFlow."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return Path("/proc/driver/nvidia/gpus").is_dir() or Path("/dev/nvidia0").exists()


def cpu_name() -> str:
    """The CPU's model name, as `lscpu` shows it, and its core count."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} ({os.cpu_count()} cores)"


def default_onednn() -> str:
    """Turn oneDNN on where TensorFlow would leave it off; returns why it is as it is.

    Only the environment variable is touched, and only when TensorFlow is not yet imported
    and the user has not set it. Idempotent.
    """
    if "source" in _decision:
        return _decision["source"]
    if ONEDNN_VARIABLE in os.environ:
        source = f"set by the user ({ONEDNN_VARIABLE}={os.environ[ONEDNN_VARIABLE]})"
    elif "tensorflow" in sys.modules:
        source = "TensorFlow's default (it was imported before mimic_tf)"
    elif platform.machine().lower() not in ("x86_64", "amd64"):
        source = "TensorFlow's default (not an x86 CPU)"
    elif has_nvidia_gpu():
        source = "TensorFlow's default (a GPU machine)"
    elif _cpu_flags() & set(ONEDNN_DEFAULT_CPU_FLAGS):
        source = "TensorFlow's default (this CPU has AVX512_VNNI, AVX512_BF16 or AMX)"
    else:
        os.environ[ONEDNN_VARIABLE] = "1"
        source = "mimic-tf default (AVX2-only CPU; set TF_ENABLE_ONEDNN_OPTS=0 to turn off)"
    _decision["source"] = source
    return source


def onednn_enabled() -> bool:
    """Whether TensorFlow runs its oneDNN CPU kernels (imports TensorFlow)."""
    from tensorflow.python.util import _pywrap_util_port

    return bool(_pywrap_util_port.IsMklEnabled())


def device_kind() -> str:
    """`gpu` when TensorFlow sees a GPU, else `cpu` (imports TensorFlow)."""
    import tensorflow as tf

    return "gpu" if tf.config.list_physical_devices("GPU") else "cpu"


def resolve_jit_compile(setting: str | bool, family: str) -> bool | str:
    """The `jit_compile` to pass to `Model.compile` for a model of `family`.

    `true`/`false` are taken as they are; `auto` is `XLA_PAYS[(device, family)]` on a CPU and
    Keras' own `"auto"` on a GPU.
    """
    if isinstance(setting, bool):
        return setting
    if setting not in JIT_COMPILE_CHOICES:
        raise ValueError(f"jit_compile is {setting!r}; allowed: {', '.join(JIT_COMPILE_CHOICES)}")
    if setting != "auto":
        return setting == "true"
    device = device_kind()
    if device == "gpu":
        return "auto"
    return XLA_PAYS.get((device, family), False)


# Batches one `tf.function` call runs (Keras' `steps_per_execution`) at most: fewer Python
# round trips a step. On a 2-core Ice Lake Xeon, one thread, batch 64, a trial's epoch with its
# validation and callbacks: 1.5-1.6x faster at 25 than at 1 for the default's MLPs, 1.16-1.17x
# for its 316k CNNs, the same weights (benchmarks/steps_per_execution.py).
MAX_STEPS_PER_EXECUTION = 32


def steps_per_execution(steps_per_epoch: int, most: int = MAX_STEPS_PER_EXECUTION) -> int:
    """The largest divisor of `steps_per_epoch` not over `most`: Keras' `steps_per_execution`.

    Keras runs whole executions, so an epoch of `steps_per_epoch` batches takes the next
    multiple of `steps_per_execution`; a divisor keeps every epoch exactly one pass (one view of
    the transfer set), and the training step for step the one at 1 (1 when no divisor > 1 fits).
    """
    if steps_per_epoch < 1 or most < 1:
        raise ValueError(f"steps_per_epoch and most must be >= 1, got {steps_per_epoch} and {most}")
    return max(n for n in range(1, min(most, steps_per_epoch) + 1) if steps_per_epoch % n == 0)


def resolve_precision(setting: str) -> str:
    """The Keras dtype policy for a config's `precision` (`teacher.airbench`, `student`).

    A policy is taken as it is; `auto` is `mixed_float16` on a GPU, `mixed_bfloat16` on a CPU
    with bfloat16 instructions (`BFLOAT16_CPU_FLAGS`) and oneDNN on, `float32` elsewhere.
    """
    if setting not in PRECISIONS:
        raise ValueError(f"precision is {setting!r}; allowed: {', '.join(PRECISIONS)}")
    if setting != AUTO_PRECISION:
        return setting
    if device_kind() == "gpu":
        return "mixed_float16"
    if _cpu_flags() & set(BFLOAT16_CPU_FLAGS) and onednn_enabled():
        return "mixed_bfloat16"
    return "float32"


def describe(jit_compile: dict[str, Any] | bool | str | None = None,
             precision: str | None = None) -> dict[str, Any]:
    """The runtime facts a run records in its "How this was made": CPU, oneDNN, XLA, the dtype
    policy it trained in (`resolve_precision`'s), versions."""
    import keras
    import tensorflow as tf

    facts: dict[str, Any] = {
        "cpu": cpu_name(),
        "device": device_kind(),
        "onednn": onednn_enabled(),
        "onednn_source": default_onednn(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
    if jit_compile is not None:
        facts["xla"] = jit_compile
    if precision is not None:
        facts["precision"] = precision
    return facts


def source_commit() -> str:
    """The git commit of the code that runs (`-dirty` with uncommitted changes), or
    `unknown` outside a checkout."""
    package = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "-C", str(package), "rev-parse", "HEAD"],
                                capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(package), "status", "--porcelain", "--",
                                str(package)], capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit
