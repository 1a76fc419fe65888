"""Dramatiq on Redis with its default middleware.

An actor's queue is fixed when it is declared, so the worker declares its actors on
``$BENCH_NS`` and the producer re-addresses each message to the phase's queue.
"""

from __future__ import annotations

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from bench.adapters import base

broker = RedisBroker(url=base.redis_url())
dramatiq.set_broker(broker)
QUEUE = base.namespace()


@dramatiq.actor(queue_name=QUEUE, actor_name="noop")
def noop() -> None:
    base.noop_body()


@dramatiq.actor(queue_name=QUEUE, actor_name="stamp")
def stamp(enqueued_at: float) -> None:
    base.stamp_body(enqueued_at)


@dramatiq.actor(queue_name=QUEUE, actor_name="slow")
def slow(i: int, seconds: float) -> None:
    base.slow_body(i, seconds)


ACTORS = {"noop": noop, "stamp": stamp, "slow": slow}
THREADS = 8


class Adapter:
    batch_api = None
    after_crash = "back after heartbeat_timeout, 60 s"

    def __init__(self, variant: str, redis_url: str) -> None:
        self.ns = QUEUE

    def settings(self) -> str:
        return ("defaults: ack after running; messages of a dead worker are requeued by "
                "heartbeat_timeout=60 s maintenance; no result backend")

    def worker_desc(self, processes: int) -> str:
        return f"dramatiq --processes {processes} --threads {THREADS} (the default threads)"

    def worker_env(self) -> dict[str, str]:
        return {}

    def worker_commands(self, processes: int) -> list[list[str]]:
        return [[base.venv_bin("dramatiq"), "bench.adapters.dramatiq", "--processes",
                 str(processes), "--threads", str(THREADS), "--queues", self.ns]]

    def open(self, ns: str) -> None:
        self.ns = ns

    def enqueue(self, calls: list[base.Call], batched: bool) -> None:
        for c in calls:
            message = ACTORS[c.task].message(*c.args).copy(queue_name=self.ns)
            broker.enqueue(message)

    def close(self) -> None:
        broker.close()
