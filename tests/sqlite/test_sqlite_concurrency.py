"""Many processes and threads on one SQLite file: every message runs once, nothing is lost."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from stalwart.backends.base import Complete, NewMessage
from stalwart.backends.sqlite import SQLiteBackend
from stalwart.errors import is_transient
from stalwart.states import State

PER_PROCESS = 300


def _worker(url: str, tag: int, ready: multiprocessing.synchronize.Event) -> None:
    """Enqueue this process's share in batches while claiming and completing anything."""
    backend = SQLiteBackend(url)
    ready.wait(10)
    pending = [NewMessage(f"p{tag}-{i:05d}", "t", queue="q", body=b"x")
               for i in range(PER_PROCESS)]
    idle_since = None
    while True:
        if pending:
            backend.enqueue(pending[:50])
            pending = pending[50:]
        got = backend.claim(["q"], 10, 60.0, f"w{tag}")
        if got:
            idle_since = None
            backend.settle([Complete(d.lease, str(os.getpid())) for d in got])
        elif not pending:
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since > 1.0:
                break
            backend.wait(["q"], 0.2)
    backend.close()


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_processes_share_one_file_and_run_each_message_once(tmp_path: Path, method: str) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    backend = SQLiteBackend(url)  # with fork, children inherit this object's connection
    ctx = multiprocessing.get_context(method)
    ready = ctx.Event()
    procs = [ctx.Process(target=_worker, args=(url, n, ready)) for n in range(3)]
    for p in procs:
        p.start()
    ready.set()
    for p in procs:
        p.join(90)
        assert p.exitcode == 0
    total = 3 * PER_PROCESS
    rows = backend.messages(limit=total + 10)
    assert len(rows) == total
    assert all(m.state == State.SUCCEEDED for m in rows)
    assert all(m.deliveries == 1 and len(m.attempts) == 1 for m in rows), "a message ran twice"
    [stats] = backend.queue_stats()
    assert stats.counts.accepted == stats.counts.succeeded == total
    assert stats.counts.unaccounted == 0
    backend.close()


def test_threads_of_one_process_never_claim_the_same_message(tmp_path: Path) -> None:
    backend = SQLiteBackend(f"sqlite:///{tmp_path / 'threads.db'}")
    backend.enqueue([NewMessage(f"m{i:05d}", "t", body=b"x") for i in range(400)])
    seen: list[str] = []
    lock = threading.Lock()

    def run(worker: str) -> None:
        while got := backend.claim(["default"], 7, 60.0, worker):
            with lock:
                seen.extend(d.lease.message_id for d in got)
            assert all(backend.settle([Complete(d.lease) for d in got]))

    threads = [threading.Thread(target=run, args=(f"t{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(seen) == [f"m{i:05d}" for i in range(400)]
    backend.close()


def _fork_child_enqueues(backend: SQLiteBackend) -> None:
    backend.enqueue([NewMessage("from-child", "t", body=b"c")])


def test_fork_child_reopens_and_parent_connection_survives(tmp_path: Path) -> None:
    backend = SQLiteBackend(f"sqlite:///{tmp_path / 'fork.db'}")
    backend.enqueue([NewMessage("from-parent", "t", body=b"p")])
    child = multiprocessing.get_context("fork").Process(
        target=_fork_child_enqueues, args=(backend,))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    # The parent's own connection is still usable after the child exited.
    assert {m.id for m in backend.messages()} == {"from-parent", "from-child"}
    backend.enqueue([NewMessage("after-fork", "t", body=b"p")])
    assert backend.message("after-fork") is not None
    backend.close()


def _hold_write_lock(path: Path, seconds: float, held: threading.Event) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    held.set()
    time.sleep(seconds)
    conn.execute("COMMIT")
    conn.close()


def test_a_held_write_lock_is_waited_out_within_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    backend = SQLiteBackend(f"sqlite:///{path}?busy_timeout=10")
    held = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(path, 0.5, held))
    holder.start()
    held.wait(5)
    started = time.monotonic()
    assert backend.enqueue([NewMessage("m1", "t")]) == ["m1"]
    assert time.monotonic() - started >= 0.3
    holder.join()
    backend.close()


def test_a_lock_held_past_busy_timeout_raises_a_transient_error(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    backend = SQLiteBackend(f"sqlite:///{path}?busy_timeout=0.2")
    held = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(path, 1.5, held))
    holder.start()
    held.wait(5)
    with pytest.raises(sqlite3.OperationalError) as caught:
        backend.enqueue([NewMessage("m1", "t")])
    assert is_transient(caught.value)
    holder.join()
    assert backend.enqueue([NewMessage("m1", "t")]) == ["m1"]  # nothing half-written
    assert backend.queue_stats()[0].counts.accepted == 1
    backend.close()


def _die_inside_a_write(path: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE messages SET state = 'succeeded'")
    conn.execute("DELETE FROM queue_counts")
    os.kill(os.getpid(), 9)


def test_a_process_killed_inside_a_write_leaves_nothing_half_done(tmp_path: Path) -> None:
    path = tmp_path / "killed.db"
    backend = SQLiteBackend(f"sqlite:///{path}?busy_timeout=10")
    backend.enqueue([NewMessage(f"m{i}", "t") for i in range(5)])
    child = multiprocessing.get_context("spawn").Process(
        target=_die_inside_a_write, args=(str(path),))
    child.start()
    child.join(30)
    assert child.exitcode == -9
    # The lock died with the process; the half-written transaction is gone.
    assert [m.state for m in backend.messages()] == [State.QUEUED] * 5
    assert backend.queue_stats()[0].counts.accepted == 5
    got = backend.claim(["default"], 5, 30.0, "w")
    assert len(got) == 5 and all(backend.settle([Complete(d.lease) for d in got]))
    backend.close()


def _claim_then_die(url: str) -> None:
    backend = SQLiteBackend(url)
    assert len(backend.claim(["default"], 20, 1.0, "doomed")) == 20
    os.kill(os.getpid(), 9)


def test_leases_of_a_killed_process_come_back_after_they_expire(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lost.db'}"
    backend = SQLiteBackend(url)
    backend.enqueue([NewMessage(f"m{i:02d}", "t") for i in range(20)])
    child = multiprocessing.get_context("spawn").Process(target=_claim_then_die, args=(url,))
    child.start()
    child.join(30)
    assert child.exitcode == -9
    assert backend.queue_stats()[0].counts.running == 20
    time.sleep(1.1)
    recovered = backend.recover_expired()
    assert sorted(recovered) == [(f"m{i:02d}", State.QUEUED) for i in range(20)]
    got = backend.claim(["default"], 50, 30.0, "survivor")
    assert len(got) == 20 and all(d.deliveries == 2 for d in got)
    assert all(backend.settle([Complete(d.lease) for d in got]))
    info = backend.message("m00")
    assert info is not None
    assert [a.outcome for a in info.attempts] == ["lease-expired", "succeeded"]
    counts = backend.queue_stats()[0].counts
    assert (counts.accepted, counts.succeeded, counts.unaccounted) == (20, 20, 0)
    backend.close()
