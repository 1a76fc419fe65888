"""The process pool: forked children, one pipe each, watched together with their sentinels.

One epoll set holds every pipe and every child's sentinel, so a verdict and a death are both
seen the moment they happen; a dead child is replaced at once.

A child runs the jobs in its pipe in the order they were sent. Besides the one it runs, a
child may hold up to ``PIPELINE_DEPTH - 1`` small jobs of short tasks waiting in its pipe
(``queue_behind``), so it never sits idle while the supervisor does a round trip to the
backend. Only short tasks queue, so a job never waits long behind another; if the child dies,
the jobs that had not begun come back as ``Returned`` and run elsewhere, uncounted.
"""

from __future__ import annotations

import multiprocessing
import os
import selectors
import signal
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from ..app import App
from .child import child_main
from .frames import FramedEnd, FrameError
from .jobs import Event, Finished, Job, Lost, Returned, Started, dump_job, load_event

PIPELINE_DEPTH = 4  # jobs one child may hold: the one it runs and three waiting in its pipe
PIPELINE_MAX_BYTES = 16 * 1024  # a bigger job never waits in a pipe (keeps buffers from filling)


@dataclass(eq=False)
class _Child:
    process: BaseProcess
    conn: Connection
    end: FramedEnd
    jobs: deque[tuple[str, str]] = field(default_factory=deque)  # (id, task); [0] runs

    @property
    def job_id(self) -> str | None:
        """The job this child is running now."""
        return self.jobs[0][0] if self.jobs else None


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
        self._selector = selectors.DefaultSelector()
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
        child = _Child(proc, parent_end, FramedEnd(parent_end.fileno()))
        self._selector.register(parent_end.fileno(), selectors.EVENT_READ, (child, True))
        self._selector.register(proc.sentinel, selectors.EVENT_READ, (child, False))
        return child

    def free_slots(self) -> int:
        return sum(1 for c in self.children if not c.jobs)

    def running(self) -> int:
        """Jobs the children hold: running, or waiting in a pipe to run next."""
        return sum(len(c.jobs) for c in self.children)

    def pids(self) -> list[int]:
        return [c.process.pid for c in self.children if c.process.pid is not None]

    def submit(self, job: Job) -> None:
        """Give ``job`` to an idle child, where it starts at once."""
        for child in self.children:
            if not child.jobs:
                self._send(child, job, dump_job(job))
                return
        raise RuntimeError("submit() with no free child; check free_slots() first")

    def queue_behind(self, job: Job, short: Callable[[str], bool]) -> bool:
        """Queue ``job`` in the pipe of a busy child whose jobs are all ``short`` tasks.

        False when no child can take it (all idle ones are used first by ``submit``).
        """
        best: _Child | None = None
        for child in self.children:
            held = len(child.jobs)
            if 0 < held < PIPELINE_DEPTH and (best is None or held < len(best.jobs)) \
                    and all(short(task) for _, task in child.jobs):
                best = child
        if best is None:
            return False
        data = dump_job(job)
        if len(data) > PIPELINE_MAX_BYTES:
            return False
        self._send(best, job, data)
        return True

    def _send(self, child: _Child, job: Job, data: bytes) -> None:
        child.jobs.append((job.id, job.task))
        child.end.put(data)

    def flush(self) -> None:
        """Send the jobs given since the last flush: one write per child."""
        for child in self.children:
            if child.end.outbox:
                try:
                    child.end.flush()
                except OSError:
                    child.end.outbox.clear()  # the child is dying; its sentinel reports its jobs

    def wait(self, timeout: float) -> list[Event]:
        if not self.children:
            return []
        self.flush()
        events: list[Event] = []
        dead: list[_Child] = []
        for key, _ in self._selector.select(timeout):
            child, is_pipe = key.data
            if child not in dead and (not is_pipe or not self._drain(child, events)):
                dead.append(child)
        for child in dead:
            self._selector.unregister(child.conn.fileno())
            self._selector.unregister(child.process.sentinel)
            self._drain(child, events)  # a verdict sent just before dying still counts
            child.process.join(timeout=5)
            if child.jobs:
                events.append(Lost(child.jobs.popleft()[0], f"child pid {child.process.pid} "
                                   f"died: {describe_exit(child.process.exitcode)}"))
            events.extend(Returned(job_id) for job_id, _ in child.jobs)
            child.jobs.clear()
            child.conn.close()
            index = self.children.index(child)
            if self.respawn:
                self.children[index] = self._spawn()
                self.replaced += 1
            else:
                del self.children[index]
        return events

    def _drain(self, child: _Child, events: list[Event]) -> bool:
        """Read whatever the child sent; False once its pipe is closed (or broken)."""
        try:
            frames, open_ = child.end.read()
        except FrameError:
            return False
        for frame in frames:
            event = load_event(frame)
            events.append(event)
            if isinstance(event, Finished) and event.job_id == child.job_id:
                child.jobs.popleft()
                if child.jobs:
                    events.append(Started(child.jobs[0][0]))
        return open_

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
            self._selector.unregister(child.conn.fileno())
            self._selector.unregister(child.process.sentinel)
            child.conn.close()
        for child in self.children:
            child.process.join(timeout)
            if child.process.is_alive():
                child.process.kill()
                child.process.join(1)
        self.children = []
