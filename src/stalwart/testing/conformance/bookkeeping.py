"""Jobs, queue statistics, cancel, the dead-letter store and message listings."""

from __future__ import annotations

from ...backends.base import Backend, Counts, NewJob, Progress, QueueStats
from ...states import JobState, State
from .checks import assert_conserved, boom, claim_one, counts_of, enqueue_one, new_message
from .fixtures import FakeClock


class TestJobs:
    def test_counters_follow_each_member(self, store: Backend, clock: FakeClock) -> None:
        members = [new_message(job_id="j", priority=9 - i) for i in range(4)]
        store.enqueue(members + [new_message()], job=NewJob("j", "batch", clock()))
        a, b = store.claim(["default"], 2, 30, "w")
        job = store.job("j")
        assert job is not None and job.counts == Counts(accepted=4, queued=2, running=2)
        assert store.complete(a.lease)  # type: ignore[attr-defined]
        assert store.fail(b.lease, boom())  # type: ignore[attr-defined]
        job = store.job("j")
        assert job is not None and job.state == JobState.RUNNING
        assert job.counts == Counts(accepted=4, queued=2, succeeded=1, dead=1)
        c = claim_one(store)
        assert store.retry(c.lease, clock() + 60, boom())  # type: ignore[attr-defined]
        job = store.job("j")
        assert job is not None and job.counts == Counts(accepted=4, queued=1, scheduled=1,
                                                        succeeded=1, dead=1)
        cancelled = store.cancel([members[3].id, c.lease.message_id])
        assert sorted(cancelled) == sorted([members[3].id, c.lease.message_id])
        job = store.job("j")
        assert job is not None and job.state == JobState.FINISHED_WITH_FAILURES
        assert job.counts == Counts(accepted=4, succeeded=1, dead=1, cancelled=2)

    def test_job_succeeds_when_every_member_succeeds(self, store: Backend) -> None:
        store.enqueue([new_message(job_id="j") for _ in range(3)], job=NewJob("j", "ok"))
        *first, last = store.claim(["default"], 3, 30, "w")
        for d in first:
            assert store.complete(d.lease)  # type: ignore[attr-defined]
            job = store.job("j")
            assert job is not None and job.state == JobState.RUNNING
        assert store.complete(last.lease)  # type: ignore[attr-defined]
        job = store.job("j")
        assert job is not None and job.state == JobState.SUCCEEDED
        assert job.counts == Counts(accepted=3, succeeded=3)

    def test_members_across_queues(self, store: Backend) -> None:
        store.enqueue([new_message("a", job_id="j"), new_message("b", job_id="j")])
        for d in store.claim(["a", "b"], 2, 30, "w"):
            assert store.complete(d.lease)  # type: ignore[attr-defined]
        job = store.job("j")
        assert job is not None and job.state == JobState.SUCCEEDED and job.total == 2

    def test_progress_of_running_members(self, store: Backend, clock: FakeClock) -> None:
        store.enqueue([new_message(job_id="j") for _ in range(3)], job=NewJob("j", "p"))
        a, b, c = store.claim(["default"], 3, 30, "w")
        assert store.progress(a.lease, 5, 10, "rows")
        assert store.progress(b.lease, 1, None, None)
        job = store.job("j")
        assert job is not None and dict(job.progress) == {
            a.lease.message_id: Progress(5, 10, "rows", clock()),
            b.lease.message_id: Progress(1, None, None, clock()),
        }
        assert store.complete(a.lease)  # type: ignore[attr-defined]
        job = store.job("j")
        assert job is not None and [mid for mid, _ in job.progress] == [b.lease.message_id]

    def test_jobs_newest_first(self, store: Backend, clock: FakeClock) -> None:
        for n in range(3):
            store.enqueue([new_message(job_id=f"job-{n}")], job=NewJob(f"job-{n}", "x", clock()))
            clock.advance(1)
        assert [j.id for j in store.jobs()] == ["job-2", "job-1", "job-0"]
        assert [j.id for j in store.jobs(limit=2)] == ["job-2", "job-1"]


class TestQueueStats:
    def test_counts_by_state_per_queue(self, store: Backend, clock: FakeClock) -> None:
        store.enqueue([new_message("a") for _ in range(6)] + [new_message("b", eta=clock() + 9)])
        ds = store.claim(["a"], 5, 30, "w")
        assert store.complete(ds[0].lease)  # type: ignore[attr-defined]
        assert store.fail(ds[1].lease, boom())  # type: ignore[attr-defined]
        assert store.retry(ds[2].lease, clock() + 60, boom())  # type: ignore[attr-defined]
        assert store.release(ds[3].lease)  # type: ignore[attr-defined]
        assert len(store.cancel([ds[3].lease.message_id])) == 1
        assert sorted(store.queue_stats(), key=lambda s: s.queue) == [
            QueueStats("a", Counts(accepted=6, queued=1, scheduled=1, running=1, succeeded=1,
                                   dead=1, cancelled=1)),
            QueueStats("b", Counts(accepted=1, scheduled=1)),
        ]

    def test_queue_stays_listed_when_empty(self, store: Backend) -> None:
        enqueue_one(store, "once")
        assert store.complete(claim_one(store, ("once",)).lease)  # type: ignore[attr-defined]
        assert counts_of(store, "once") == Counts(accepted=1, succeeded=1)


