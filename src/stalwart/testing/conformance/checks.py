"""The checks every conformance test leans on: the conservation law, and message builders."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ...backends.base import Backend, Counts, Delivery, ErrorInfo, NewMessage
from ...ids import new_id

# Operations that change state: after each one, every queue and job must still add up.
WRITES = frozenset({
    "enqueue", "claim", "extend", "settle", "complete", "retry", "fail", "release",
    "progress", "recover_expired", "cancel", "requeue_dead", "purge_dead", "exchange",
})

_FIELDS = ("accepted", "queued", "scheduled", "running", "succeeded", "dead", "cancelled")


def counts_problem(counts: Counts) -> str | None:
    """What is wrong with one Counts, or None: a negative field, or unaccounted messages."""
    negative = [f for f in _FIELDS if getattr(counts, f) < 0]
    if negative:
        return f"negative {negative} in {counts}"
    if counts.unaccounted != 0:
        return f"unaccounted={counts.unaccounted} in {counts}"
    return None


def assert_conserved(backend: Backend, context: str = "") -> None:
    """Assert ``accepted == queued + scheduled + running + succeeded + dead + cancelled``.

    Checked for every queue and every job the backend knows: a message that vanished or
    was counted twice shows up here at the step that caused it.
    """
    problems = []
    for qs in backend.queue_stats():
        if (p := counts_problem(qs.counts)) is not None:
            problems.append(f"queue {qs.queue!r}: {p}")
    for job in backend.jobs(limit=100_000):
        if (p := counts_problem(job.counts)) is not None:
            problems.append(f"job {job.id!r}: {p}")
    assert not problems, f"conservation law broken {context}: " + "; ".join(problems)


class CheckedBackend:
    """A backend whose every write is followed by :func:`assert_conserved`."""

    def __init__(self, inner: Backend) -> None:
        self._inner = inner

    @property
    def inner(self) -> Backend:
        return self._inner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if name not in WRITES:
            return attr

        def checked(*args: Any, **kwargs: Any) -> Any:
            out = attr(*args, **kwargs)
            assert_conserved(self._inner, f"after {name}()")
            return out

        return checked


# --- builders ----------------------------------------------------------------------------


def new_message(
    queue: str = "default",
    *,
    priority: int = 0,
    eta: float | None = None,
    job_id: str | None = None,
    key: str | None = None,
    max_deliveries: int = 5,
    task: str = "tests.noop",
    body: bytes | None = None,
    created_at: float = 0.0,
    id: str | None = None,
) -> NewMessage:
    """A message with a fresh sortable id, so ids made later sort later (FIFO)."""
    mid = id or new_id()
    return NewMessage(
        id=mid, task=task, queue=queue,
        body=body if body is not None else f'{{"id": "{mid}"}}'.encode(),
        priority=priority, eta=eta, max_deliveries=max_deliveries, job_id=job_id,
        idempotency_key=key, created_at=created_at,
    )


def enqueue_one(backend: Backend, queue: str = "default", **kwargs: Any) -> str:
    [mid] = backend.enqueue([new_message(queue, **kwargs)])
    return mid


def claim_one(
    backend: Backend,
    queues: tuple[str, ...] = ("default",),
    *,
    worker: str = "worker-1",
    lease_seconds: float = 30.0,
) -> Delivery:
    """Claim exactly one delivery, failing clearly when there is none."""
    got = backend.claim(list(queues), 1, lease_seconds, worker)
    assert len(got) == 1, f"expected one delivery from {queues}, got {len(got)}"
    return got[0]


def boom(reason: str = "exception", message: str = "boom") -> ErrorInfo:
    return ErrorInfo(
        reason=reason, exc_type="ValueError", message=message,
        traceback='Traceback (most recent call last):\n  File "task.py", line 3\nValueError: boom\n',
    )


def ids_of(deliveries: list[Delivery]) -> list[str]:
    return [d.lease.message_id for d in deliveries]


def counts_of(backend: Backend, queue: str = "default") -> Counts:
    """The queue's Counts (all zero for a queue that never accepted anything)."""
    for qs in backend.queue_stats():
        if qs.queue == queue:
            return qs.counts
    return Counts()


def only(pred: Callable[[Any], bool], items: list[Any]) -> Any:
    found = [i for i in items if pred(i)]
    assert len(found) == 1, f"expected exactly one match, found {len(found)} in {items}"
    return found[0]
