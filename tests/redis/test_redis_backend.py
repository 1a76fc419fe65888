"""What the Redis backend promises beyond the shared contract: sockets, wake-ups, key layout."""

from __future__ import annotations

import hashlib
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.connection import AbstractConnection
from redis.crc import key_slot

from stalwart.backends import open_backend
from stalwart.backends.base import Complete, ErrorInfo, Lease, NewJob, NewMessage, Reschedule
from stalwart.backends.redis import RedisBackend
from stalwart.backends.redis.scripts import Call, Scripts
from stalwart.ids import new_id
from stalwart.net import ConnectionSettings
from stalwart.testing.conformance.fixtures import FakeClock
from stalwart.testing.services import in_ci, redis_url


@pytest.fixture
def url() -> Iterator[str]:
    with redis_url() as u:
        yield u


@pytest.fixture
def backend(url: str) -> Iterator[RedisBackend]:
    b = open_backend(url)
    assert isinstance(b, RedisBackend)
    try:
        yield b
    finally:
        b.close()


def msg(queue: str = "default", **kw: object) -> NewMessage:
    mid = new_id()
    return NewMessage(id=mid, task="t", queue=queue, body=mid.encode(), **kw)  # type: ignore[arg-type]


def test_every_socket_has_keepalive_with_the_configured_timers(url: str) -> None:
    settings = ConnectionSettings(keepalive_idle=45, keepalive_interval=7, keepalive_count=4)
    b = RedisBackend(url, settings=settings)
    try:
        b.enqueue([msg()])
        # Hold several connections at once, including the blocking pool's.
        waiter = threading.Thread(target=b.wait, args=(["idle"], 0.5))
        waiter.start()
        busy = [threading.Thread(target=b.claim, args=(["default"], 1, 30, "w")) for _ in range(4)]
        for th in busy:
            th.start()
        for th in busy:
            th.join()
        waiter.join()
        sockets = b.connections()
        assert len(sockets) >= 2, f"expected the command and blocking pools' sockets: {sockets}"
        for s in sockets:
            assert s.keepalive, f"socket {s.local} -> {s.peer} has no SO_KEEPALIVE"
            assert (s.idle, s.interval, s.count) == (45, 7, 4), f"timers of {s}"
    finally:
        b.close()


def test_blocking_connections_outlive_their_block_time(backend: RedisBackend) -> None:
    timeout = backend._blocking_pool.connection_kwargs["socket_timeout"]
    assert timeout > backend.wait_block_seconds + 5
    assert backend._pool.connection_kwargs["socket_connect_timeout"] == 5.0
    assert backend._pool.connection_kwargs["health_check_interval"] > 0


def test_idle_waiter_wakes_within_50ms_of_an_enqueue(url: str, backend: RedisBackend) -> None:
    producer = open_backend(url)
    try:
        for _ in range(5):
            woke: list[float] = []
            ready = threading.Event()

            def wait(ready: threading.Event = ready, woke: list[float] = woke) -> None:
                ready.set()
                if backend.wait(["lat"], 5.0):
                    woke.append(time.perf_counter())

            th = threading.Thread(target=wait)
            th.start()
            ready.wait()
            time.sleep(0.2)  # let the waiter block on the server
            sent = time.perf_counter()
            producer.enqueue([msg("lat")])
            th.join(5)
            assert woke, "the waiter never woke"
            latency = woke[0] - sent
            assert latency < 0.05, f"woke {latency * 1000:.1f} ms after the enqueue"
            assert [d.lease.message_id for d in backend.claim(["lat"], 10, 30, "w")]
    finally:
        producer.close()


def test_wait_times_out_without_work_and_wakes_for_a_due_eta(backend: RedisBackend) -> None:
    start = time.monotonic()
    assert backend.wait(["empty"], 0.3) is False
    assert 0.25 <= time.monotonic() - start < 1.5

    backend.enqueue([msg("later", eta=time.time() + 0.4)])
    start = time.monotonic()
    assert backend.wait(["later"], 5.0) is True
    elapsed = time.monotonic() - start
    assert 0.3 <= elapsed < 1.0, f"woke after {elapsed:.2f}s for an eta 0.4s away"
    assert len(backend.claim(["later"], 1, 30, "w")) == 1


