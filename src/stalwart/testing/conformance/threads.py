"""One backend object shared by threads, as a worker's main loop and heartbeat thread share it."""

from __future__ import annotations

import threading
from collections import Counter

from ...backends.base import Backend, Complete, Counts
from ...backends.resilient import Resilient
from .checks import new_message
from .fixtures import FakeClock

THREADS = 4


class TestThreads:
    def test_threads_claiming_settling_and_heartbeating_at_once(
        self, backend_kind: str, backend: Backend, clock: FakeClock
    ) -> None:
        """Through the retrying wrapper every worker uses: a transient fault is allowed."""
        faults: Counter[str] = Counter()
        backend = Resilient(backend, 30.0, on_fault=lambda name, exc, n: faults.update(
            [f"{name}: {type(exc).__name__}"]))  # type: ignore[assignment]
        total = 400
        backend.enqueue([new_message("t", priority=n % 3) for n in range(total)])
        settled: Counter[str] = Counter()
        held: set = set()
        lock = threading.Lock()
        done = threading.Event()
        errors: list[BaseException] = []

        def work() -> None:
            try:
                while not done.is_set():
                    got = backend.claim(["t"], 5, 30, threading.current_thread().name)
                    if not got:
                        return
                    with lock:
                        held.update(d.lease for d in got)
                    oks = backend.settle([Complete(d.lease, '"ok"') for d in got])
                    with lock:
                        held.difference_update(d.lease for d in got)
                        settled.update(
                            d.lease.message_id for d, ok in zip(got, oks, strict=True) if ok)
            except BaseException as exc:
                errors.append(exc)

        def heartbeat() -> None:
            try:
                while not done.is_set():
                    with lock:
                        leases = list(held)
                    backend.extend(leases, 30)  # a lease settled meanwhile is simply not held
                    backend.recover_expired()
                    backend.queue_stats()
            except BaseException as exc:
                errors.append(exc)

        workers = [threading.Thread(target=work, name=f"w{n}") for n in range(THREADS)]
        beat = threading.Thread(target=heartbeat, name="heartbeat")
        beat.start()
        for t in workers:
            t.start()
        for t in workers:
            t.join(60)
        done.set()
        beat.join(10)
        print(f"\nthreads: messages={total} threads={THREADS}+heartbeat "
              f"transient_faults={dict(faults)} backend={backend_kind}")
        assert not errors, f"a thread failed: {errors!r}"
        assert len(settled) == total and max(settled.values()) == 1
        assert {s.queue: s.counts for s in backend.queue_stats()} == {
            "t": Counts(accepted=total, succeeded=total)}
