"""Enqueue: batches, ids in order, duplicates and idempotency keys, eta, jobs."""

from __future__ import annotations

from ...backends.base import Backend, Counts, NewJob
from ...states import JobState, State
from .checks import counts_of, enqueue_one, new_message
from .fixtures import FakeClock


class TestEnqueue:
    def test_batch_returns_ids_in_order_and_stores_each(self, store: Backend) -> None:
        batch = [new_message(), new_message("other"), new_message(priority=9)]
        assert store.enqueue(batch) == [m.id for m in batch]
        for m in batch:
            info = store.message(m.id)
            assert info is not None and info.state == State.QUEUED
        assert counts_of(store).accepted == 2
        assert counts_of(store, "other").accepted == 1

    def test_empty_batch_is_a_no_op(self, store: Backend) -> None:
        assert store.enqueue([]) == []
        assert store.queue_stats() == []

    def test_stored_fields_come_back_unchanged(self, store: Backend, clock: FakeClock) -> None:
        body = b'{"args": [1, "\xc3\xa9"], "bin": "\\u0000"}\x00\xff'
        m = new_message("images", priority=7, max_deliveries=3, task="shop.resize", body=body,
                        key="img-42", created_at=clock() - 1)
        store.enqueue([m])
        info = store.message(m.id)
        assert info is not None
        assert (info.id, info.task, info.queue, info.body) == (m.id, "shop.resize", "images", body)
        assert (info.priority, info.max_deliveries, info.idempotency_key) == (7, 3, "img-42")
        assert info.created_at == clock() - 1
        assert (info.retries, info.deliveries, info.job_id) == (0, 0, None)
        assert info.result is None and info.error is None and info.attempts == ()

    def test_unknown_message_is_none(self, store: Backend) -> None:
        assert store.message(new_message().id) is None

    def test_duplicate_id_is_a_no_op(self, store: Backend) -> None:
        m = new_message(body=b"first")
        assert store.enqueue([m]) == [m.id]
        again = new_message(id=m.id, body=b"second", queue="default")
        assert store.enqueue([again]) == [m.id]
        info = store.message(m.id)
        assert info is not None and info.body == b"first"
        assert counts_of(store).accepted == 1

    def test_duplicate_id_for_another_queue_is_a_no_op(self, store: Backend) -> None:
        m = new_message("first")
        store.enqueue([m])
        assert store.enqueue([new_message("second", id=m.id)]) == [m.id]
        info = store.message(m.id)
        assert info is not None and info.queue == "first"
        assert counts_of(store, "first").accepted == 1
        assert counts_of(store, "second").accepted == 0
        assert store.claim(["second"], 10, 30, "w") == []

    def test_duplicate_id_within_one_batch_is_stored_once(self, store: Backend) -> None:
        m = new_message()
        assert store.enqueue([m, m]) == [m.id, m.id]
        assert counts_of(store) == Counts(accepted=1, queued=1)

    def test_retried_enqueue_after_a_lost_reply_changes_nothing(self, store: Backend) -> None:
        batch = [new_message() for _ in range(3)]
        first = store.enqueue(batch)
        assert store.enqueue(batch) == first
        assert counts_of(store) == Counts(accepted=3, queued=3)

    def test_idempotency_key_returns_the_existing_id(self, store: Backend) -> None:
        a = new_message(key="order-7")
        b = new_message(key="order-7")
        assert store.enqueue([a]) == [a.id]
        assert store.enqueue([b, new_message(key="order-8")])[0] == a.id
        assert store.message(b.id) is None
        assert counts_of(store).accepted == 2

    def test_idempotency_key_spans_queues(self, store: Backend) -> None:
        a = new_message("first", key="order-9")
        store.enqueue([a])
        assert store.enqueue([new_message("second", key="order-9")]) == [a.id]
        assert counts_of(store, "second").accepted == 0

    def test_idempotency_key_twice_in_one_batch(self, store: Backend) -> None:
        a, b = new_message(key="k"), new_message(key="k")
        assert store.enqueue([a, b]) == [a.id, a.id]
        assert counts_of(store).accepted == 1

    def test_idempotency_key_holds_after_the_message_is_final(self, store: Backend) -> None:
        a = new_message(key="k")
        store.enqueue([a])
        [d] = store.claim(["default"], 1, 30, "w")
        assert store.complete(d.lease, '"ok"')
        assert store.enqueue([new_message(key="k")]) == [a.id]
        assert counts_of(store) == Counts(accepted=1, succeeded=1)

    def test_future_eta_starts_scheduled_past_eta_queued(
        self, store: Backend, clock: FakeClock
    ) -> None:
        later = enqueue_one(store, eta=clock() + 60)
        past = enqueue_one(store, eta=clock() - 60)
        info_later, info_past = store.message(later), store.message(past)
        assert info_later is not None and info_later.state == State.SCHEDULED
        assert info_later.eta == clock() + 60
        assert info_past is not None and info_past.state == State.QUEUED
        assert counts_of(store) == Counts(accepted=2, queued=1, scheduled=1)

    def test_enqueue_creates_the_job_with_its_name(self, store: Backend, clock: FakeClock) -> None:
        job = NewJob("job-1", "import", created_at=clock())
        members = [new_message(job_id="job-1") for _ in range(3)]
        store.enqueue(members, job=job)
        info = store.job("job-1")
        assert info is not None
        assert (info.id, info.name, info.created_at, info.total) == ("job-1", "import", clock(), 3)
        assert info.state == JobState.RUNNING
        assert info.counts == Counts(accepted=3, queued=3)
        assert all(store.message(m.id).job_id == "job-1" for m in members)  # type: ignore[union-attr]

    def test_later_batches_add_to_the_job(self, store: Backend) -> None:
        store.enqueue([new_message(job_id="j")], job=NewJob("j", "grow"))
        store.enqueue([new_message(job_id="j"), new_message(job_id="j", queue="other")])
        info = store.job("j")
        assert info is not None and info.name == "grow" and info.total == 3

    def test_job_without_a_name_is_named_by_its_id(self, store: Backend) -> None:
        store.enqueue([new_message(job_id="anon")])
        info = store.job("anon")
        assert info is not None and info.name == "anon" and info.total == 1

    def test_duplicate_member_does_not_count_twice_for_the_job(self, store: Backend) -> None:
        m = new_message(job_id="j")
        store.enqueue([m], job=NewJob("j", "once"))
        store.enqueue([m], job=NewJob("j", "once"))
        info = store.job("j")
        assert info is not None and info.total == 1

    def test_unknown_job_is_none(self, store: Backend) -> None:
        assert store.job("no-such-job") is None
