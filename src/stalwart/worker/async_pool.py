"""The async pool: one event loop in a thread of its own, for ``async def`` tasks.

Coroutine tasks run concurrently on the loop; plain functions run on threads so they never
block it. At the hard time limit (or a shutdown past its timeout) the asyncio task is
cancelled and reported lost; a plain function's thread cannot be stopped and is abandoned.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from typing import Any

from ..app import App
from .execute import is_async, run_job, run_job_async
from .jobs import Event, Finished, Job, Lost, ProgressReport, Verdict, drain_events
from .timelimits import ThreadLimit


class AsyncPool:
    kind = "async"

    def __init__(self, app: App, size: int) -> None:
        self.app = app
        self.size = size
        self.events: queue.Queue[Event] = queue.Queue()
        self.futures: dict[str, concurrent.futures.Future[Any]] = {}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._serve, name="stalwart-loop", daemon=True)
        self.replaced = 0

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def start(self) -> None:
        self.thread.start()

    def free_slots(self) -> int:
        return self.size - len(self.futures)

    def running(self) -> int:
        return len(self.futures)

    def pids(self) -> list[int]:
        return []

    async def _run(self, job: Job) -> None:
        def report(done: float, total: float | None, note: str | None) -> None:
            self.events.put(ProgressReport(job.id, done, total, note))

        if is_async(self.app, job):
            verdict = await run_job_async(self.app, job, report)
        else:
            verdict = await self._in_thread(job, report)
        self.events.put(Finished(job.id, verdict))

    def _in_thread(self, job: Job, report: Any) -> asyncio.Future[Verdict]:
        """A plain function on a daemon thread of its own, so it never blocks the loop.

        Not an executor: its threads are joined at interpreter exit, so one task stuck past
        a shutdown would keep the worker from exiting.
        """
        future: asyncio.Future[Verdict] = self.loop.create_future()

        def settle(verdict: Verdict) -> None:
            if not future.done():
                future.set_result(verdict)

        def target() -> None:
            verdict = run_job(self.app, job, report, ThreadLimit)
            if not self.loop.is_closed():
                self.loop.call_soon_threadsafe(settle, verdict)

        threading.Thread(target=target, name="stalwart-sync-task", daemon=True).start()
        return future

    def submit(self, job: Job) -> None:
        self.futures[job.id] = asyncio.run_coroutine_threadsafe(self._run(job), self.loop)

    def wait(self, timeout: float) -> list[Event]:
        out, ended = drain_events(self.events, timeout)
        for job_id in ended:
            self.futures.pop(job_id, None)
        return out

    def kill(self, job_id: str) -> None:
        future = self.futures.get(job_id)  # counted as running until wait() reports it
        if future is not None:
            future.cancel()
            self.replaced += 1
            self.events.put(Lost(job_id, "its asyncio task was cancelled"))

    def close(self, timeout: float = 5.0) -> None:
        for future in list(self.futures.values()):
            future.cancel()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout)
