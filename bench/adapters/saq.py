"""SAQ on Redis: one asyncio worker per process (its defaults: concurrency 10)."""

from __future__ import annotations

import asyncio
from typing import Any

from saq import Queue

from bench.adapters import base


async def noop(ctx: dict[str, Any]) -> None:
    await base.anoop_body()


async def stamp(ctx: dict[str, Any], *, enqueued_at: float) -> None:
    await base.astamp_body(enqueued_at)


async def slow(ctx: dict[str, Any], *, i: int, seconds: float) -> None:
    await base.aslow_body(i, seconds)


settings = {
    "queue": Queue.from_url(base.redis_url(), name=base.namespace()),
    "functions": [noop, stamp, slow],
}

KWARGS = {"noop": (), "stamp": ("enqueued_at",), "slow": ("i", "seconds")}


class Adapter:
    batch_api = None  # Queue.map enqueues concurrently, then waits for every result
    after_crash = "lost: swept (every 60 s) after its 10 s timeout, aborted (retries=1)"

    def __init__(self, variant: str, redis_url: str) -> None:
        self.redis_url = redis_url
        self.runner = asyncio.Runner()
        self.queue: Any = None

    def settings(self) -> str:
        return ("defaults: job timeout 10 s, retries=1 (one attempt), sweep every 60 s; "
                "no result wait")

    def worker_desc(self, processes: int) -> str:
        return f"saq --workers {processes} (asyncio, concurrency 10 each)"

    def worker_env(self) -> dict[str, str]:
        return {}

    def worker_commands(self, processes: int) -> list[list[str]]:
        return [[base.venv_bin("saq"), "bench.adapters.saq.settings", "--workers",
                 str(processes), "--quiet"]]

    def open(self, ns: str) -> None:
        self._disconnect()
        self.queue = Queue.from_url(self.redis_url, name=ns)
        self.runner.run(self.queue.connect())

    def enqueue(self, calls: list[base.Call], batched: bool) -> None:
        self.runner.run(self._enqueue(calls))

    async def _enqueue(self, calls: list[base.Call]) -> None:
        for c in calls:
            await self.queue.enqueue(c.task, **dict(zip(KWARGS[c.task], c.args, strict=True)))

    def _disconnect(self) -> None:
        if self.queue is not None:
            self.runner.run(self.queue.disconnect())
            self.queue = None

    def close(self) -> None:
        self._disconnect()
        self.runner.close()
