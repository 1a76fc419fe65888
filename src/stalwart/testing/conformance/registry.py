"""The worker registry, wait() and exchange(): a waiting worker wakes soon after work arrives."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ...backends.base import Backend, Complete, Lease, WorkerInfo
from ...states import State
from .checks import enqueue_one, new_message
from .fixtures import FakeClock


def _worker(wid: str, queues: tuple[str, ...] = ("default",)) -> WorkerInfo:
    return WorkerInfo(id=wid, hostname="host-1", pid=4242, queues=queues, concurrency=4,
                      pool="thread", started_at=1_700_000_000.0, meta={"version": "0.1.0"})


class TestWorkerRegistry:
    def test_register_and_list(self, store: Backend, clock: FakeClock) -> None:
        store.register_worker(_worker("w1", ("a", "b")), ttl=30)
        [w] = store.workers()
        assert (w.id, w.hostname, w.pid, w.queues) == ("w1", "host-1", 4242, ("a", "b"))
        assert (w.concurrency, w.pool, w.started_at) == (4, "thread", 1_700_000_000.0)
        assert w.meta == {"version": "0.1.0"} and w.last_seen == clock()

    def test_entry_expires_after_its_ttl(self, store: Backend, clock: FakeClock) -> None:
        store.register_worker(_worker("w1"), ttl=30)
        store.register_worker(_worker("w2"), ttl=90)
        clock.advance(29)
        assert sorted(w.id for w in store.workers()) == ["w1", "w2"]
        clock.advance(2)
        assert [w.id for w in store.workers()] == ["w2"]

    def test_entry_is_live_up_to_the_instant_its_ttl_ends(
        self, store: Backend, clock: FakeClock
    ) -> None:
        store.register_worker(_worker("w1"), ttl=30)
        clock.advance(30)
        assert [w.id for w in store.workers()] == ["w1"]

    def test_heartbeat_refreshes(self, store: Backend, clock: FakeClock) -> None:
        store.register_worker(_worker("w1"), ttl=30)
        for _ in range(4):
            clock.advance(20)
            store.register_worker(_worker("w1"), ttl=30)
        [w] = store.workers()
        assert w.last_seen == clock()
        clock.advance(31)
        assert store.workers() == []

    def test_unregister(self, store: Backend) -> None:
        store.register_worker(_worker("w1"), ttl=30)
        store.register_worker(_worker("w2"), ttl=30)
        store.unregister_worker("w1")
        store.unregister_worker("never-registered")
        assert [w.id for w in store.workers()] == ["w2"]


class TestWait:
    def test_wakes_soon_after_an_enqueue_from_another_thread(
        self, store: Backend, open_peer: Callable[..., Backend]
    ) -> None:
        producer = open_peer()
        enqueued_at: list[float] = []

        def produce() -> None:
            time.sleep(0.5)
            producer.enqueue([new_message()])
            enqueued_at.append(time.monotonic())

        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        started = time.monotonic()
        woke = store.wait(["default"], 5.0)
        returned = time.monotonic()
        thread.join(5)
        assert enqueued_at, "the producer thread did not enqueue"
        assert returned - started < 4.0, f"wait() slept {returned - started:.2f}s of 5"
        assert woke is True
        assert returned - enqueued_at[0] < 1.0
        assert len(store.claim(["default"], 10, 30, "w")) == 1

    def test_returns_after_its_timeout_when_nothing_comes(self, store: Backend) -> None:
        started = time.monotonic()
        store.wait(["default"], 0.3)
        assert time.monotonic() - started < 2.5


class TestExchange:
    """``exchange``: a worker's turn (settle, wait, claim) in one call."""

    def test_woken_by_an_enqueue_it_returns_the_delivery_leased(
        self, store: Backend, open_peer: Callable[..., Backend], clock: FakeClock
    ) -> None:
        producer = open_peer()
        m = new_message()

        def produce() -> None:
            time.sleep(0.3)
            producer.enqueue([m])

        thread = threading.Thread(target=produce, daemon=True)
        thread.start()
        started = time.monotonic()
        applied, got = store.exchange([], ["default"], 10, 30.0, "w", wait=5.0)
        took = time.monotonic() - started
        thread.join(5)
        assert applied == [] and [d.lease.message_id for d in got] == [m.id]
        assert took < 2.0, f"exchange returned {took:.2f}s after it began, not when woken"
        assert got[0].expires_at >= clock() + 30.0  # never a shorter lease than asked for
        info = store.message(m.id)
        assert info is not None and info.state == State.RUNNING

    def test_settles_fenced_then_claims_up_to_the_limit(self, store: Backend) -> None:
        ids = [enqueue_one(store) for _ in range(4)]
        first = store.claim(["default"], 2, 30.0, "w")
        stale = Lease(first[1].lease.message_id, first[1].lease.token + "x")
        applied, got = store.exchange([Complete(first[0].lease, None), Complete(stale, None)],
                                      ["default"], 1, 30.0, "w", wait=5.0)
        assert applied == [True, False]  # the fencing rule holds inside the turn
        assert [d.lease.message_id for d in got] == ids[2:3]
        states = [info.state if (info := store.message(i)) else None for i in ids[:2]]
        assert states == [State.SUCCEEDED, State.RUNNING]

    def test_ready_work_is_claimed_at_once(self, store: Backend) -> None:
        ids = [enqueue_one(store) for _ in range(3)]
        started = time.monotonic()
        _, got = store.exchange([], ["default"], 2, 30.0, "w", wait=5.0)
        assert [d.lease.message_id for d in got] == ids[:2]
        assert time.monotonic() - started < 2.0

    def test_nothing_comes_then_nothing_is_claimed(self, store: Backend) -> None:
        started = time.monotonic()
        assert store.exchange([], ["default"], 10, 30.0, "w", wait=0.3) == ([], [])
        assert time.monotonic() - started < 2.5

    def test_several_queues_claim_in_priority_order(self, store: Backend) -> None:
        low, high = new_message("a", priority=1), new_message("b", priority=7)
        store.enqueue([low, high])
        _, got = store.exchange([], ["a", "b"], 10, 30.0, "w", wait=1.0)
        assert [d.lease.message_id for d in got] == [high.id, low.id]
