"""Transactional enqueue: messages written through the caller's own connection and transaction."""

from __future__ import annotations

import threading

import psycopg

from stalwart.backends.base import NewMessage
from stalwart.backends.postgres import PostgresBackend
from stalwart.ids import new_id


def _message(queue: str = "default") -> NewMessage:
    return NewMessage(new_id(), "orders.ship", queue, b'{"args":[7]}')


def test_declares_the_capability(pg: PostgresBackend) -> None:
    assert "transactional_enqueue" in pg.capabilities


def test_committed_with_the_callers_transaction(pg: PostgresBackend, dsn: str) -> None:
    m = _message()
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE TEMP TABLE orders (id int)")
        conn.execute("INSERT INTO orders VALUES (7)")
        assert pg.enqueue_in(conn, [m]) == [m.id]
        # Not visible to anyone else before the caller commits.
        assert pg.message(m.id) is None
        assert pg.claim(["default"], 10, 30, "w") == []
        conn.commit()
    info = pg.message(m.id)
    assert info is not None and info.state == "queued"
    [stats] = pg.queue_stats()
    assert (stats.queue, stats.counts.accepted, stats.counts.queued) == ("default", 1, 1)
    [delivery] = pg.claim(["default"], 10, 30, "w")
    assert delivery.lease.message_id == m.id and delivery.body == m.body


def test_rolled_back_with_the_callers_transaction(pg: PostgresBackend, dsn: str) -> None:
    m = _message()
    with psycopg.connect(dsn) as conn:
        assert pg.enqueue_in(conn, [m]) == [m.id]
        conn.rollback()
    assert pg.message(m.id) is None
    assert pg.claim(["default"], 10, 30, "w") == []
    assert all(s.counts.accepted == 0 for s in pg.queue_stats())


def test_a_failing_statement_of_the_caller_takes_the_messages_with_it(
    pg: PostgresBackend, dsn: str
) -> None:
    m = _message()
    with psycopg.connect(dsn) as conn:
        pg.enqueue_in(conn, [m])
        try:
            conn.execute("SELECT 1 / 0")
        except psycopg.errors.DivisionByZero:
            pass
        conn.rollback()
    assert pg.message(m.id) is None


def test_waiters_are_woken_at_the_callers_commit(pg: PostgresBackend, dsn: str) -> None:
    woke: list[bool] = []
    pg.wait(["mail"], 0.01)  # LISTEN is open from here on
    waiter = threading.Thread(target=lambda: woke.append(pg.wait(["mail"], 10.0)))
    with psycopg.connect(dsn) as conn:
        pg.enqueue_in(conn, [_message("mail")])
        waiter.start()
        waiter.join(0.3)
        assert waiter.is_alive(), "woken before the caller committed"
        conn.commit()
    waiter.join(5)
    assert woke == [True]