def test_exchange_claims_a_scheduled_message_when_its_eta_comes(url: str) -> None:
    """The wait inside exchange ends at the earliest eta, known or learnt since it was seen."""
    worker, producer = RedisBackend(url), RedisBackend(url)
    try:
        producer.enqueue([msg("etaq", eta=time.time() + 0.4)])
        start = time.monotonic()
        _, got = worker.exchange([], ["etaq"], 10, 30.0, "w", wait=5.0)
        elapsed = time.monotonic() - start
        if not got:  # woken just before the eta by its 's' token: the next turn takes it
            _, got = worker.exchange([], ["etaq"], 10, 30.0, "w", wait=5.0)
            elapsed = time.monotonic() - start
        assert len(got) == 1 and 0.3 <= elapsed < 1.2, f"claimed after {elapsed:.2f}s"
        # Learnt from the last claim: an earlier eta enqueued while it waits still wakes it.
        producer.enqueue([msg("etaq", eta=time.time() + 3.0)])
        _, got = worker.exchange([], ["etaq"], 10, 30.0, "w", wait=0.2)
        threading.Timer(0.3, lambda: producer.enqueue([msg("etaq", eta=time.time() + 0.3)])).start()
        start = time.monotonic()
        got = []
        while not got and time.monotonic() - start < 3.0:
            _, got = worker.exchange([], ["etaq"], 10, 30.0, "w", wait=5.0)
        elapsed = time.monotonic() - start
        assert len(got) == 1 and elapsed < 1.5, f"the earlier eta was claimed after {elapsed:.2f}s"
    finally:
        worker.close()
        producer.close()


def test_wait_sees_a_retry_that_moves_the_earliest_eta_closer(url: str) -> None:
    b = RedisBackend(url, wait_block_seconds=5.0)
    try:
        b.enqueue([msg("r")])
        [d] = b.claim(["r"], 1, 30, "w")
        result: list[bool] = []
        th = threading.Thread(target=lambda: result.append(b.wait(["r"], 4.0)))
        start = time.monotonic()
        th.start()
        time.sleep(0.1)
        assert b.retry(d.lease, time.time() + 0.3, ErrorInfo("exception"))
        th.join(5)
        assert result == [True]
        assert time.monotonic() - start < 1.5, "the new eta was not noticed before the block cap"
    finally:
        b.close()


def test_every_key_is_hash_tagged_one_slot_per_queue(url: str, backend: RedisBackend) -> None:
    prefix = backend.prefix
    job = NewJob("job-1", "import")
    ids = backend.enqueue(
        [msg("alpha", job_id="job-1"), msg("beta", job_id="job-1", idempotency_key="k1"),
         msg("beta", eta=time.time() + 60)], job=job,
    )
    for d in backend.claim(["alpha", "beta"], 10, 30, "w"):
        backend.progress(d.lease, 1, 2, None)
        backend.settle([Complete(d.lease, '"ok"')])
    backend.cancel([ids[2]])
    keys = [k.decode() for k in backend._r.scan_iter(match=f"*{prefix}*", count=1000)]
    assert keys
    slots: dict[str, set[int]] = {}
    for k in keys:
        m = re.fullmatch(r"\{(" + re.escape(prefix) + r")(?::([^}]*))?\}:.+", k)
        assert m, f"key {k!r} is not under a hash tag of the prefix"
        slots.setdefault(m.group(2) or "", set()).add(key_slot(k.encode()))
    assert set(slots) == {"", "alpha", "beta"}
    for name, s in slots.items():
        assert len(s) == 1, f"keys of {name or 'the store'} span slots {s}"


def test_a_token_naming_another_queue_is_refused(backend: RedisBackend) -> None:
    backend.enqueue([msg("a"), msg("b")])
    [da] = backend.claim(["a"], 1, 30, "w")
    rand, _, _ = da.lease.token.partition(".")
    forged = Lease(da.lease.message_id, rand + ".b")
    assert backend.complete(forged) is False
    assert backend.extend([forged], 30) == [forged]
    assert backend.complete(Lease(da.lease.message_id, "no-queue-in-it")) is False
    assert backend.complete(da.lease) is True


