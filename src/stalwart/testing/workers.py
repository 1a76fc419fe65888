"""A real ``stalwart worker`` as a subprocess, for tests that kill, stop and count it.

Started in a process group of its own, so a test can SIGKILL the supervisor and every
child at once, as when a host vanishes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


class WorkerProcess:
    """``python -m stalwart worker APP ARGS`` with its output in ``log``."""

    def __init__(self, app_spec: str, args: list[str], env: dict[str, str], log: Path,
                 cwd: Path | None = None) -> None:
        self.log = log
        self._out = log.open("ab")
        cmd = [sys.executable, "-m", "stalwart", "worker", app_spec, *args]
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=self._out,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM and wait for the exit code (SIGKILL the group if it hangs)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.close()
        return self.proc.returncode

    def kill_all(self) -> None:
        """SIGKILL the supervisor and its children at once, like a host that vanished."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def reap(self) -> None:
        """Make sure nothing of it is left running (test teardown)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        self.close()

    def close(self) -> None:
        if not self._out.closed:
            self._out.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def wait_until(predicate: Callable[[], object], timeout: float, every: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` seconds pass; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return bool(predicate())
