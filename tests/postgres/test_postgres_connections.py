"""Connections: keepalive on every socket, health checks, server facts, and waking waiters."""

from __future__ import annotations

import os
import sys
import threading
import time

import psycopg
import pytest

from stalwart.backends.base import NewMessage
from stalwart.backends.postgres import PostgresBackend
from stalwart.ids import new_id
from stalwart.net import ConnectionSettings
from stalwart.testing.services import postgres_address

SETTINGS = ConnectionSettings(keepalive_idle=37, keepalive_interval=7, keepalive_count=4)


def test_every_connection_has_keepalive_as_configured(pg_url: str) -> None:
    with PostgresBackend(pg_url + "&pool_min=2&pool_max=3", settings=SETTINGS) as b:
        b.enqueue([NewMessage(new_id(), "t")])
        b.wait(["default"], 0.01)  # opens the dedicated LISTEN connection
        deadline = time.monotonic() + 10
        while len(found := b.connections()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)  # the pool opens its connections in the background
        # pool_min..pool_max pooled connections, and the LISTEN connection
        assert 3 <= len(found) <= 4, found
        for k in found:
            assert k.peer.endswith(":5432"), k
            assert (k.keepalive, k.idle, k.interval, k.count) == (True, 37, 7, 4), k
        ports = sorted(int(k.local.rpartition(":")[2]) for k in found)
        with psycopg.connect(pg_url.partition("?")[0]) as conn:
            server_side = conn.execute(
                "SELECT client_port FROM pg_stat_activity WHERE client_port = ANY(%s)"
                " AND application_name = 'stalwart' ORDER BY 1", (ports,)).fetchall()
        assert [r[0] for r in server_side] == ports


def test_a_connection_killed_while_idle_is_replaced(pg_url: str) -> None:
    quick = ConnectionSettings(health_check_interval=0.0)
    with PostgresBackend(pg_url + "&pool_min=1&pool_max=1", settings=quick) as b:
        b.enqueue([NewMessage(new_id(), "t")])
        [before] = b.connections()
        port = int(before.local.rpartition(":")[2])
        with psycopg.connect(pg_url.partition("?")[0], autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                          " WHERE client_port = %s", (port,))
        time.sleep(0.2)
        # The health check finds the dead connection before use: no error reaches the caller.
        assert len(b.claim(["default"], 10, 30, "w")) == 1


def test_server_info(pg: PostgresBackend) -> None:
    info = pg.server_info()
    assert info["synchronous_commit"] in ("on", "remote_apply", "remote_write", "local", "off")
    assert info["fsync"] in ("on", "off")
    assert info["schema_version"] >= 1
    assert info["server_version"][:2].isdigit()
    assert info["server_time"]
    assert abs(info["clock_skew"]) < 5  # one host: the same clock


def test_an_enqueue_wakes_an_idle_waiter_within_milliseconds(pg_url: str) -> None:
    with PostgresBackend(pg_url) as waiter, PostgresBackend(pg_url) as producer:
        waiter.wait(["fast"], 0.01)
        latencies = []
        for _ in range(5):
            woke: list[float] = []
            t = threading.Thread(
                target=lambda w=woke: w.append(time.perf_counter()) if waiter.wait(
                    ["fast"], 5.0) else None)
            t.start()
            time.sleep(0.1)
            sent = time.perf_counter()
            producer.enqueue([NewMessage(new_id(), "t", "fast")])
            t.join(6)
            assert woke, "the waiter was not woken"
            latencies.append(woke[0] - sent)
            waiter.claim(["fast"], 10, 30, "w")
        assert sorted(latencies)[2] < 0.1, latencies  # the median; the machine may be busy


def test_other_queues_do_not_wake_a_waiter(pg_url: str) -> None:
    with PostgresBackend(pg_url) as waiter, PostgresBackend(pg_url) as producer:
        waiter.wait(["mine"], 0.01)
        timer = threading.Timer(0.1, producer.enqueue, ([NewMessage(new_id(), "t", "other")],))
        timer.start()
        started = time.monotonic()
        assert waiter.wait(["mine"], 0.6) is False
        assert time.monotonic() - started >= 0.55
        timer.join()


