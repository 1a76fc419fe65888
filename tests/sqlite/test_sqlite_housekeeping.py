"""Recovery and cleanup: results past their TTL, retention of old final rows, index use."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from pathlib import Path
from typing import Any

from stalwart.backends.base import Complete, NewMessage
from stalwart.backends.sqlite import SQLiteBackend
from stalwart.states import State


class Clock:
    def __init__(self) -> None:
        self.now = 5_000.0

    def __call__(self) -> float:
        return self.now


def _run_all(backend: SQLiteBackend, n: int, queue: str = "q", ttl: float | None = 10.0) -> None:
    backend.enqueue([NewMessage(f"{queue}{i:05d}", "t", queue=queue) for i in range(n)])
    while got := backend.claim([queue], 200, 30.0, "w"):
        assert all(backend.settle([Complete(d.lease, '"ok"', ttl) for d in got]))


def test_results_past_their_ttl_are_removed_in_batches(tmp_path: Path) -> None:
    clock = Clock()
    backend = SQLiteBackend(f"sqlite:///{tmp_path / 'ttl.db'}", clock=clock)
    _run_all(backend, 1200)  # more than one cleanup batch
    _run_all(backend, 3, queue="keep", ttl=None)
    clock.now += 11
    assert backend.recover_expired() == []
    gone = backend.messages(queue="q", limit=2000)
    assert len(gone) == 1200
    assert all(m.result is None and m.result_expired for m in gone)
    kept = backend.messages(queue="keep")
    assert all(m.result == '"ok"' and not m.result_expired for m in kept)
    backend.close()


def test_retention_deletes_old_final_rows_and_frees_their_keys(tmp_path: Path) -> None:
    clock = Clock()
    backend = SQLiteBackend(f"sqlite:///{tmp_path / 'ret.db'}?retention=100", clock=clock)
    backend.enqueue([NewMessage("old", "t", idempotency_key="k1")])
    backend.cancel(["old"])
    backend.enqueue([NewMessage("dead", "t", max_deliveries=1)])
    [d] = backend.claim(["default"], 1, 5.0, "w")
    clock.now += 6
    assert backend.recover_expired() == [("dead", State.DEAD)]
    clock.now += 50
    backend.enqueue([NewMessage("young", "t")])
    backend.cancel(["young"])
    clock.now += 60  # "old" is 110 s past its final transition, "young" 60 s
    backend.recover_expired()
    assert backend.message("old") is None
    assert backend.message("young") is not None
    assert backend.message("dead") is not None, "dead letters stay until purged"
    assert backend.enqueue([NewMessage("again", "t", idempotency_key="k1")]) == ["again"]
    [stats] = backend.queue_stats()  # counters keep the deleted rows
    assert (stats.counts.accepted, stats.counts.cancelled, stats.counts.dead) == (4, 2, 1)
    backend.close()


def test_without_retention_final_rows_stay(tmp_path: Path) -> None:
    clock = Clock()
    backend = SQLiteBackend(f"sqlite:///{tmp_path / 'keep.db'}", clock=clock)
    _run_all(backend, 5)
    clock.now += 10 * 365 * 86400
    backend.recover_expired()
    assert len(backend.messages()) == 5
    backend.close()


def test_hot_paths_search_indexes_and_never_scan_the_messages_table(tmp_path: Path) -> None:
    clock = Clock()
    backend = SQLiteBackend(f"sqlite:///{tmp_path / 'plan.db'}?retention=100", clock=clock)
    backend.enqueue([NewMessage(f"m{i:04d}", "t", queue="q", priority=i % 3,
                                eta=clock.now + (i % 2) * 5) for i in range(50)])
    statements: list[str] = []
    conn = backend._conn()
    conn.set_trace_callback(statements.append)
    got = backend.claim(["q", "r"], 10, 30.0, "w")
    backend.extend([d.lease for d in got], 30.0)
    backend.settle([Complete(d.lease, "1", 1.0) for d in got[:5]])
    clock.now += 200
    backend.recover_expired()
    backend.wait(["q"], 0)
    conn.set_trace_callback(None)
    checked = 0
    for sql in statements:
        if not sql.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")):
            continue
        plan = " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql))
        assert "SCAN messages" not in plan and "SCAN attempts" not in plan, (sql, plan)
        checked += 1
    assert checked > 10
    backend.close()


def _open_and_enqueue(url: str, tag: int, start: Any) -> None:
    start.wait(30)
    backend = SQLiteBackend(url)
    backend.enqueue([NewMessage(f"m{tag}", "t")])
    backend.close()


def test_processes_racing_to_create_the_schema_all_succeed(tmp_path: Path) -> None:
    path = tmp_path / "race.db"
    url = f"sqlite:///{path}"
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_open_and_enqueue, args=(url, n, start)) for n in range(4)]
    for p in procs:
        p.start()
    time.sleep(0.5)
    start.set()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    backend = SQLiteBackend(url)
    assert sorted(m.id for m in backend.messages()) == ["m0", "m1", "m2", "m3"]
    backend.close()
    conn = sqlite3.connect(path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    conn.close()
    assert {"messages", "attempts", "queue_counts", "jobs", "workers"} <= tables
