"""Core rates of the PostgreSQL backend against 127.0.0.1:5432/test, in a schema of its own.

    python bench/postgres_core.py [--messages 20000] [--one-by-one 2000] [--final-rows 1000000]

Measures enqueue (batches of 500, and one by one: each a durable commit), claim + complete
in batches of 100, and how soon an idle ``wait`` wakes after an enqueue from another
client; first on an empty table, then again with a million old final rows present. Drops
its schema afterwards.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import threading
import time

import psycopg

from stalwart.backends.base import Complete, NewMessage
from stalwart.backends.postgres import PostgresBackend
from stalwart.ids import new_id
from stalwart.testing.services import drop_postgres_schema

DSN = "postgresql://postgres@127.0.0.1:5432/test"

FILL = """
INSERT INTO {s}.messages (id, task, queue, body, priority, state, max_deliveries, deliveries,
                          created_at, updated_at, result, result_expires_at)
SELECT '0' || lpad(g::text, 25, '0'), 'old.task', 'bulk', '\\x7b7d'::bytea, g % 10,
       CASE WHEN g % 100 = 0 THEN 'dead' ELSE 'succeeded' END, 5, 1,
       {now} - 86400, {now} - 3600 + g * 0.001, '1', {now} + 86400
FROM generate_series(1, {n}) g
"""


def messages(n: int, queue: str) -> list[NewMessage]:
    return [NewMessage(new_id(), "bench.task", queue, b'{"args":[1]}') for _ in range(n)]


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>10,.0f} msg/s  ({n} in {seconds:.2f} s)"


def run(b: PostgresBackend, producer: PostgresBackend, opts: argparse.Namespace) -> None:
    batch = messages(opts.messages, "bulk")
    start = time.perf_counter()
    for i in range(0, len(batch), 500):
        b.enqueue(batch[i:i + 500])
    print("  enqueue, batches of 500 ", rate(len(batch), time.perf_counter() - start))

    single = messages(opts.one_by_one, "single")
    start = time.perf_counter()
    for m in single:
        b.enqueue([m])
    print("  enqueue, one by one     ", rate(len(single), time.perf_counter() - start))

    for queue in ("bulk", "single"):
        done, start = 0, time.perf_counter()
        while got := b.claim([queue], 100, 60, "bench"):
            assert all(b.settle([Complete(d.lease, "1") for d in got]))
            done += len(got)
        print(f"  claim+complete by 100 ({queue:6})", rate(done, time.perf_counter() - start))

    latencies = []
    b.wait(["wake"], 0.01)
    for _ in range(opts.wakes):
        woke: list[float] = []

        def waiter(woke: list[float] = woke) -> None:
            if b.wait(["wake"], 5.0):
                woke.append(time.perf_counter())

        th = threading.Thread(target=waiter)
        th.start()
        time.sleep(0.05)
        sent = time.perf_counter()
        producer.enqueue(messages(1, "wake"))
        th.join()
        latencies.append((woke[0] - sent) * 1000)
        b.claim(["wake"], 10, 60, "bench")
    latencies.sort()
    print(f"  wake latency, idle waiter  median {statistics.median(latencies):.2f} ms, "
          f"p95 {latencies[int(len(latencies) * 0.95) - 1]:.2f} ms, max {latencies[-1]:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--one-by-one", type=int, default=2000)
    parser.add_argument("--final-rows", type=int, default=1_000_000)
    parser.add_argument("--wakes", type=int, default=40)
    opts = parser.parse_args()
    schema = "bench_" + secrets.token_hex(6)
    url = f"{DSN}?schema={schema}"
    b, producer = PostgresBackend(url), PostgresBackend(url)
    try:
        b.migrate()
        info = b.server_info()
        print(f"PostgreSQL {info['server_version']}, synchronous_commit="
              f"{info['synchronous_commit']}, fsync={info['fsync']}, schema {schema}")
        print("empty table:")
        run(b, producer, opts)
        start = time.perf_counter()
        with psycopg.connect(DSN, autocommit=True) as conn:
            conn.execute(FILL.format(s=f'"{schema}"', n=opts.final_rows, now=time.time()))
            conn.execute(f'VACUUM ANALYZE "{schema}".messages')
        print(f"with {opts.final_rows:,} final rows (written in "
              f"{time.perf_counter() - start:.1f} s):")
        run(b, producer, opts)
    finally:
        b.close()
        producer.close()
        drop_postgres_schema(DSN, schema)
        print(f"dropped schema {schema}")


if __name__ == "__main__":
    main()
