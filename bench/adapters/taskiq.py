"""taskiq with taskiq-redis's stream broker (consumer groups, acknowledged messages)."""

from __future__ import annotations

import asyncio
from typing import Any

from taskiq_redis import RedisStreamBroker

from bench.adapters import base

broker = RedisStreamBroker(base.redis_url(), queue_name=base.namespace())


@broker.task(task_name="noop")
async def noop() -> None:
    await base.anoop_body()


@broker.task(task_name="stamp")
async def stamp(enqueued_at: float) -> None:
    await base.astamp_body(enqueued_at)


@broker.task(task_name="slow")
async def slow(i: int, seconds: float) -> None:
    await base.aslow_body(i, seconds)


TASKS = {"noop": noop, "stamp": stamp, "slow": slow}


class Adapter:
    batch_api = None
    after_crash = "back after idle_timeout, 600 s"

    def __init__(self, variant: str, redis_url: str) -> None:
        self.redis_url = redis_url
        self.runner = asyncio.Runner()
        self.broker: Any = None

    def settings(self) -> str:
        return ("defaults: RedisStreamBroker, ack when the result is saved; unacknowledged "
                "messages are reclaimed after idle_timeout=600 s; no result backend")

    def worker_desc(self, processes: int) -> str:
        return f"taskiq worker --workers {processes} (asyncio, max_async_tasks=100 each)"

    def worker_env(self) -> dict[str, str]:
        return {}

    def worker_commands(self, processes: int) -> list[list[str]]:
        return [[base.venv_bin("taskiq"), "worker", "bench.adapters.taskiq:broker",
                 "--workers", str(processes), "--log-level", "WARNING"]]

    def open(self, ns: str) -> None:
        # A new stream per phase; startup() creates its consumer group before any message.
        self._shutdown()
        self.broker = RedisStreamBroker(self.redis_url, queue_name=ns)
        self.runner.run(self.broker.startup())

    def enqueue(self, calls: list[base.Call], batched: bool) -> None:
        self.runner.run(self._enqueue(calls))

    async def _enqueue(self, calls: list[base.Call]) -> None:
        for c in calls:
            await TASKS[c.task].kicker().with_broker(self.broker).kiq(*c.args)

    def _shutdown(self) -> None:
        if self.broker is not None:
            self.runner.run(self.broker.shutdown())
            self.broker = None

    def close(self) -> None:
        self._shutdown()
        self.runner.close()
