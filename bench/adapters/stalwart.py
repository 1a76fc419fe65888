"""stalwart on Redis (the bench's server), SQLite (a file) or PostgreSQL (a schema of its own).

The lease is 5 s (the default is 30 s) so that the recovery test, which waits for the leases
of a SIGKILLed worker to expire, fits in the benchmark's time.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from bench.adapters import base
from stalwart import App

LEASE_SECONDS = 5.0
HEARTBEAT_SECONDS = LEASE_SECONDS / 3
POSTGRES = os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")

app = App("bench", broker=os.environ.get("BENCH_BROKER"), lease_seconds=LEASE_SECONDS,
          heartbeat_seconds=HEARTBEAT_SECONDS)


@app.task(name="noop")
def noop() -> None:
    base.noop_body()


@app.task(name="stamp")
def stamp(enqueued_at: float) -> None:
    base.stamp_body(enqueued_at)


@app.task(name="slow")
def slow(i: int, seconds: float) -> None:
    base.slow_body(i, seconds)


TASKS = {"noop": noop, "stamp": stamp, "slow": slow}


class Adapter:
    batch_api = "App.send([signatures]) (one backend call)"
    lease_seconds = LEASE_SECONDS
    after_crash = "back when the lease expires"

    def __init__(self, variant: str, redis_url: str) -> None:
        self.variant = variant
        tag = secrets.token_hex(4)
        self.sqlite_path: Path | None = None
        self.schema: str | None = None
        if variant == "redis":
            self.url = f"{redis_url}?prefix=bench_{tag}"
        elif variant == "sqlite":
            base.OUT.mkdir(parents=True, exist_ok=True)
            self.sqlite_path = base.OUT / f"stalwart-{tag}.db"
            self.url = f"sqlite:///{self.sqlite_path}"
        elif variant == "postgres":
            self.schema = f"bench_{tag}"
            self.url = f"{POSTGRES}?schema={self.schema}"
        else:
            raise ValueError(f"unknown stalwart variant {variant!r}")
        app.broker_url = self.url
        app.close()
        self.ns = app.default_queue

    def settings(self) -> str:
        durability = {
            "redis": "Redis without AOF (as every peer here)",
            "sqlite": "SQLite WAL, synchronous=FULL",
            "postgres": "PostgreSQL committed",
        }[self.variant]
        return (f"lease {LEASE_SECONDS:.0f} s (default 30), heartbeat {HEARTBEAT_SECONDS:.1f} s, "
                f"prefetch 4 x concurrency (default); ack after running; {durability}")

    def worker_desc(self, processes: int) -> str:
        return f"stalwart worker -c {processes} --pool process"

    def worker_env(self) -> dict[str, str]:
        return {"BENCH_BROKER": self.url}

    def worker_commands(self, processes: int) -> list[list[str]]:
        return [[base.python_bin(), "-m", "stalwart", "worker", "bench.adapters.stalwart:app",
                 "-Q", self.ns, "-c", str(processes), "--pool", "process",
                 "--log-level", "warning"]]

    def open(self, ns: str) -> None:
        self.ns = ns

    def enqueue(self, calls: list[base.Call], batched: bool) -> None:
        if batched:
            app.send([TASKS[c.task].s(*c.args).set(queue=self.ns) for c in calls])
        else:
            for c in calls:
                TASKS[c.task].apply_async(c.args, queue=self.ns)

    def close(self) -> None:
        app.close()
        if self.sqlite_path is not None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.sqlite_path}{suffix}").unlink(missing_ok=True)
        if self.schema is not None:
            import psycopg
            from psycopg import sql

            with psycopg.connect(POSTGRES, autocommit=True, connect_timeout=5) as conn:
                conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(self.schema)))
