"""Liveness: the registry entry, ``stalwart health``, and the ``--health-port`` endpoint."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from stalwart.testing.workers import wait_until

from .conftest import APP_SPEC, ROOT

pytestmark = pytest.mark.faults


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health_cli(broker: str, worker_id: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STALWART_BROKER": broker, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "stalwart", "health", APP_SPEC, "--worker",
                           worker_id, "--json"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=30)


def probe(port: int) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_registered_worker_is_healthy_then_missing_after_stop(client, broker, start_worker):
    port = free_port()
    worker = start_worker("-c", "2", "-Q", "default,other", "--worker-id", "w-health",
                          "--health-port", str(port), "--heartbeat-seconds", "1")
    assert wait_until(lambda: any(w.id == "w-health" for w in client.backend.workers()), 15)
    (info,) = [w for w in client.backend.workers() if w.id == "w-health"]
    assert info.queues == ("default", "other") and info.concurrency == 2
    assert info.pool == "process" and info.pid == worker.pid
    assert info.meta["health"] == "ok" and len(info.meta["children"]) == 2
    assert wait_until(lambda: _up(port), 10)
    status, doc = probe(port)
    assert status == 200 and doc["health"] == "ok" and doc["worker"] == "w-health"
    ok = health_cli(broker, "w-health")
    assert ok.returncode == 0, ok.stderr
    assert health_cli(broker, "nobody").returncode == 1
    assert worker.terminate() == 0
    assert client.backend.workers() == []
    gone = health_cli(broker, "w-health")
    assert gone.returncode == 1 and json.loads(gone.stdout)["health"] == "missing"


def _up(port: int) -> bool:
    try:
        probe(port)
        return True
    except OSError:
        return False
