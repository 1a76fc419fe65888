"""arq: one asyncio process per worker (its defaults: max_jobs=10, poll_delay=0.5 s).

arq has no multi-process mode, so "2 processes" is two ``arq`` processes on the same queue.
"""

from __future__ import annotations

import asyncio
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings

from bench.adapters import base


async def noop(ctx: dict[str, Any]) -> None:
    await base.anoop_body()


async def stamp(ctx: dict[str, Any], enqueued_at: float) -> None:
    await base.astamp_body(enqueued_at)


async def slow(ctx: dict[str, Any], i: int, seconds: float) -> None:
    await base.aslow_body(i, seconds)


class WorkerSettings:
    functions = [noop, stamp, slow]
    queue_name = base.namespace()
    redis_settings = RedisSettings.from_dsn(base.redis_url())


class Adapter:
    batch_api = None
    after_crash = "back after the in-progress key expires, 310 s"

    def __init__(self, variant: str, redis_url: str) -> None:
        self.settings_ = RedisSettings.from_dsn(redis_url)
        self.runner = asyncio.Runner()
        self.pool: Any = self.runner.run(create_pool(self.settings_))
        self.ns = WorkerSettings.queue_name

    def settings(self) -> str:
        return ("defaults: job kept in the queue while it runs (in-progress key), rerun after "
                "job_timeout=300 s when its worker died; results kept 3600 s")

    def worker_desc(self, processes: int) -> str:
        return f"{processes} x arq (asyncio, max_jobs=10 each)"

    def worker_env(self) -> dict[str, str]:
        return {}

    def worker_commands(self, processes: int) -> list[list[str]]:
        return [[base.venv_bin("arq"), "bench.adapters.arq.WorkerSettings"]] * processes

    def open(self, ns: str) -> None:
        self.ns = ns

    def enqueue(self, calls: list[base.Call], batched: bool) -> None:
        self.runner.run(self._enqueue(calls))

    async def _enqueue(self, calls: list[base.Call]) -> None:
        for c in calls:
            await self.pool.enqueue_job(c.task, *c.args, _queue_name=self.ns)

    def close(self) -> None:
        self.runner.run(self.pool.aclose())
        self.runner.close()
