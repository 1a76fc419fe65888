"""Claim: priority then FIFO, across queues, only the named ones, limits, eta."""

from __future__ import annotations

from ...backends.base import Backend, Counts
from ...states import State
from .checks import claim_one, counts_of, enqueue_one, ids_of, new_message
from .fixtures import FakeClock


class TestClaim:
    def test_delivery_carries_the_message_and_a_fresh_lease(
        self, store: Backend, clock: FakeClock
    ) -> None:
        m = new_message("q", priority=4, max_deliveries=3, job_id="j", task="t.x", body=b"B")
        store.enqueue([m])
        [d] = store.claim(["q"], 10, 45.0, "worker-7")
        assert d.lease.message_id == m.id and d.lease.token
        assert (d.task, d.queue, d.body, d.priority) == ("t.x", "q", b"B", 4)
        assert (d.deliveries, d.retries, d.max_deliveries, d.job_id) == (1, 0, 3, "j")
        assert d.expires_at == clock() + 45.0
        info = store.message(m.id)
        assert info is not None and info.state == State.RUNNING
        assert info.deliveries == 1 and info.lease_expires_at == clock() + 45.0
        assert counts_of(store, "q") == Counts(accepted=1, running=1)

    def test_claim_records_an_attempt(self, store: Backend, clock: FakeClock) -> None:
        mid = enqueue_one(store)
        claim_one(store, worker="worker-9")
        info = store.message(mid)
        assert info is not None and len(info.attempts) == 1
        a = info.attempts[0]
        assert (a.delivery, a.worker_id, a.started_at) == (1, "worker-9", clock())
        assert a.ended_at is None and a.outcome is None

    def test_empty_queue_gives_nothing(self, store: Backend) -> None:
        assert store.claim(["default"], 10, 30, "w") == []

    def test_higher_priority_first_then_fifo(self, store: Backend) -> None:
        order = [0, 5, 0, 9, 5, 0, 9]
        batch = [new_message(priority=p) for p in order]
        store.enqueue(batch)
        expected = [m.id for m in sorted(batch, key=lambda m: (-m.priority, m.id))]
        got = [claim_one(store).lease.message_id for _ in batch]
        assert got == expected

    def test_batch_claim_takes_the_best_in_order(self, store: Backend) -> None:
        batch = [new_message(priority=p) for p in (1, 3, 1, 3, 2)]
        store.enqueue(batch)
        expected = [m.id for m in sorted(batch, key=lambda m: (-m.priority, m.id))]
        assert ids_of(store.claim(["default"], 3, 30, "w")) == expected[:3]
        assert ids_of(store.claim(["default"], 3, 30, "w")) == expected[3:]

    def test_fifo_across_separate_enqueues(self, store: Backend) -> None:
        first = [enqueue_one(store) for _ in range(5)]
        assert ids_of(store.claim(["default"], 5, 30, "w")) == first

    def test_order_spans_all_the_named_queues(self, store: Backend) -> None:
        a1 = new_message("a", priority=1)
        b1 = new_message("b", priority=1)
        a5 = new_message("a", priority=5)
        c9 = new_message("c", priority=9)
        b5 = new_message("b", priority=5)
        store.enqueue([a1, b1, a5, c9, b5])
        got = ids_of(store.claim(["a", "b", "c"], 10, 30, "w"))
        assert got == [c9.id, a5.id, b5.id, a1.id, b1.id]

    def test_only_the_named_queues(self, store: Backend) -> None:
        mine = new_message("mine")
        other = new_message("other", priority=9)
        store.enqueue([other, mine])
        assert ids_of(store.claim(["mine"], 10, 30, "w")) == [mine.id]
        assert store.claim(["mine", "nobody"], 10, 30, "w") == []
        info = store.message(other.id)
        assert info is not None and info.state == State.QUEUED

    def test_limit_is_respected(self, store: Backend) -> None:
        store.enqueue([new_message() for _ in range(5)])
        assert len(store.claim(["default"], 2, 30, "w")) == 2
        assert store.claim(["default"], 0, 30, "w") == []
        assert len(store.claim(["default"], 10, 30, "w")) == 3
        assert counts_of(store) == Counts(accepted=5, running=5)

    def test_running_message_is_not_claimed_again(self, store: Backend) -> None:
        enqueue_one(store)
        claim_one(store)
        assert store.claim(["default"], 10, 30, "other-worker") == []

    def test_each_claim_has_its_own_token(self, store: Backend) -> None:
        store.enqueue([new_message() for _ in range(3)])
        tokens = {d.lease.token for d in store.claim(["default"], 3, 30, "w")}
        assert len(tokens) == 3


class TestEta:
    def test_scheduled_until_due_then_claimable(self, store: Backend, clock: FakeClock) -> None:
        mid = enqueue_one(store, eta=clock() + 60)
        assert store.claim(["default"], 10, 30, "w") == []
        clock.advance(59)
        assert store.claim(["default"], 10, 30, "w") == []
        assert store.recover_expired() == []
        info = store.message(mid)
        assert info is not None and info.state == State.SCHEDULED
        clock.advance(2)
        d = claim_one(store)
        assert d.lease.message_id == mid and d.deliveries == 1
        assert counts_of(store) == Counts(accepted=1, running=1)

    def test_due_message_competes_by_priority(self, store: Backend, clock: FakeClock) -> None:
        later = enqueue_one(store, eta=clock() + 10, priority=9)
        now = enqueue_one(store, priority=1)
        assert claim_one(store).lease.message_id == now
        enqueue_one(store, priority=1)
        clock.advance(11)
        assert claim_one(store).lease.message_id == later

    def test_past_eta_is_ready_at_once(self, store: Backend, clock: FakeClock) -> None:
        mid = enqueue_one(store, eta=clock() - 5)
        assert claim_one(store).lease.message_id == mid


class TestBoundaries:
    """At the exact instant a deadline falls on, the model's rule: due, but not yet expired."""

    def test_eta_equal_to_now_is_ready(self, store: Backend, clock: FakeClock) -> None:
        mid = enqueue_one(store, eta=clock() + 10)
        clock.advance(10)
        assert claim_one(store).lease.message_id == mid

    def test_lease_ending_now_is_not_yet_expired(self, store: Backend, clock: FakeClock) -> None:
        mid = enqueue_one(store)
        claim_one(store, lease_seconds=10)
        clock.advance(10)
        assert store.recover_expired() == []
        clock.advance(0.5)
        assert store.recover_expired() == [(mid, State.QUEUED)]

    def test_result_ending_now_is_gone(self, store: Backend, clock: FakeClock) -> None:
        mid = enqueue_one(store)
        assert store.complete(claim_one(store).lease, "1", 10)  # type: ignore[attr-defined]
        clock.advance(10)
        store.recover_expired()
        info = store.message(mid)
        assert info is not None and info.result is None and info.result_expired
