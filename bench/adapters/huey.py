"""huey on Redis (``RedisHuey``: blocking pops), process workers.

A huey instance names its queue, so each phase opens one named ``$BENCH_NS`` that shares
the module instance's task registry.
"""

from __future__ import annotations

from huey import RedisHuey

from bench.adapters import base

huey = RedisHuey(base.namespace(), url=base.redis_url())


@huey.task(name="noop")
def noop() -> None:
    base.noop_body()


@huey.task(name="stamp")
def stamp(enqueued_at: float) -> None:
    base.stamp_body(enqueued_at)


@huey.task(name="slow")
def slow(i: int, seconds: float) -> None:
    base.slow_body(i, seconds)


TASKS = {"noop": noop, "stamp": stamp, "slow": slow}


class Adapter:
    batch_api = None
    after_crash = "lost: popped before running"

    def __init__(self, variant: str, redis_url: str) -> None:
        self.redis_url = redis_url
        self.ns = huey.name
        self.huey = huey

    def settings(self) -> str:
        return ("defaults (RedisHuey, blocking dequeue; a task is popped before it runs, "
                "no redelivery after a crash); results stored only when not None")

    def worker_desc(self, processes: int) -> str:
        return f"huey_consumer -k process -w {processes}"

    def worker_env(self) -> dict[str, str]:
        return {}

    def worker_commands(self, processes: int) -> list[list[str]]:
        return [[base.venv_bin("huey_consumer"), "bench.adapters.huey.huey", "-k", "process",
                 "-w", str(processes), "-q"]]

    def open(self, ns: str) -> None:
        self.ns = ns
        self.huey = RedisHuey(ns, url=self.redis_url)
        self.huey._registry = huey._registry  # the tasks were declared on the module's instance

    def enqueue(self, calls: list[base.Call], batched: bool) -> None:
        for c in calls:
            self.huey.enqueue(TASKS[c.task].s(*c.args))

    def close(self) -> None:
        pass
