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
@pytest.mark.parametrize("entry_point", ["tuner.run", "serving.export", "tuner.hypermodel"])
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
