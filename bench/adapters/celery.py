"""Celery on Redis: its defaults, or ``acks_late=True`` with ``worker_prefetch_multiplier=1``.

``$BENCH_VARIANT`` picks the configuration in the worker, the adapter's variant in the driver.
"""

from __future__ import annotations

import os

from celery import Celery

from bench.adapters import base

VARIANT = os.environ.get("BENCH_VARIANT", "default")

app = Celery("bench", broker=base.redis_url())
app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)
if VARIANT == "acks_late":
    app.conf.update(task_acks_late=True, worker_prefetch_multiplier=1)


@app.task(name="bench.noop")
def noop() -> None:
    base.noop_body()


@app.task(name="bench.stamp")
def stamp(enqueued_at: float) -> None:
    base.stamp_body(enqueued_at)


@app.task(name="bench.slow")
def slow(i: int, seconds: float) -> None:
    base.slow_body(i, seconds)


TASKS = {"noop": noop, "stamp": stamp, "slow": slow}


class Adapter:
    batch_api = None  # group() still publishes one message per task

    def __init__(self, variant: str, redis_url: str) -> None:
        self.variant = variant
        app.conf.broker_url = redis_url
        self.ns = "celery"

    @property
    def after_crash(self) -> str:
        if self.variant == "acks_late":
            return "back after visibility_timeout, 3600 s"
        return "running ones lost; prefetched ones back after visibility_timeout, 3600 s"

    def settings(self) -> str:
        if self.variant == "acks_late":
            return ("task_acks_late=True, worker_prefetch_multiplier=1, otherwise defaults "
                    "(Redis visibility_timeout 3600 s; no result backend)")
        return ("defaults: ack before running, worker_prefetch_multiplier=4 "
                "(Redis visibility_timeout 3600 s; no result backend)")

    def worker_desc(self, processes: int) -> str:
        return f"celery worker --pool prefork -c {processes}"

    def worker_env(self) -> dict[str, str]:
        return {"BENCH_VARIANT": self.variant}

    def worker_commands(self, processes: int) -> list[list[str]]:
        return [[base.venv_bin("celery"), "-A", "bench.adapters.celery", "worker",
                 "-Q", self.ns, "-c", str(processes), "--pool", "prefork", "-l", "WARNING"]]

    def open(self, ns: str) -> None:
        self.ns = ns
        os.environ["BENCH_NS"] = ns

    def enqueue(self, calls: list[base.Call], batched: bool) -> None:
        for c in calls:
            TASKS[c.task].apply_async(c.args, queue=self.ns)

    def close(self) -> None:
        app.close()


