"""RQ: its default worker (forks a work horse per job); ``rq worker-pool`` for 2 processes."""

from __future__ import annotations

from rq import Queue

from bench.adapters import base
from redis import Redis


def noop() -> None:
    base.noop_body()


def stamp(enqueued_at: float) -> None:
    base.stamp_body(enqueued_at)


def slow(i: int, seconds: float) -> None:
    base.slow_body(i, seconds)


TASKS = {"noop": noop, "stamp": stamp, "slow": slow}


class Adapter:
    batch_api = "Queue.enqueue_many (one pipeline)"
    after_crash = "lost: to the failed registry"

    def __init__(self, variant: str, redis_url: str) -> None:
        self.redis_url = redis_url
        self.conn = Redis.from_url(redis_url)
        self.queue = Queue("bench", connection=self.conn)

    def settings(self) -> str:
        return ("defaults: a forked work horse per job (in a session of its own); a job "
                "abandoned by a dead worker goes to the failed registry, not rerun; "
                "results kept 500 s")

    def worker_desc(self, processes: int) -> str:
        if processes == 1:
            return "rq worker (fork per job)"
        return f"rq worker-pool -n {processes} (fork per job)"

    def worker_env(self) -> dict[str, str]:
        return {}

    def worker_commands(self, processes: int) -> list[list[str]]:
        if processes == 1:
            cmd = [base.venv_bin("rq"), "worker", "-q", "-u", self.redis_url]
        else:
            cmd = [base.venv_bin("rq"), "worker-pool", "-q", "-n", str(processes),
                   "-u", self.redis_url]
        return [cmd + [self.queue.name]]

    def open(self, ns: str) -> None:
        self.queue = Queue(ns, connection=self.conn)

    def enqueue(self, calls: list[base.Call], batched: bool) -> None:
        if batched:
            self.queue.enqueue_many(
                [Queue.prepare_data(TASKS[c.task], args=c.args) for c in calls])
        else:
            for c in calls:
                self.queue.enqueue(TASKS[c.task], *c.args)

    def close(self) -> None:
        self.conn.close()