def test_a_lost_reply_is_safe_to_resend(backend: RedisBackend) -> None:
    m = msg("q", idempotency_key="once")
    assert backend.enqueue([m]) == backend.enqueue([m]) == [m.id]
    [d] = backend.claim(["q"], 1, 30, "w")
    outcome = Reschedule(d.lease, time.time() + 60, ErrorInfo("exception"))
    assert backend.settle([outcome]) == backend.settle([outcome]) == [True]
    info = backend.message(m.id)
    assert info is not None and info.retries == 1
    [stats] = backend.queue_stats()
    assert stats.counts.accepted == 1 and stats.counts.scheduled == 1


@pytest.mark.parametrize("queues", [["q"], ["a", "b", "a"]])
def test_enqueue_is_one_round_trip_of_one_script_call(
    backend: RedisBackend, monkeypatch: pytest.MonkeyPatch, queues: list[str]
) -> None:
    """Reservation and store go in one atomic call: no producer is ever between them."""
    backend.enqueue([msg("warm")])  # the connection is open and the scripts loaded
    sent: list[bytes] = []
    send = AbstractConnection.send_packed_command

    def record(conn: AbstractConnection, command: object, check_health: bool = True) -> None:
        parts = command if isinstance(command, list) else [command]
        sent.append(b"".join(bytes(p) for p in parts))
        send(conn, command, check_health)  # type: ignore[arg-type]

    monkeypatch.setattr(AbstractConnection, "send_packed_command", record)
    batch = [msg(q) for q in queues]
    assert backend.enqueue(batch) == [m.id for m in batch]
    monkeypatch.undo()
    assert len(sent) == 1, "enqueue took more than one round trip"
    assert sent[0].count(b"EVALSHA") == 1
    assert Scripts().shas["store"].encode() in sent[0]
    for m in batch:
        info = backend.message(m.id)
        assert info is not None and info.queue == m.queue and info.body == m.body
    stats = {s.queue: s.counts.queued for s in backend.queue_stats()}
    assert stats == {"warm": 1, **{q: queues.count(q) for q in queues}}


def test_scripts_survive_a_server_that_lost_them(url: str, backend: RedisBackend) -> None:
    # Another client's SCRIPT FLUSH would disturb people sharing the server; a fresh
    # Scripts table whose SHAs the server never saw gives the same NOSCRIPT path.
    fresh = Scripts()
    fresh.sources = {k: v + "\n-- " + new_id() for k, v in fresh.sources.items()}
    fresh.shas = {k: hashlib.sha1(v.encode()).hexdigest() for k, v in fresh.sources.items()}
    m = msg("ns")
    call = backend._call("enqueue", "ns", "1.0", "ns", m.id, "t", b"x", "0", "", "5", "", "", "0")
    assert fresh.run(backend._r, [call]) == [[1]]
    assert fresh.run(backend._r, [call]) == [[0]]


def test_server_info_reports_durability_and_clock(backend: RedisBackend) -> None:
    info = backend.server_info()
    for name in ("appendonly", "appendfsync", "save", "maxmemory-policy", "version"):
        assert name in info
    assert abs(info["clock_skew"]) < 5
    assert abs(info["time"] - time.time()) < 5


def test_url_options_and_redaction() -> None:
    b = RedisBackend("redis://user:secret@127.0.0.1:6379/0?prefix=t_x&health_check_interval=3")
    try:
        assert b.prefix == "t_x"
        assert "secret" not in b.url and "***" in b.url
    finally:
        b.close()
    with pytest.raises(Exception, match="prefix"):
        RedisBackend("redis://127.0.0.1:6379/0?prefix=a{b")


def test_unreachable_server_fails_fast_with_the_driver_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = RedisBackend(f"redis://127.0.0.1:{port}/0?prefix=t_none")
    try:
        start = time.monotonic()
        with pytest.raises(Exception) as err:
            b.enqueue([msg()])
        assert "Connection" in type(err.value).__name__
        assert time.monotonic() - start < 6
    finally:
        b.close()


