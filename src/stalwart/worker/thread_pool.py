"""The thread pool: for I/O-bound tasks that release the GIL while they wait.

A thread cannot be killed: at the hard time limit its job is reported lost at once,
``TimeLimitExceeded`` is raised inside it (seen at its next Python instruction), and a new
thread takes its slot; the abandoned one exits as soon as its call returns.
"""

from __future__ import annotations

import queue
import threading

from ..app import App
from ..errors import TimeLimitExceeded
from .execute import run_job
from .jobs import Event, Finished, Job, Lost, ProgressReport, drain_events
from .timelimits import ThreadLimit, async_raise


class _Runner(threading.Thread):
    def __init__(self, pool: ThreadPool) -> None:
        super().__init__(name="stalwart-task", daemon=True)
        self.pool = pool
        self.abandoned = False
        self.job_id: str | None = None

    def run(self) -> None:
        pool = self.pool
        while not self.abandoned:
            job = pool.jobs.get()
            if job is None:
                return
            if job.id in pool.skipped:  # stopped before any thread took it
                pool.skipped.discard(job.id)
                continue
            self.job_id = job.id

            def report(done: float, total: float | None, note: str | None,
                       _id: str = job.id) -> None:
                if not self.abandoned:
                    pool.events.put(ProgressReport(_id, done, total, note))

            try:
                verdict = run_job(pool.app, job, report, ThreadLimit)
            except BaseException:  # an async exception landing between jobs
                if self.abandoned:
                    return
                raise
            self.job_id = None
            if not self.abandoned:
                pool.events.put(Finished(job.id, verdict))


class ThreadPool:
    kind = "thread"

    def __init__(self, app: App, size: int) -> None:
        self.app = app
        self.size = size
        self.jobs: queue.Queue[Job | None] = queue.Queue()
        self.events: queue.Queue[Event] = queue.Queue()
        self.threads: list[_Runner] = []
        self.active: set[str] = set()
        self.skipped: set[str] = set()
        self.replaced = 0

    def start(self) -> None:
        for _ in range(self.size):
            self._add()

    def _add(self) -> None:
        runner = _Runner(self)
        runner.start()
        self.threads.append(runner)

    def free_slots(self) -> int:
        return self.size - len(self.active)

    def running(self) -> int:
        return len(self.active)

    def pids(self) -> list[int]:
        return []

    def submit(self, job: Job) -> None:
        self.active.add(job.id)
        self.jobs.put(job)

    def wait(self, timeout: float) -> list[Event]:
        out, ended = drain_events(self.events, timeout)
        self.active -= ended
        return out

    def kill(self, job_id: str) -> None:
        for runner in self.threads:
            if runner.job_id == job_id and not runner.abandoned:
                runner.abandoned = True
                if runner.ident is not None:
                    async_raise(runner.ident, TimeLimitExceeded)
                self.threads.remove(runner)
                self._add()
                self.replaced += 1
                self.events.put(Lost(job_id, "its thread was abandoned (a thread cannot be "
                                             "killed; it exits when its call returns)"))
                return
        if job_id in self.active:  # submitted, not yet taken by a thread
            self.skipped.add(job_id)
            self.events.put(Lost(job_id, "stopped before it started"))

    def close(self, timeout: float = 5.0) -> None:
        for _ in self.threads:
            self.jobs.put(None)
        for runner in self.threads:
            runner.join(timeout if not runner.abandoned else 0)
        self.threads = []
