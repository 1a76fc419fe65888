"""Retention: old final rows are pruned in small batches; counters keep them."""

from __future__ import annotations

from stalwart.backends.base import Complete, NewMessage
from stalwart.backends.postgres import PostgresBackend
from stalwart.ids import new_id
from stalwart.testing.conformance.fixtures import FakeClock


def test_old_final_rows_are_pruned_and_counted(pg_url: str, clock: FakeClock) -> None:
    url = pg_url + "&retention=3600&prune_batch=7"
    with PostgresBackend(url, clock=clock) as b:
        ids = b.enqueue([NewMessage(new_id(), "t") for _ in range(30)])
        for d in b.claim(["default"], 20, 30, "w"):
            assert b.settle([Complete(d.lease, "1")]) == [True]
        b.cancel(ids[20:25])
        clock.advance(3599)
        b.recover_expired()
        assert len(b.messages(limit=100)) == 30  # not old enough yet
        clock.advance(2)
        b.recover_expired()  # at most a few small batches per call
        b.recover_expired()
        left = b.messages(limit=100)
        assert sorted(m.id for m in left) == sorted(ids[25:])
        [stats] = b.queue_stats()
        c = stats.counts
        assert (c.accepted, c.succeeded, c.cancelled, c.queued, c.unaccounted) == (30, 20, 5, 5, 0)


def test_dead_rows_stay_unless_dead_retention_is_set(pg_url: str, clock: FakeClock) -> None:
    from stalwart.backends.base import Bury, ErrorInfo

    with PostgresBackend(pg_url + "&retention=10", clock=clock) as b:
        b.enqueue([NewMessage(new_id(), "t")])
        [d] = b.claim(["default"], 1, 30, "w")
        b.settle([Bury(d.lease, ErrorInfo("fail"))])
        clock.advance(86400)
        b.recover_expired()
        assert len(b.messages(state="dead")) == 1
    with PostgresBackend(pg_url + "&dead_retention=60", clock=clock) as b:
        clock.advance(61)
        b.recover_expired()
        assert b.messages(state="dead") == []
        [stats] = b.queue_stats()
        assert stats.counts.dead == 1
