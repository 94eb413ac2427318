"""oneDNN's default is set before TensorFlow loads and never overrides the user."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mimic_tf import runtime

PROBE = """
import json, os, sys
{first}
from tensorflow.python.util import _pywrap_util_port
from mimic_tf import runtime
print(json.dumps({{"variable": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
                  "enabled": bool(_pywrap_util_port.IsMklEnabled()),
                  "source": runtime.default_onednn()}}))
"""


def probe(first: str, **environment: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != runtime.ONEDNN_VARIABLE}
    env.update(environment, TF_CPP_MIN_LOG_LEVEL="3")
    output = subprocess.run([sys.executable, "-c", PROBE.format(first=first)], env=env,
                            check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


X86_CPU_ONLY = not runtime.has_nvidia_gpu() and os.uname().machine in ("x86_64", "AMD64")
cpu_only_x86 = pytest.mark.skipif(not X86_CPU_ONLY,
                                  reason="oneDNN's default is only changed on x86 CPU machines")


@cpu_only_x86
def test_import_mimic_tf_turns_onednn_on_before_tensorflow_loads():
    result = probe("import mimic_tf; import tensorflow")
    assert result["enabled"]  # by mimic-tf on AVX2-only CPUs, by TensorFlow on newer ones
    if result["variable"] is not None:
        assert result["variable"] == "1" and result["source"].startswith("mimic-tf default")


def test_an_explicit_user_setting_is_kept():
    result = probe("import mimic_tf; import tensorflow", TF_ENABLE_ONEDNN_OPTS="0")
    assert result["variable"] == "0"
    assert not result["enabled"]
    assert result["source"].startswith("set by the user")


def test_tensorflow_imported_first_is_left_alone():
    result = probe("import tensorflow; import mimic_tf")
    assert result["variable"] is None
    assert "imported before mimic_tf" in result["source"]


@cpu_only_x86
@pytest.mark.parametrize("entry_point", ["tuner.run", "serving.export", "tuner.search.hypermodel"])
def test_every_package_sets_the_default_first(entry_point):
    # `python -m tuner.run` and a library import of serving or tuner alike import mimic_tf
    # (through their package) before any module of theirs loads TensorFlow.
    assert probe(f"import {entry_point}")["enabled"]


def test_the_test_session_itself_runs_with_the_default():
    import tensorflow  # noqa: F401  (conftest imported mimic_tf first)

    assert runtime.default_onednn() != "TensorFlow's default (it was imported before mimic_tf)"


def test_resolve_jit_compile_takes_explicit_values_and_rejects_others():
    assert runtime.resolve_jit_compile("true", "cnn") is True
    assert runtime.resolve_jit_compile("false", "mlp") is False
    assert runtime.resolve_jit_compile(True, "mlp") is True
    assert runtime.resolve_jit_compile("auto", "cnn") in (True, False, "auto")
    with pytest.raises(ValueError, match="jit_compile is 'sometimes'; allowed: auto, true"):
        runtime.resolve_jit_compile("sometimes", "cnn")


def test_resolve_precision_takes_explicit_policies_and_rejects_others():
    for policy in ("float32", "mixed_bfloat16", "mixed_float16"):
        assert runtime.resolve_precision(policy) == policy
    with pytest.raises(ValueError, match="precision is 'float16'; allowed: float32, .*auto"):
        runtime.resolve_precision("float16")


@pytest.mark.parametrize("device, flags, onednn, expected", [
    ("gpu", set(), False, "mixed_float16"),
    ("cpu", {"avx2", "amx_bf16", "avx512_bf16"}, True, "mixed_bfloat16"),  # Xeon with AMX
    ("cpu", {"avx2", "avx512f", "avx512_bf16"}, True, "mixed_bfloat16"),  # Zen 4
    ("cpu", {"avx2", "avx512_bf16"}, False, "float32"),  # bfloat16 without oneDNN's kernels
    ("cpu", {"avx2", "fma"}, True, "float32"),  # AVX2 only: bfloat16 emulated, 7x slower
])
def test_auto_precision_is_the_fastest_policy_on_the_device(monkeypatch, device, flags, onednn,
                                                            expected):
    monkeypatch.setattr(runtime, "device_kind", lambda: device)
    monkeypatch.setattr(runtime, "_cpu_flags", lambda: flags)
    monkeypatch.setattr(runtime, "onednn_enabled", lambda: onednn)
    assert runtime.resolve_precision("auto") == expected


@pytest.mark.parametrize("steps, expected", [(625, 25), (312, 26), (313, 1), (12, 12), (1, 1),
                                             (64, 32)])
def test_steps_per_execution_is_the_largest_divisor_up_to_the_cap(steps, expected):
    from mimic_tf.runtime import steps_per_execution

    assert steps_per_execution(steps) == expected
    assert steps_per_execution(12, most=5) == 4


def test_steps_per_execution_rejects_an_empty_epoch():
    from mimic_tf.runtime import steps_per_execution

    with pytest.raises(ValueError, match="steps_per_epoch"):
        steps_per_execution(0)
