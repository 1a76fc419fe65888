"""Leases and fencing: a stale token is refused, a repeated outcome is applied once."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ...backends.base import Backend, Bury, Complete, Counts, Lease, Progress, Reschedule
from ...ids import new_token
from ...states import State
from .checks import boom, claim_one, counts_of, enqueue_one, new_message
from .fixtures import FakeClock

# Every call a lease holder can make, each answering True when it took effect.
LeaseOp = Callable[[Backend, Lease], bool]
LEASE_OPS: dict[str, LeaseOp] = {
    "complete": lambda b, lease: b.complete(lease, '"late"'),  # type: ignore[attr-defined]
    "retry": lambda b, lease: b.retry(lease, b.clock() + 5, boom()),  # type: ignore[attr-defined]
    "fail": lambda b, lease: b.fail(lease, boom("fail")),  # type: ignore[attr-defined]
    "release": lambda b, lease: b.release(lease),  # type: ignore[attr-defined]
    "release-started": lambda b, lease: b.release(  # type: ignore[attr-defined]
        lease, started=True, error=boom("shutdown")),
    "extend": lambda b, lease: b.extend([lease], 30) == [],
    "progress": lambda b, lease: b.progress(lease, 1, 2, "half"),
}
OUTCOME_OPS = ("complete", "retry", "fail", "release", "release-started")


class TestFencing:
    @pytest.mark.parametrize("op", sorted(LEASE_OPS))
    def test_stale_token_refused_after_recovery_and_new_claim(
        self, store: Backend, clock: FakeClock, op: str
    ) -> None:
        mid = enqueue_one(store)
        old = claim_one(store, worker="slow", lease_seconds=10)
        clock.advance(11)
        assert store.recover_expired() == [(mid, State.QUEUED)]
        new = claim_one(store, worker="fresh")
        assert new.lease.message_id == mid and new.lease.token != old.lease.token
        before = store.message(mid)
        assert LEASE_OPS[op](store, old.lease) is False
        after = store.message(mid)
        assert after is not None and before is not None
        assert (after.state, after.retries, after.deliveries) == (State.RUNNING, 0, 2)
        assert after.lease_expires_at == before.lease_expires_at
        assert after.progress == before.progress and after.result is None
        assert counts_of(store) == Counts(accepted=1, running=1)
        # The new holder is unaffected.
        assert store.complete(new.lease, '"fresh"')  # type: ignore[attr-defined]
        info = store.message(mid)
        assert info is not None and info.result == '"fresh"'

    @pytest.mark.parametrize("op", sorted(LEASE_OPS))
    def test_stale_token_refused_after_recovery_before_new_claim(
        self, store: Backend, clock: FakeClock, op: str
    ) -> None:
        mid = enqueue_one(store)
        old = claim_one(store, lease_seconds=10)
        clock.advance(11)
        store.recover_expired()
        assert LEASE_OPS[op](store, old.lease) is False
        info = store.message(mid)
        assert info is not None and info.state == State.QUEUED and info.deliveries == 1
        assert counts_of(store) == Counts(accepted=1, queued=1)

    @pytest.mark.parametrize("op", sorted(LEASE_OPS))
    def test_expired_but_unrecovered_lease_is_still_honoured(
        self, store: Backend, clock: FakeClock, op: str
    ) -> None:
        enqueue_one(store)
        d = claim_one(store, lease_seconds=10)
        clock.advance(20)
        assert LEASE_OPS[op](store, d.lease) is True

    @pytest.mark.parametrize("op", sorted(LEASE_OPS))
    def test_unknown_token_or_message_refused(self, store: Backend, op: str) -> None:
        mid = enqueue_one(store)
        claim_one(store)
        assert LEASE_OPS[op](store, Lease(mid, new_token())) is False
        assert LEASE_OPS[op](store, Lease(new_message().id, new_token())) is False
        assert counts_of(store) == Counts(accepted=1, running=1)

    def test_repeated_complete_applies_once(self, store: Backend, clock: FakeClock) -> None:
        mid = enqueue_one(store, job_id="j")
        d = claim_one(store)
        assert store.complete(d.lease, '"first"', 100.0)  # type: ignore[attr-defined]
        first = store.message(mid)
        clock.advance(5)
        assert store.complete(d.lease, '"second"', 500.0) is True  # type: ignore[attr-defined]
        again = store.message(mid)
        assert again == first
        assert again is not None and again.result == '"first"' and len(again.attempts) == 1
        assert counts_of(store) == Counts(accepted=1, succeeded=1)
        job = store.job("j")
        assert job is not None and job.counts == Counts(accepted=1, succeeded=1)

    def test_repeated_retry_applies_once(self, store: Backend, clock: FakeClock) -> None:
        mid = enqueue_one(store)
        d = claim_one(store)
        assert store.retry(d.lease, clock() + 60, boom())  # type: ignore[attr-defined]
        first = store.message(mid)
        assert store.retry(d.lease, clock() + 999, boom()) is True  # type: ignore[attr-defined]
        again = store.message(mid)
        assert again == first
        assert again is not None and again.retries == 1 and again.eta == clock() + 60

    def test_repeated_fail_applies_once(self, store: Backend) -> None:
        mid = enqueue_one(store, job_id="j")
        d = claim_one(store)
        assert store.fail(d.lease, boom("fail", "first"))  # type: ignore[attr-defined]
        first = store.message(mid)
        assert store.fail(d.lease, boom("exception", "second")) is True  # type: ignore[attr-defined]
        assert store.message(mid) == first
        assert counts_of(store) == Counts(accepted=1, dead=1)
        job = store.job("j")
        assert job is not None and job.counts.dead == 1

    def test_complete_after_fail_is_a_no_op(self, store: Backend) -> None:
        mid = enqueue_one(store)
        d = claim_one(store)
        assert store.fail(d.lease, boom())  # type: ignore[attr-defined]
        assert store.complete(d.lease, '"x"') is True  # type: ignore[attr-defined]
        info = store.message(mid)
        assert info is not None and info.state == State.DEAD and info.result is None
        assert counts_of(store) == Counts(accepted=1, dead=1)

    def test_repeat_after_the_message_was_claimed_again_is_refused(
        self, store: Backend, clock: FakeClock
    ) -> None:
        enqueue_one(store)
        d1 = claim_one(store)
        assert store.retry(d1.lease, clock() + 1, boom())  # type: ignore[attr-defined]
        clock.advance(2)
        d2 = claim_one(store)
        assert store.retry(d1.lease, clock() + 1, boom()) is False  # type: ignore[attr-defined]
        assert store.complete(d1.lease) is False  # type: ignore[attr-defined]
        assert store.complete(d2.lease) is True  # type: ignore[attr-defined]

    def test_release_clears_the_token(self, store: Backend) -> None:
        mid = enqueue_one(store)
        d = claim_one(store)
        assert store.release(d.lease) is True  # type: ignore[attr-defined]
        assert store.release(d.lease) is False  # type: ignore[attr-defined]
        assert store.complete(d.lease) is False  # type: ignore[attr-defined]
        info = store.message(mid)
        assert info is not None and info.state == State.QUEUED and info.deliveries == 0
        assert counts_of(store) == Counts(accepted=1, queued=1)

    def test_no_lease_op_after_final(self, store: Backend) -> None:
        enqueue_one(store)
        d = claim_one(store)
        assert store.complete(d.lease)  # type: ignore[attr-defined]
        assert store.extend([d.lease], 30) == [d.lease]
        assert store.progress(d.lease, 1, 1, None) is False

    def test_settle_batch_answers_each_outcome_in_order(
        self, store: Backend, clock: FakeClock
    ) -> None:
        store.enqueue([new_message() for _ in range(3)])
        a, b, c = store.claim(["default"], 3, 30, "w")
        stale = Lease(c.lease.message_id, new_token())
        got = store.settle([
            Complete(a.lease, '"a"'), Bury(b.lease, boom()), Complete(stale),
            Reschedule(c.lease, clock() + 30, boom()),
        ])
        assert got == [True, True, False, True]
        assert counts_of(store) == Counts(accepted=3, scheduled=1, succeeded=1, dead=1)


class TestExtendAndProgress:
    def test_extend_keeps_the_lease_alive(self, store: Backend, clock: FakeClock) -> None:
        mid = enqueue_one(store)
        d = claim_one(store, lease_seconds=10)
        for _ in range(5):
            clock.advance(8)
            assert store.extend([d.lease], 10) == []
            info = store.message(mid)
            assert info is not None and info.lease_expires_at == clock() + 10
            assert store.recover_expired() == []
        clock.advance(11)
        assert store.recover_expired() == [(mid, State.QUEUED)]
        assert store.extend([d.lease], 10) == [d.lease]

    def test_extend_reports_only_the_leases_not_held(
        self, store: Backend, clock: FakeClock
    ) -> None:
        store.enqueue([new_message() for _ in range(3)])
        a, b, c = store.claim(["default"], 3, 30, "w")
        assert store.complete(b.lease)  # type: ignore[attr-defined]
        forged = Lease(c.lease.message_id, new_token())
        unknown = Lease(new_message().id, new_token())
        lost = store.extend([a.lease, b.lease, c.lease, forged, unknown], 60)
        assert sorted(lost, key=repr) == sorted([b.lease, forged, unknown], key=repr)
        for d in (a, c):
            info = store.message(d.lease.message_id)
            assert info is not None and info.lease_expires_at == clock() + 60

    def test_progress_is_recorded(self, store: Backend, clock: FakeClock) -> None:
        mid = enqueue_one(store)
        d = claim_one(store)
        assert store.progress(d.lease, 3, 10, "pages")
        clock.advance(1)
        assert store.progress(d.lease, 7, None, None)
        info = store.message(mid)
        assert info is not None and info.progress == Progress(7, None, None, clock())
