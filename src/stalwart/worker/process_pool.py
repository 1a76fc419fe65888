"""The process pool: forked children, one pipe each, watched together with their sentinels.

``multiprocessing.connection.wait`` on every pipe and every child's sentinel means a verdict
and a death are both seen the moment they happen; a dead child is replaced at once.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess

from ..app import App
from .child import child_main
from .jobs import Event, Finished, Job, Lost, dump_job, load_event


@dataclass(eq=False)
class _Child:
    process: BaseProcess
    conn: Connection
    job_id: str | None = None


def describe_exit(code: int | None) -> str:
    """``exit code 3`` or ``signal 9 (SIGKILL)``, the way an operator wants to read it."""
    if code is None:
        return "unknown exit"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "?"
        return f"signal {-code} ({name})"
    return f"exit code {code}"


class ProcessPool:
    kind = "process"

    def __init__(self, app: App, size: int) -> None:
        self.app = app
        self.size = size
        self.children: list[_Child] = []
        self.respawn = True
        self._ctx = multiprocessing.get_context("fork")
        self.replaced = 0

    def start(self) -> None:
        for _ in range(self.size):
            self.children.append(self._spawn())

    def _spawn(self) -> _Child:
        parent_end, child_end = self._ctx.Pipe(duplex=True)
        inherited = [c.conn for c in self.children]
        proc = self._ctx.Process(
            target=child_main, args=(self.app, child_end, os.getpid(), inherited + [parent_end]),
            name="stalwart-child", daemon=True,
        )
        proc.start()
        child_end.close()
        return _Child(proc, parent_end)

    def free_slots(self) -> int:
        return sum(1 for c in self.children if c.job_id is None)

    def running(self) -> int:
        return sum(1 for c in self.children if c.job_id is not None)

    def pids(self) -> list[int]:
        return [c.process.pid for c in self.children if c.process.pid is not None]

    def submit(self, job: Job) -> None:
        for child in self.children:
            if child.job_id is None:
                child.job_id = job.id
                try:
                    child.conn.send_bytes(dump_job(job))
                except OSError:
                    pass  # the child is dying; its sentinel reports the job lost
                return
        raise RuntimeError("submit() with no free child; check free_slots() first")

    def wait(self, timeout: float) -> list[Event]:
        if not self.children:
            return []
        by_conn = {c.conn: c for c in self.children}
        by_sentinel = {c.process.sentinel: c for c in self.children}
        ready = wait([*by_conn, *by_sentinel], timeout)
        events: list[Event] = []
        dead: list[_Child] = []
        for obj in ready:
            child = by_conn.get(obj)  # type: ignore[call-overload]
            if child is not None:
                if not self._drain(child, events):
                    dead.append(child)
            else:
                dead.append(by_sentinel[obj])  # type: ignore[index]
        for child in dict.fromkeys(dead):
            self._drain(child, events)  # a verdict sent just before dying still counts
            child.process.join(timeout=5)
            if child.job_id is not None:
                events.append(Lost(child.job_id, f"child pid {child.process.pid} died: "
                                                 f"{describe_exit(child.process.exitcode)}"))
                child.job_id = None
            child.conn.close()
            index = self.children.index(child)
            if self.respawn:
                self.children[index] = self._spawn()
                self.replaced += 1
            else:
                del self.children[index]
        return events

    def _drain(self, child: _Child, events: list[Event]) -> bool:
        """Read whatever the child sent; False once its pipe is closed."""
        try:
            while child.conn.poll():
                event = load_event(child.conn.recv_bytes())
                if isinstance(event, Finished) and event.job_id == child.job_id:
                    child.job_id = None
                events.append(event)
        except (EOFError, OSError):
            return False
        return True

    def kill(self, job_id: str) -> None:
        """SIGKILL the child running ``job_id``; ``wait`` then reports it Lost."""
        for child in self.children:
            if child.job_id == job_id and child.process.pid is not None:
                try:
                    os.kill(child.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def close(self, timeout: float = 5.0) -> None:
        """Close every pipe (idle children exit) and kill whatever is still alive."""
        self.respawn = False
        for child in self.children:
            child.conn.close()
        for child in self.children:
            child.process.join(timeout)
            if child.process.is_alive():
                child.process.kill()
                child.process.join(1)
        self.children = []