def test_wait_wakes_when_a_scheduled_message_falls_due(pg_url: str) -> None:
    with PostgresBackend(pg_url) as b:
        due = time.time() + 0.4
        b.enqueue([NewMessage(new_id(), "t", "later", eta=due)])
        assert b.wait(["later"], 5.0) is True
        assert due <= time.time() < due + 1.5
        assert len(b.claim(["later"], 10, 30, "w")) == 1


def test_wait_wakes_when_a_lease_runs_out(pg_url: str) -> None:
    with PostgresBackend(pg_url) as b:
        b.enqueue([NewMessage(new_id(), "t", "leased")])
        [d] = b.claim(["leased"], 10, 0.4, "w")
        assert b.wait(["leased"], 5.0) is True
        assert d.expires_at <= time.time() < d.expires_at + 1.5
        assert [s for _, s in b.recover_expired()] == ["queued"]


def own_sockets_to(port: int) -> set[int]:
    """Local ports of this process's open TCP sockets to ``port`` (from /proc: Linux only)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    found = set()
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        if not os.path.exists(table):
            continue
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], fields[9]
                if inode in inodes and int(remote.rpartition(":")[2], 16) == port:
                    found.add(int(local.rpartition(":")[2], 16))
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads sockets from /proc")
def test_closing_a_backend_releases_every_connection_it_opened(pg_url: str, dsn: str) -> None:
    port = postgres_address()[2]
    before = own_sockets_to(port)
    opened = 0
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin_port = admin.execute(
            "SELECT client_port FROM pg_stat_activity WHERE pid = pg_backend_pid()"
        ).fetchone()[0]  # type: ignore[index]
        before.add(admin_port)
        for i in range(50):
            b = PostgresBackend(pg_url + "&pool_min=2&pool_max=3")
            b.enqueue([NewMessage(new_id(), "t")])
            b.wait(["default"], 0)  # opens the LISTEN connection
            b.claim(["default"], 1, 30, "w")
            mine = own_sockets_to(port) - before
            # The server's sessions behind them: this process's ports, so not another user's.
            sessions = admin.execute(
                "SELECT pid, client_port FROM pg_stat_activity"
                " WHERE application_name = 'stalwart' AND client_port = ANY(%s)",
                (sorted(mine),)).fetchall()
            assert len(mine) >= 2 and len(sessions) == len(mine), (i, mine, sessions)
            opened += len(mine)
            b.claim(["default"], 1, 30, "w")  # close at once after a use: a return in flight
            b.close()
            assert own_sockets_to(port) - before == set(), f"backend {i} left sockets open"
            deadline = time.monotonic() + 5
            while left := admin.execute(
                "SELECT pid, client_port FROM pg_stat_activity"
                " WHERE (pid, client_port) IN (SELECT * FROM unnest(%s::int[], %s::int[]))",
                ([p for p, _ in sessions], [c for _, c in sessions])).fetchall():
                assert time.monotonic() < deadline, f"backend {i} left sessions {left}"
                time.sleep(0.01)
    assert opened >= 100


def test_close_ends_a_wait_in_progress_at_once_and_other_waiters_sleep_on(pg_url: str) -> None:
    port = postgres_address()[2]
    with PostgresBackend(pg_url) as other:
        other.wait(["q"], 0.01)
        before = own_sockets_to(port)
        b = PostgresBackend(pg_url)
        b.wait(["q"], 0.01)
        results: dict[str, bool] = {}
        waiting = [threading.Thread(target=lambda: results.update(closed=b.wait(["q"], 10.0))),
                   threading.Thread(target=lambda: results.update(other=other.wait(["q"], 1.0)))]
        for t in waiting:
            t.start()
        time.sleep(0.2)
        started = time.monotonic()
        b.close()
        assert time.monotonic() - started < 2.0  # not the wait's 10 s
        waiting[0].join(5)
        assert results["closed"] is False
        assert b.wait(["q"], 0.5) is False  # no new LISTEN connection after close
        assert own_sockets_to(port) == before
        waiting[1].join(5)
        assert results["other"] is False  # the wake-up named no queue
