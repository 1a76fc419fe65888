"""Counters stay exact while many clients settle on one queue and others fold the deltas."""

from __future__ import annotations

import threading

import psycopg

from stalwart.backends.base import Bury, Complete, ErrorInfo, NewJob, NewMessage
from stalwart.backends.postgres import PostgresBackend
from stalwart.ids import new_id


def test_concurrent_settles_and_folds_keep_every_count(
    pg_url: str, dsn: str, schema: str
) -> None:
    n, workers = 400, 4
    job = NewJob(new_id(), "import")
    with PostgresBackend(pg_url) as setup:
        setup.enqueue([NewMessage(new_id(), "t", "hot", job_id=job.id) for _ in range(n)], job)
    clients = [PostgresBackend(pg_url) for _ in range(workers + 1)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def work(b: PostgresBackend) -> None:
        try:
            while batch := b.claim(["hot"], 5, 30, "w"):
                for i, d in enumerate(batch):
                    outcome = (Bury(d.lease, ErrorInfo("fail")) if i == 0
                               else Complete(d.lease, "1"))
                    assert b.settle([outcome]) == [True]
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    def fold(b: PostgresBackend) -> None:
        while not stop.is_set():
            b.recover_expired()
            c = b.job(job.id).counts  # type: ignore[union-attr]
            if c.unaccounted:
                errors.append(AssertionError(f"mid-run: {c}"))

    threads = [threading.Thread(target=work, args=(b,)) for b in clients[:workers]]
    folder = threading.Thread(target=fold, args=(clients[-1],))
    folder.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    stop.set()
    folder.join(10)
    try:
        assert errors == []
        b = clients[0]
        for counts in (b.job(job.id).counts, b.queue_stats()[0].counts):  # type: ignore[union-attr]
            assert counts.accepted == n and counts.unaccounted == 0
            assert counts.succeeded + counts.dead == n and counts.dead > 0
        b.recover_expired()  # everything folded: the same totals from the folded rows alone
        with psycopg.connect(dsn) as conn:
            left = conn.execute(f'SELECT count(*) FROM "{schema}".counter_deltas').fetchone()
        assert left == (0,)
        assert b.queue_stats()[0].counts.succeeded + b.queue_stats()[0].counts.dead == n
    finally:
        for c in clients:
            c.close()