def test_purge_frees_the_key_and_a_late_cleanup_never_frees_a_newer_holder(
    backend: RedisBackend,
) -> None:
    first = msg("p", idempotency_key="k", max_deliveries=1)
    backend.enqueue([first])
    [d] = backend.claim(["p"], 1, 30, "w")
    assert backend.fail(d.lease, ErrorInfo("fail"))
    assert backend.purge_dead(queue="p") == 1
    assert backend.message(first.id) is None
    second = msg("p", idempotency_key="k")
    assert backend.enqueue([second]) == [second.id]
    # The cleanup of the first message's tombstone, sent again, leaves the key to `second`.
    backend._run([Call("unindex", backend._g + ":idx", [backend._g, f"{first.id}\nk"])])
    third = msg("p", idempotency_key="k")
    assert backend.enqueue([third]) == [second.id]
    assert backend._r.llen(backend._base("p") + ":purged") == 0


def test_unix_socket_url(tmp_path: Path) -> None:
    binary = shutil.which("redis-server")
    if binary is None:
        reason = "SERVICE UNAVAILABLE: redis-server is not installed; the unix:// test needs it"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    path = tmp_path / "redis.sock"
    proc = subprocess.Popen(
        [binary, "--port", "0", "--unixsocket", str(path), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        b = open_backend(f"unix://{path}?db=0&prefix=t_unix")
        try:
            m = msg()
            assert b.enqueue([m]) == [m.id]
            [d] = b.claim(["default"], 1, 30, "w")
            assert b.complete(d.lease, '"done"')
            info = b.message(m.id)
            assert info is not None and info.result == '"done"'
        finally:
            b.close()
    finally:
        proc.terminate()
        proc.wait(10)


def test_retention_prunes_final_messages_and_keeps_their_counts(url: str) -> None:
    clock = FakeClock()
    b = open_backend(url + "&retention=100&dead_retention=1000", clock=clock)
    try:
        done, dead, waiting = msg(idempotency_key="kd"), msg(max_deliveries=1), msg("other")
        b.enqueue([done, dead, waiting])
        by_id = {d.lease.message_id: d for d in b.claim(["default"], 2, 30, "w")}
        assert b.complete(by_id[done.id].lease, '"r"')
        assert b.fail(by_id[dead.id].lease, ErrorInfo("fail"))
        clock.advance(99)
        b.recover_expired()
        assert b.message(done.id) is not None
        clock.advance(2)
        b.recover_expired()
        assert b.message(done.id) is None, "a succeeded message outlived its retention"
        assert b.message(dead.id) is not None, "dead_retention is longer than retention"
        assert b.message(waiting.id) is not None
        again = msg(idempotency_key="kd")
        assert b.enqueue([again]) == [again.id], "the pruned message's key was not freed"
        clock.advance(1000)
        b.recover_expired()
        assert b.message(dead.id) is None
        stats = {s.queue: s.counts for s in b.queue_stats()}["default"]
        assert (stats.accepted, stats.succeeded, stats.dead, stats.queued) == (3, 1, 1, 1)
        assert b._r.llen(b._base("default") + ":purged") == 0
    finally:
        b.close()
    with pytest.raises(Exception, match="retention"):
        RedisBackend(url + "&retention=soon")


def test_due_messages_left_over_by_a_claim_wake_a_waiter(url: str) -> None:
    clock = FakeClock()
    b = open_backend(url, clock=clock)
    try:
        b.enqueue([msg("x", eta=clock() + 10) for _ in range(3)] + [msg("y", priority=9)])
        clock.advance(11)
        # Takes y's message and promotes x's due ones; two of them stay ready.
        got = b.claim(["x", "y"], 2, 30, "w")
        assert [d.queue for d in got] == ["y", "x"]
        start = time.monotonic()
        assert b.wait(["x"], 2.0) is True
        assert time.monotonic() - start < 0.5
        assert len(b.claim(["x"], 10, 30, "w")) == 2
    finally:
        b.close()
