"""Statements that lock several message rows lock them in one order, so they never deadlock.

A worker extends every lease it holds from its heartbeat thread while its main loop settles
a batch of the same leases; the two statements list the rows in unrelated orders. Were rows
locked in the order given, each would hold rows the other waits for: PostgreSQL then aborts
one with ``DeadlockDetected`` after ``deadlock_timeout``. Producers storing the same ids or
idempotency keys at once are in the same position. The raw backend is called here (no
retry wrapper) so that every deadlock is seen.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import psycopg

from stalwart.backends.base import Lease, NewMessage, Release
from stalwart.backends.postgres import PostgresBackend
from stalwart.ids import new_id

# Deadlocks are detected after deadlock_timeout (1 s by default): detect them sooner so that
# a few seconds of load show many, were there any.
FAST_DETECTION = "&options=-c%20deadlock_timeout%3D20ms"
BATCH = 50
SECONDS = 4.0


class Shared:
    """The leases each settler currently holds, and what the threads saw."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.leases: dict[int, list[Lease]] = {}
        self.deadlocks = 0
        self.calls = {"extend": 0, "settle": 0}
        self.errors: list[BaseException] = []
        self.stop = threading.Event()

    def held(self) -> list[Lease]:
        with self.lock:
            return [lease for batch in self.leases.values() for lease in batch]

    def run(self, name: str, step: Callable[[], bool]) -> None:
        """Call ``step`` until stopped, counting the calls that reached the server."""
        while not self.stop.is_set():
            try:
                if not step():
                    time.sleep(0.001)
                    continue
            except psycopg.errors.DeadlockDetected:
                with self.lock:
                    self.deadlocks += 1
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                self.errors.append(exc)
                return
            with self.lock:
                self.calls[name] += 1


def test_extend_and_settle_of_the_same_leases_never_deadlock(pg_url: str) -> None:
    url = pg_url + FAST_DETECTION
    with PostgresBackend(url) as setup:
        setup.enqueue([NewMessage(new_id(), "t", "hot") for _ in range(2 * BATCH)])
    shared = Shared()
    backends = [PostgresBackend(url), PostgresBackend(url)]

    def settler(n: int, b: PostgresBackend) -> Callable[[], bool]:
        rng = random.Random(n)

        def step() -> bool:
            got = [d.lease for d in b.claim(["hot"], BATCH, 30, f"w{n}")]
            with shared.lock:
                shared.leases[n] = got
            time.sleep(0.002)  # let the heartbeats extend this batch too
            rng.shuffle(got)
            with shared.lock:
                shared.leases[n] = []
            assert all(b.settle([Release(lease, started=False) for lease in got]))
            return bool(got)

        return step

    def heartbeat(n: int, b: PostgresBackend) -> Callable[[], bool]:
        rng = random.Random(100 + n)

        def step() -> bool:
            leases = shared.held()  # this backend's and the other's: rows in common
            rng.shuffle(leases)
            b.extend(leases, 30)
            return bool(leases)

        return step

    threads = []
    for n, b in enumerate(backends):
        threads.append(threading.Thread(target=shared.run, args=("settle", settler(n, b))))
        threads.append(threading.Thread(target=shared.run, args=("extend", heartbeat(n, b))))
    try:
        for t in threads:
            t.start()
        time.sleep(SECONDS)
        shared.stop.set()
        for t in threads:
            t.join(30)
    finally:
        shared.stop.set()
        for b in backends:
            b.close()
    assert not shared.errors, shared.errors
    assert shared.calls["settle"] > 20 and shared.calls["extend"] > 20, shared.calls
    assert shared.deadlocks == 0, f"{shared.deadlocks} deadlocks in {shared.calls}"


def race(
    producers: list[PostgresBackend], batches: list[list[NewMessage]]
) -> tuple[list[list[str]], int]:
    """Each producer enqueues its batch at the same moment: (ids answered, deadlocks)."""
    answers: list[list[str]] = [[] for _ in producers]
    deadlocks = []
    start = threading.Barrier(len(producers))

    def produce(n: int) -> None:
        start.wait()
        try:
            answers[n] = producers[n].enqueue(batches[n])
        except psycopg.errors.DeadlockDetected as exc:
            deadlocks.append(exc)

    threads = [threading.Thread(target=produce, args=(n,)) for n in range(len(producers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return answers, len(deadlocks)


def test_producers_racing_with_the_same_ids_or_keys_never_deadlock(pg_url: str) -> None:
    """Two producers store the same batch at once, in different orders: by id (a retried
    batch) on even rounds, by idempotency key with fresh ids on odd rounds."""
    url = pg_url + FAST_DETECTION
    producers = [PostgresBackend(url), PostgresBackend(url)]
    deadlocks, rounds = 0, 0
    try:
        producers[0].migrate()
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            keyed = rounds % 2 == 1
            batch = [NewMessage(new_id(), "t", "in", idempotency_key=new_id() if keyed else None)
                     for _ in range(BATCH)]
            sent: list[list[NewMessage]] = []
            for n in range(2):
                mine = list(batch)
                random.Random(rounds * 2 + n).shuffle(mine)
                if keyed:
                    mine = [NewMessage(new_id(), "t", "in", idempotency_key=m.idempotency_key)
                            for m in mine]
                sent.append(mine)
            answers, lost = race(producers, sent)
            deadlocks += lost
            if all(answers):  # both stored or found every message: one row per id or key
                by_key = [dict(zip([m.idempotency_key or m.id for m in sent[n]], answers[n],
                                   strict=True)) for n in range(2)]
                assert by_key[0] == by_key[1]
            rounds += 1
    finally:
        for b in producers:
            b.close()
    assert rounds > 20, rounds
    assert deadlocks == 0, f"{deadlocks} deadlocks in {rounds} rounds"
