"""Fixtures for the fault tests: a real worker as a subprocess, and a ledger it writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """``stalwart worker tests.faults.apps:app`` in its own process group."""

    def __init__(self, env: dict[str, str], args: list[str], log: Path) -> None:
        self.log = log
        self._out = log.open("ab")
        cmd = [sys.executable, "-m", "stalwart", "worker", "tests.faults.apps:app", *args]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self._out,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._out.close()
        return self.proc.returncode

    def kill_all(self) -> None:
        """SIGKILL the supervisor and every child at once, like a host that vanished."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger.txt"


@pytest.fixture
def start_worker(tmp_path: Path, ledger: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(broker: str, *args: str, extra_env: dict[str, str] | None = None) -> WorkerProcess:
        env = {**os.environ, "STALWART_BROKER": broker, "FAULT_LEDGER": str(ledger),
               "PYTHONPATH": str(ROOT), **(extra_env or {})}
        w = WorkerProcess(env, list(args), tmp_path / f"worker{len(started)}.log")
        started.append(w)
        return w

    yield start
    for w in started:
        if w.proc.poll() is None:
            with_kill = w.proc.pid
            try:
                os.killpg(with_kill, signal.SIGKILL)
            except ProcessLookupError:
                pass
            w.proc.wait()


def wait_until(predicate: Callable[[], bool], timeout: float, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()