class TestCancel:
    def test_cancel_queued_and_scheduled_only(self, store: Backend, clock: FakeClock) -> None:
        queued = enqueue_one(store)
        scheduled = enqueue_one(store, eta=clock() + 60)
        running = enqueue_one(store, priority=9)
        d = claim_one(store)
        assert d.lease.message_id == running
        unknown = new_message().id
        got = store.cancel([queued, running, unknown, scheduled])
        assert sorted(got) == sorted([queued, scheduled])
        for mid in (queued, scheduled):
            info = store.message(mid)
            assert info is not None and info.state == State.CANCELLED
        assert counts_of(store) == Counts(accepted=3, running=1, cancelled=2)
        assert store.cancel([queued, scheduled]) == []
        assert store.claim(["default"], 10, 30, "w") == []
        assert store.complete(d.lease)  # type: ignore[attr-defined]
        assert store.cancel([running]) == []


class TestDeadLetters:
    def _dead(self, store: Backend, queue: str = "default", **kwargs: object) -> str:
        mid = enqueue_one(store, queue, **kwargs)  # type: ignore[arg-type]
        d = claim_one(store, (queue,))
        assert store.retry(d.lease, store.clock(), boom())  # type: ignore[attr-defined]
        d = claim_one(store, (queue,))
        assert store.fail(d.lease, boom("retries-exhausted"))  # type: ignore[attr-defined]
        return mid

    def test_requeue_gives_a_full_budget_again(self, store: Backend) -> None:
        mid = self._dead(store, job_id="j")
        assert counts_of(store) == Counts(accepted=1, dead=1)
        assert store.requeue_dead([mid]) == 1
        info = store.message(mid)
        assert info is not None and info.state == State.QUEUED
        assert (info.retries, info.deliveries, info.eta) == (0, 0, None)
        assert counts_of(store) == Counts(accepted=1, queued=1)
        job = store.job("j")
        assert job is not None and job.counts == Counts(accepted=1, queued=1)
        assert job.state == JobState.RUNNING
        d = claim_one(store)
        assert (d.deliveries, d.retries) == (1, 0)
        assert store.complete(d.lease)  # type: ignore[attr-defined]
        assert counts_of(store) == Counts(accepted=1, succeeded=1)

    def test_requeue_by_queue_or_all(self, store: Backend) -> None:
        a1, a2, b1 = self._dead(store, "a"), self._dead(store, "a"), self._dead(store, "b")
        assert store.requeue_dead(queue="a") == 2
        assert counts_of(store, "a").dead == 0 and counts_of(store, "b").dead == 1
        assert store.requeue_dead() == 1
        assert store.requeue_dead() == 0
        for mid in (a1, a2, b1):
            info = store.message(mid)
            assert info is not None and info.state == State.QUEUED

    def test_an_id_named_twice_counts_once(self, store: Backend) -> None:
        mid = self._dead(store)
        assert store.requeue_dead([mid, mid]) == 1
        assert counts_of(store) == Counts(accepted=1, queued=1)
        d = claim_one(store)
        assert store.fail(d.lease, boom())  # type: ignore[attr-defined]
        assert store.purge_dead([mid, mid]) == 1
        assert counts_of(store) == Counts(accepted=1, dead=1)

    def test_requeue_ignores_messages_not_dead(self, store: Backend) -> None:
        queued = enqueue_one(store)
        assert store.requeue_dead([queued, new_message().id]) == 0
        assert counts_of(store) == Counts(accepted=1, queued=1)

    def test_purge_deletes_but_counters_remember(self, store: Backend) -> None:
        dead = self._dead(store, job_id="j")
        keep = self._dead(store)
        assert store.purge_dead([dead]) == 1
        assert store.message(dead) is None
        assert store.message(keep) is not None
        assert counts_of(store) == Counts(accepted=2, dead=2)
        job = store.job("j")
        assert job is not None and job.counts == Counts(accepted=1, dead=1)
        assert job.state == JobState.FINISHED_WITH_FAILURES
        assert store.purge_dead() == 1
        assert store.purge_dead() == 0
        assert counts_of(store) == Counts(accepted=2, dead=2)

    def test_purge_by_queue_only_dead(self, store: Backend) -> None:
        self._dead(store, "a")
        other = self._dead(store, "b")
        alive = enqueue_one(store, "a")
        assert store.purge_dead(queue="a") == 1
        assert store.message(other) is not None and store.message(alive) is not None

    def test_purge_frees_the_idempotency_key(self, store: Backend) -> None:
        dead = self._dead(store, key="k")
        assert store.enqueue([new_message(key="k")]) == [dead]
        store.purge_dead([dead])
        fresh = new_message(key="k")
        assert store.enqueue([fresh]) == [fresh.id]
        assert counts_of(store) == Counts(accepted=2, queued=1, dead=1)

    def test_dead_listing(self, store: Backend) -> None:
        dead = [self._dead(store) for _ in range(3)]
        enqueue_one(store)
        listed = store.messages(state=State.DEAD)
        assert [m.id for m in listed] == dead
        assert all(m.error is not None and m.error.reason == "retries-exhausted" for m in listed)


class TestListing:
    def test_messages_filtered_oldest_first(self, store: Backend) -> None:
        a = [enqueue_one(store, "a") for _ in range(3)]
        b = enqueue_one(store, "b", priority=9)
        claim_one(store, ("a",))
        assert [m.id for m in store.messages()] == a + [b]
        assert [m.id for m in store.messages(queue="a")] == a
        assert [m.id for m in store.messages(state=State.RUNNING)] == a[:1]
        assert [m.id for m in store.messages(queue="a", state=State.QUEUED)] == a[1:]
        assert [m.id for m in store.messages(limit=2)] == a[:2]
        assert store.messages(queue="nope") == []
        assert_conserved(store)
