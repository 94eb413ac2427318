"""KerasTuner's chief/worker settings as `tuner.search.distributed` reads them (no TensorFlow).

The search itself, a chief and two workers on loopback, is tested in test_tuner.py.
"""

from __future__ import annotations

import socket
import time

import pytest

from tuner.search import distributed


@pytest.fixture
def worker_env(monkeypatch):
    """A worker's three KerasTuner variables on loopback, at a port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv(distributed.TUNER_ID, "tuner1")
    monkeypatch.setenv(distributed.ORACLE_IP, "127.0.0.1")
    monkeypatch.setenv(distributed.ORACLE_PORT, str(port))
    monkeypatch.delenv(distributed.WORKER_WAIT, raising=False)
    return port


def test_a_worker_waits_ten_minutes_by_default(worker_env):
    distributed.check_environment()
    assert distributed.is_worker() and not distributed.is_chief()
    assert distributed.worker_wait_seconds() == distributed.WORKER_WAIT_SECONDS


def test_the_wait_is_set_from_the_environment(worker_env, monkeypatch):
    monkeypatch.setenv(distributed.WORKER_WAIT, "21600")
    distributed.check_environment()
    assert distributed.worker_wait_seconds() == 21600.0


@pytest.mark.parametrize("value", ["soon", "0", "-5", "nan"])
def test_a_bad_wait_is_named_with_its_variable(worker_env, monkeypatch, value):
    monkeypatch.setenv(distributed.WORKER_WAIT, value)
    with pytest.raises(distributed.DistributedSetupError,
                       match=f"MIMIC_TF_WORKER_WAIT='{value}' is not a number of seconds"):
        distributed.check_environment()


def test_a_worker_gives_up_on_an_absent_chief_after_the_wait(worker_env, monkeypatch):
    monkeypatch.setenv(distributed.WORKER_WAIT, "1")
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="for 1s .*set MIMIC_TF_WORKER_WAIT"):
        distributed.wait_for_chief(worker_env, [False])
    assert 1.0 <= time.monotonic() - started < 10.0


def test_a_bad_port_is_named(worker_env, monkeypatch):
    monkeypatch.setenv(distributed.ORACLE_PORT, "80000")
    with pytest.raises(distributed.DistributedSetupError, match="not a port number"):
        distributed.check_environment()
