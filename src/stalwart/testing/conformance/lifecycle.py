"""A message's life: expiry and redelivery, releases, retries, dead letters, its history."""

from __future__ import annotations

from ...backends.base import Backend, Counts, ErrorInfo
from ...states import State
from .checks import boom, claim_one, counts_of, enqueue_one, new_message
from .fixtures import FakeClock


class TestExpiry:
    def test_expired_lease_is_redelivered(self, store: Backend, clock: FakeClock) -> None:
        mid = enqueue_one(store)
        claim_one(store, worker="lost", lease_seconds=10)
        clock.advance(5)
        assert store.recover_expired() == []
        clock.advance(6)
        assert store.recover_expired() == [(mid, State.QUEUED)]
        info = store.message(mid)
        assert info is not None and info.state == State.QUEUED
        assert info.error is not None and info.error.reason == "lease-expired"
        assert counts_of(store) == Counts(accepted=1, queued=1)
        d = claim_one(store, worker="next")
        assert (d.deliveries, d.retries) == (2, 0)

    def test_recover_is_idempotent(self, store: Backend, clock: FakeClock) -> None:
        mid = enqueue_one(store)
        claim_one(store, lease_seconds=10)
        clock.advance(11)
        assert store.recover_expired() == [(mid, State.QUEUED)]
        assert store.recover_expired() == []
        info = store.message(mid)
        assert info is not None and info.deliveries == 1 and len(info.attempts) == 1

    def test_recover_respects_its_limit(self, store: Backend, clock: FakeClock) -> None:
        store.enqueue([new_message() for _ in range(5)])
        store.claim(["default"], 5, 10, "w")
        clock.advance(11)
        first = store.recover_expired(limit=2)
        assert len(first) == 2
        rest = store.recover_expired()
        assert len(rest) == 3 and not {i for i, _ in first} & {i for i, _ in rest}
        assert counts_of(store) == Counts(accepted=5, queued=5)

    def test_recover_touches_only_expired_leases(self, store: Backend, clock: FakeClock) -> None:
        short, long = enqueue_one(store), enqueue_one(store)
        claim_one(store, lease_seconds=10)
        claim_one(store, lease_seconds=100)
        clock.advance(50)
        assert store.recover_expired() == [(short, State.QUEUED)]
        info = store.message(long)
        assert info is not None and info.state == State.RUNNING

    def test_deliveries_counted_up_to_max_then_dead_worker_lost(
        self, store: Backend, clock: FakeClock
    ) -> None:
        mid = enqueue_one(store, max_deliveries=3, job_id="j")
        for n in (1, 2, 3):
            d = claim_one(store, worker=f"w{n}", lease_seconds=10)
            assert d.deliveries == n
            clock.advance(11)
            expected = State.QUEUED if n < 3 else State.DEAD
            assert store.recover_expired() == [(mid, expected)]
        info = store.message(mid)
        assert info is not None and info.state == State.DEAD and info.deliveries == 3
        assert info.error is not None and info.error.reason == "worker-lost"
        assert [a.outcome for a in info.attempts] == ["lease-expired"] * 3
        assert store.claim(["default"], 1, 10, "w") == []
        assert counts_of(store) == Counts(accepted=1, dead=1)
        job = store.job("j")
        assert job is not None and job.counts.dead == 1


class TestRelease:
    def test_unstarted_release_undoes_the_claim(self, store: Backend, clock: FakeClock) -> None:
        mid = enqueue_one(store)
        d = claim_one(store, lease_seconds=10)
        clock.advance(1)
        assert store.release(d.lease)  # type: ignore[attr-defined]
        info = store.message(mid)
        assert info is not None and info.state == State.QUEUED
        assert (info.deliveries, info.attempts, info.lease_expires_at) == (0, (), None)
        assert counts_of(store) == Counts(accepted=1, queued=1)
        again = claim_one(store)
        assert again.deliveries == 1 and again.lease.token != d.lease.token

    def test_unstarted_release_never_buries(self, store: Backend) -> None:
        mid = enqueue_one(store, max_deliveries=1)
        for _ in range(3):
            assert store.release(claim_one(store).lease)  # type: ignore[attr-defined]
        info = store.message(mid)
        assert info is not None and info.state == State.QUEUED

    def test_started_release_records_the_attempt(self, store: Backend, clock: FakeClock) -> None:
        mid = enqueue_one(store, max_deliveries=3)
        d = claim_one(store, worker="w1")
        clock.advance(3)
        err = ErrorInfo("shutdown", message="worker stopping")
        assert store.release(d.lease, started=True, error=err)  # type: ignore[attr-defined]
        info = store.message(mid)
        assert info is not None and info.state == State.QUEUED and info.deliveries == 1
        assert info.error == err
        [a] = info.attempts
        assert (a.worker_id, a.ended_at, a.outcome, a.error) == ("w1", clock(), "shutdown", err)
        assert claim_one(store).deliveries == 2

    def test_started_release_at_max_deliveries_is_dead(self, store: Backend) -> None:
        mid = enqueue_one(store, max_deliveries=2, job_id="j")
        d = claim_one(store)
        assert store.release(d.lease, started=True)  # type: ignore[attr-defined]
        d = claim_one(store)
        lost = ErrorInfo("worker-lost", message="child killed by signal 9")
        assert store.release(d.lease, started=True, error=lost)  # type: ignore[attr-defined]
        info = store.message(mid)
        assert info is not None and info.state == State.DEAD and info.deliveries == 2
        assert info.error is not None and info.error.reason == "worker-lost"
        assert [a.outcome for a in info.attempts] == ["worker-lost", "worker-lost"]
        assert counts_of(store) == Counts(accepted=1, dead=1)
        job = store.job("j")
        assert job is not None and job.counts == Counts(accepted=1, dead=1)


