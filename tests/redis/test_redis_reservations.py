"""Enqueue's two steps on Redis: one message per id and key, and none lost between the steps.

Enqueue first reserves ids and idempotency keys (store-wide), then stores each message in its
queue. The first reservation of an id or key is authoritative: a later enqueue that finds it
resolves to the reserved id, and while that id's message is not stored yet, stores its own
content under it, in the reserved queue. Storing is idempotent by id, so whichever store lands
first is the message and the other does nothing. A producer that dies between the two steps, or
gives up after the second kept failing, so loses nothing: the next enqueue stores the message.
These tests stop after the first step by calling it alone, or interleave two producers' steps.
``enqueue`` itself takes both steps in one script call (store.lua); the two calls apart are
what it made before, and what such a producer left unstored, store.lua completes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stalwart.backends import open_backend
from stalwart.backends.base import Counts, ErrorInfo, NewJob, NewMessage
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


def store_only(backend: RedisBackend, keep: list[NewMessage]) -> None:
    """The second step of enqueue, for what a first step returned."""
    _, now = backend._now()
    backend._run(backend._enqueue_calls(keep, now))


def counts(backend: RedisBackend, queue: str) -> Counts:
    stats = {s.queue: s.counts for s in backend.queue_stats()}
    c = stats.get(queue, Counts())
    assert c.unaccounted == 0, f"queue {queue}: {c}"
    return c


def assert_stored_and_runs(
    backend: RedisBackend, mid: str, queue: str, body: bytes | None = None
) -> None:
    info = backend.message(mid)
    assert info is not None, f"enqueue answered {mid}, which is not stored"
    assert info.state == State.QUEUED and info.queue == queue
    if body is not None:
        assert info.body == body
    [d] = backend.claim([queue], 10, 30, "w")
    assert d.lease.message_id == mid
    assert backend.complete(d.lease)


def test_a_key_reserved_by_a_crashed_enqueue_is_stored_by_the_next_message(
    backend: RedisBackend,
) -> None:
    crashed = msg("q", idempotency_key="K")
    reserve_only(backend, [crashed])
    again = msg("q", idempotency_key="K")
    # The first reservation keeps the key; the message at hand is stored under its id.
    assert backend.enqueue([again]) == [crashed.id]
    assert counts(backend, "q").accepted == 1
    assert backend.message(again.id) is None
    assert_stored_and_runs(backend, crashed.id, "q", body=again.body)
    # The key's message is stored now: it deduplicates as before.
    assert backend.enqueue([msg("q", idempotency_key="K")]) == [crashed.id]
    assert counts(backend, "q").accepted == 1


def test_an_id_reserved_for_one_queue_is_stored_there_when_sent_to_another(
    backend: RedisBackend,
) -> None:
    """The first reservation's queue wins: the id may be stored by its first producer yet."""
    m = msg("a")
    reserve_only(backend, [m])
    moved = NewMessage(m.id, m.task, "b", m.body)
    assert backend.enqueue([moved]) == [m.id]
    assert counts(backend, "a").accepted == 1
    assert counts(backend, "b").accepted == 0
    assert_stored_and_runs(backend, m.id, "a")


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


@pytest.mark.parametrize("first_store", ["slow", "fast"])
def test_two_producers_racing_with_one_key_store_one_message(
    backend: RedisBackend, first_store: str
) -> None:
    """Both steps of two producers interleaved: one message, whichever store lands first."""
    slow = msg("q", idempotency_key="K", job_id="j")
    fast = msg("q", idempotency_key="K", job_id="j")
    _, now = backend._now()
    slow_ids, slow_keep = backend._reserve([slow], NewJob("j", "import"), now)
    fast_ids, fast_keep = backend._reserve([fast], NewJob("j", "import"), now)
    assert slow_ids == fast_ids == [slow.id]
    stores = [slow_keep, fast_keep] if first_store == "slow" else [fast_keep, slow_keep]
    for keep in stores:
        store_only(backend, keep)
    winner = slow if first_store == "slow" else fast
    assert backend.message(fast.id) is None
    assert [m.id for m in backend.messages(queue="q", limit=10)] == [slow.id]
    assert counts(backend, "q") == Counts(accepted=1, queued=1)
    job = backend.job("j")
    assert job is not None and job.counts == Counts(accepted=1, queued=1)
    assert_stored_and_runs(backend, slow.id, "q", body=winner.body)
    job = backend.job("j")
    assert job is not None and job.counts == Counts(accepted=1, succeeded=1)


def test_a_producer_between_its_steps_and_a_whole_enqueue_with_its_key_store_one_message(
    backend: RedisBackend,
) -> None:
    slow, fast = msg("q", idempotency_key="K"), msg("q", idempotency_key="K")
    _, now = backend._now()
    ids, keep = backend._reserve([slow], None, now)  # `slow` is between its two steps
    assert backend.enqueue([fast]) == [slow.id]  # ... `fast` stores under slow's id
    store_only(backend, keep)  # ... and slow's second step stores nothing
    assert ids == [slow.id]
    assert backend.message(fast.id) is None
    assert counts(backend, "q") == Counts(accepted=1, queued=1)
    assert_stored_and_runs(backend, slow.id, "q", body=fast.body)


def test_a_stored_key_answers_before_an_unstored_reservation_of_the_id(
    backend: RedisBackend,
) -> None:
    held = msg("q", idempotency_key="K")
    assert backend.enqueue([held]) == [held.id]
    reserved = msg("q")
    reserve_only(backend, [reserved])
    same_id_with_key = NewMessage(reserved.id, "t", "q", b"x", idempotency_key="K")
    assert backend.enqueue([same_id_with_key]) == [held.id]
    assert counts(backend, "q").accepted == 1
    # The reservation still stands for its own message.
    assert backend.enqueue([reserved]) == [reserved.id]
    assert counts(backend, "q").accepted == 2


def test_an_id_and_a_key_reserved_by_two_others_store_the_message_without_the_key(
    backend: RedisBackend,
) -> None:
    """The id's reservation wins; the key keeps naming the one message it was reserved for."""
    first, keyed = msg("q"), msg("q", idempotency_key="K")
    reserve_only(backend, [first, keyed])
    both = NewMessage(first.id, "t", "q", b"x", idempotency_key="K")
    assert backend.enqueue([both]) == [first.id]
    info = backend.message(first.id)
    assert info is not None and info.idempotency_key is None
    assert backend.enqueue([msg("q", idempotency_key="K")]) == [keyed.id]
    assert counts(backend, "q").accepted == 2
    key_owner = backend.message(keyed.id)
    assert key_owner is not None and key_owner.idempotency_key == "K"


def test_a_key_whose_message_was_deleted_is_free_before_the_indexes_forget_it(
    backend: RedisBackend,
) -> None:
    """Between a purge and its cleanup of the store-wide indexes, the key is already free."""
    old = msg("q", idempotency_key="K")
    backend.enqueue([old])
    [d] = backend.claim(["q"], 1, 30, "w")
    assert backend.fail(d.lease, ErrorInfo("fail", message="boom"))
    [(_, (n, _))] = backend._dead_batches("purge", [old.id], None)  # no cleanup after it
    assert n == 1
    new = msg("q", idempotency_key="K")
    assert backend.enqueue([new]) == [new.id]
    assert backend.purge_dead() == 0  # ... the cleanup runs now
    assert backend.enqueue([msg("q", idempotency_key="K")]) == [new.id]
    assert_stored_and_runs(backend, new.id, "q", body=new.body)


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
