"""Enqueue's two steps on Redis: a reservation whose message was never stored loses nothing.

Enqueue first reserves ids and idempotency keys (store-wide), then stores each message in its
queue. A producer that dies between the two, or gives up after the second kept failing, leaves
a reservation behind; the user's natural next move is to enqueue again. These tests stop after
the first step by calling it alone, then check that the next enqueue is stored and runs.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stalwart.backends import open_backend
from stalwart.backends.base import Counts, NewJob, NewMessage
from stalwart.backends.redis import RedisBackend
from stalwart.ids import new_id
from stalwart.states import State
from stalwart.testing.services import redis_url


@pytest.fixture
def backend() -> Iterator[RedisBackend]:
    with redis_url() as url:
        b = open_backend(url)
        assert isinstance(b, RedisBackend)
        try:
            yield b
        finally:
            b.close()


def msg(queue: str = "default", **kw: object) -> NewMessage:
    mid = new_id()
    return NewMessage(id=mid, task="t", queue=queue, body=mid.encode(), **kw)  # type: ignore[arg-type]


def reserve_only(backend: RedisBackend, messages: list[NewMessage]) -> None:
    """The first step of enqueue and not the second: what a producer that died leaves."""
    _, now = backend._now()
    ids, keep = backend._reserve(messages, None, now)
    assert ids == [m.id for m in messages] and keep == messages


def counts(backend: RedisBackend, queue: str) -> Counts:
    stats = {s.queue: s.counts for s in backend.queue_stats()}
    c = stats.get(queue, Counts())
    assert c.unaccounted == 0, f"queue {queue}: {c}"
    return c


def assert_stored_and_runs(backend: RedisBackend, mid: str, queue: str) -> None:
    info = backend.message(mid)
    assert info is not None, f"enqueue answered {mid}, which is not stored"
    assert info.state == State.QUEUED and info.queue == queue
    [d] = backend.claim([queue], 10, 30, "w")
    assert d.lease.message_id == mid
    assert backend.complete(d.lease)


def test_a_key_reserved_by_a_crashed_enqueue_passes_to_the_next_message(
    backend: RedisBackend,
) -> None:
    crashed = msg("q", idempotency_key="K")
    reserve_only(backend, [crashed])
    again = msg("q", idempotency_key="K")
    assert backend.enqueue([again]) == [again.id]
    assert counts(backend, "q").accepted == 1
    assert backend.message(crashed.id) is None
    assert_stored_and_runs(backend, again.id, "q")
    # The key now belongs to a stored message: it deduplicates again.
    assert backend.enqueue([msg("q", idempotency_key="K")]) == [again.id]
    assert counts(backend, "q").accepted == 1


def test_an_id_reserved_for_one_queue_is_stored_when_sent_to_another(
    backend: RedisBackend,
) -> None:
    m = msg("a")
    reserve_only(backend, [m])
    moved = NewMessage(m.id, m.task, "b", m.body)
    assert backend.enqueue([moved]) == [m.id]
    assert counts(backend, "b").accepted == 1
    assert counts(backend, "a").accepted == 0
    assert_stored_and_runs(backend, m.id, "b")


def test_resending_the_crashed_batch_stores_it_once(backend: RedisBackend) -> None:
    batch = [msg("q", idempotency_key="k1", job_id="j"), msg("q", job_id="j")]
    reserve_only(backend, batch)
    assert backend.enqueue(batch, NewJob("j", "import")) == [m.id for m in batch]
    assert backend.enqueue(batch, NewJob("j", "import")) == [m.id for m in batch]
    assert counts(backend, "q").accepted == 2
    job = backend.job("j")
    assert job is not None and job.counts.accepted == 2 and job.counts.unaccounted == 0


def test_retrying_a_completed_batch_stores_nothing_new(backend: RedisBackend) -> None:
    batch = [msg("q", idempotency_key="k1", job_id="j"), msg("q", job_id="j"), msg("r")]
    ids = backend.enqueue(batch, NewJob("j", "import"))
    assert ids == [m.id for m in batch]
    assert backend.enqueue(batch, NewJob("j", "import")) == ids
    assert counts(backend, "q").accepted == 2 and counts(backend, "r").accepted == 1
    job = backend.job("j")
    assert job is not None and job.counts.accepted == 2
    # A new message with a stored message's key is answered with the stored id.
    assert backend.enqueue([msg("q", idempotency_key="k1")]) == [ids[0]]
    assert counts(backend, "q").accepted == 2


def test_a_race_between_two_producers_with_one_key_duplicates_and_never_loses(
    backend: RedisBackend,
) -> None:
    slow, fast = msg("q", idempotency_key="K"), msg("q", idempotency_key="K")
    _, now = backend._now()
    ids, keep = backend._reserve([slow], None, now)  # `slow` is between its two steps
    assert backend.enqueue([fast]) == [fast.id]
    backend._run(backend._enqueue_calls(keep, now))  # ... and now takes its second step
    assert ids == [slow.id]
    for mid in (slow.id, fast.id):
        info = backend.message(mid)
        assert info is not None and info.state == State.QUEUED
    assert counts(backend, "q").accepted == 2


def test_a_batch_longer_than_one_script_call_deduplicates_across_calls(
    backend: RedisBackend,
) -> None:
    first = msg("q", idempotency_key="K")
    fillers = [msg("q") for _ in range(600)]
    same_key, same_id = msg("q", idempotency_key="K"), first
    batch = [first, *fillers[:510], same_key, same_id, *fillers[510:]]
    ids = backend.enqueue(batch)
    assert ids[511] == ids[512] == first.id
    assert ids[:511] == [m.id for m in batch[:511]]
    assert counts(backend, "q").accepted == 601
    assert backend.enqueue(batch) == ids
    assert counts(backend, "q").accepted == 601