class TestReschedule:
    def test_retry_schedules_and_counts(self, store: Backend, clock: FakeClock) -> None:
        mid = enqueue_one(store)
        d = claim_one(store, worker="w1")
        err = boom("exception", "try again")
        assert store.retry(d.lease, clock() + 30, err)  # type: ignore[attr-defined]
        info = store.message(mid)
        assert info is not None
        assert (info.state, info.retries, info.eta) == (State.SCHEDULED, 1, clock() + 30)
        assert info.error == err and info.lease_expires_at is None
        assert info.attempts[-1].outcome == "retry" and info.attempts[-1].error == err
        assert counts_of(store) == Counts(accepted=1, scheduled=1)
        assert store.claim(["default"], 1, 30, "w") == []
        clock.advance(31)
        again = claim_one(store)
        assert (again.retries, again.deliveries) == (1, 2)

    def test_retry_at_a_past_time_is_queued(self, store: Backend, clock: FakeClock) -> None:
        mid = enqueue_one(store)
        d = claim_one(store)
        assert store.retry(d.lease, clock() - 1, boom())  # type: ignore[attr-defined]
        info = store.message(mid)
        assert info is not None and info.state == State.QUEUED and info.retries == 1
        assert claim_one(store).retries == 1

    def test_retries_accumulate(self, store: Backend, clock: FakeClock) -> None:
        mid = enqueue_one(store)
        for n in range(1, 4):
            assert store.retry(claim_one(store).lease, clock(), boom())  # type: ignore[attr-defined]
            info = store.message(mid)
            assert info is not None and info.retries == n


class TestBury:
    def test_fail_is_dead_with_reason_and_traceback(
        self, store: Backend, clock: FakeClock
    ) -> None:
        mid = enqueue_one(store, job_id="j")
        d = claim_one(store)
        err = boom("retries-exhausted", "gave up")
        assert store.fail(d.lease, err)  # type: ignore[attr-defined]
        info = store.message(mid)
        assert info is not None and info.state == State.DEAD and info.error == err
        assert info.error is not None and info.error.traceback == err.traceback
        assert info.attempts[-1].outcome == "dead" and info.attempts[-1].error == err
        assert counts_of(store) == Counts(accepted=1, dead=1)
        assert store.claim(["default"], 1, 30, "w") == []


class TestAttempts:
    def test_history_of_every_delivery(self, store: Backend, clock: FakeClock) -> None:
        mid = enqueue_one(store)
        t0 = clock()
        claim_one(store, worker="w1", lease_seconds=10)
        t1 = clock.advance(11)
        store.recover_expired()
        t2 = clock.advance(1)
        d2 = claim_one(store, worker="w2")
        t3 = clock.advance(2)
        err = boom("exception", "flaky")
        assert store.retry(d2.lease, t3, err)  # type: ignore[attr-defined]
        t4 = clock.advance(1)
        d3 = claim_one(store, worker="w3")
        t5 = clock.advance(4)
        assert store.complete(d3.lease, '"done"')  # type: ignore[attr-defined]
        info = store.message(mid)
        assert info is not None and info.state == State.SUCCEEDED
        got = [(a.delivery, a.worker_id, a.started_at, a.ended_at, a.outcome)
               for a in info.attempts]
        assert got == [
            (1, "w1", t0, t1, "lease-expired"),
            (2, "w2", t2, t3, "retry"),
            (3, "w3", t4, t5, "succeeded"),
        ]
        a1, a2, a3 = info.attempts
        assert a1.error is not None and a1.error.reason == "lease-expired"
        assert a2.error == err and a3.error is None
        assert (info.deliveries, info.retries) == (3, 1)
