"""Claim, complete and recover stay fast with a million final rows in the table."""

from __future__ import annotations

import time

import psycopg
import pytest

from stalwart.backends.base import Complete, NewMessage
from stalwart.backends.postgres import PostgresBackend
from stalwart.ids import new_id

FINAL_ROWS = 1_000_000

# Old succeeded rows (1 in 100 dead), with results still inside their TTL, and the counters
# that go with them, so the conservation law still holds.
FILL = """
INSERT INTO {s}.messages (id, task, queue, body, priority, state, max_deliveries, deliveries,
                          created_at, updated_at, result, result_expires_at, attempts)
SELECT '0' || lpad(g::text, 25, '0'), 'old.task', 'default', '\\x7b7d'::bytea, g %% 10,
       CASE WHEN g %% 100 = 0 THEN 'dead' ELSE 'succeeded' END, 5, 1,
       %(now)s - 86400, %(now)s - 3600 + g * 0.001, '1', %(now)s + 86400,
       '[{{"delivery": 1, "worker_id": "old", "started_at": 0, "ended_at": 1,
          "outcome": "succeeded", "error": null}}]'
FROM generate_series(1, %(n)s) g;
INSERT INTO {s}.queue_counts AS c (queue, accepted, succeeded, dead)
VALUES ('default', %(n)s, %(n)s - %(n)s / 100, %(n)s / 100)
ON CONFLICT (queue) DO UPDATE SET accepted = c.accepted + excluded.accepted,
    succeeded = c.succeeded + excluded.succeeded, dead = c.dead + excluded.dead;
"""


def fill_final_rows(dsn: str, schema: str, n: int, now: float) -> None:
    with psycopg.connect(dsn) as conn:
        for statement in FILL.format(s=f'"{schema}"').split(";\n"):
            if statement.strip():
                conn.execute(statement, {"n": n, "now": now})
        conn.commit()
        conn.autocommit = True
        conn.execute(f'VACUUM ANALYZE "{schema}".messages')


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_claim_and_complete_with_a_million_final_rows(
    pg: PostgresBackend, dsn: str, schema: str
) -> None:
    pg.migrate()
    started = time.perf_counter()
    fill_final_rows(dsn, schema, FINAL_ROWS, pg.clock())
    print(f"\n{FINAL_ROWS:,} final rows written in {time.perf_counter() - started:.1f} s")

    n = 300
    ids = pg.enqueue([NewMessage(new_id(), "new.task", "default", b"{}") for _ in range(n)])
    started, done = time.perf_counter(), []
    while batch := pg.claim(["default"], 100, 30, "w"):
        assert all(pg.settle([Complete(d.lease, '"ok"') for d in batch]))
        done.extend(d.lease.message_id for d in batch)
    elapsed = time.perf_counter() - started
    print(f"claim+complete of {n} by 100: {n / elapsed:,.0f} msg/s ({elapsed * 1000:.0f} ms)")
    assert sorted(done) == sorted(ids)

    started = time.perf_counter()
    assert pg.recover_expired() == []
    stats = pg.queue_stats()
    print(f"recover_expired + queue_stats: {(time.perf_counter() - started) * 1000:.0f} ms")
    [default] = stats
    c = default.counts
    assert (c.accepted, c.succeeded + c.dead, c.unaccounted) == (FINAL_ROWS + n, FINAL_ROWS + n, 0)
    # Generous bounds for a busy shared machine; a scan of a million rows would blow them.
    assert elapsed < 10.0
