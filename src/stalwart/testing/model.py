"""The backend contract as plain Python: dicts and lists, no I/O, one lock.

It is the oracle the property tests compare every real backend with, and a complete
in-process backend (``memory://``) for unit tests. When a real backend and this model
disagree, read ``stalwart.backends.base``: one of them is wrong.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from ..backends.base import (
    Attempt,
    BackendBase,
    Bury,
    Clock,
    Complete,
    Counts,
    Delivery,
    ErrorInfo,
    JobInfo,
    Lease,
    MessageInfo,
    NewJob,
    NewMessage,
    Outcome,
    Progress,
    QueueStats,
    Release,
    Reschedule,
    WorkerInfo,
)
from ..ids import new_token
from ..states import FINAL_STATES, State, job_state

_FINAL_COUNTERS = {State.SUCCEEDED: "succeeded", State.DEAD: "dead", State.CANCELLED: "cancelled"}


@dataclass
class _Row:
    msg: NewMessage
    state: State
    eta: float | None
    updated_at: float
    retries: int = 0
    deliveries: int = 0
    token: str | None = None
    expires_at: float | None = None
    result: str | None = None
    result_expires_at: float | None = None
    error: ErrorInfo | None = None
    progress: Progress | None = None
    attempts: list[Attempt] = field(default_factory=list)


class ModelBackend(BackendBase):
    """An in-memory backend that follows the contract to the letter, and nothing more."""

    capabilities = frozenset[str]()

    def __init__(self, url: str = "memory://", *, clock: Clock = time.time) -> None:
        self.url = url
        self.clock = clock
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._rows: dict[str, _Row] = {}
        self._keys: dict[str, str] = {}  # idempotency key -> message id
        self._queue_counts: dict[str, dict[str, int]] = {}
        self._jobs: dict[str, tuple[str, float, dict[str, int]]] = {}
        self._workers: dict[str, tuple[WorkerInfo, float]] = {}

    # -- writes -------------------------------------------------------------------------

    def enqueue(self, messages: Sequence[NewMessage], job: NewJob | None = None) -> list[str]:
        with self._lock:
            now = self.clock()
            ids = []
            for m in messages:
                if m.id in self._rows:
                    ids.append(m.id)
                    continue
                if m.idempotency_key is not None and m.idempotency_key in self._keys:
                    ids.append(self._keys[m.idempotency_key])
                    continue
                ready = m.eta is None or m.eta <= now
                self._rows[m.id] = _Row(m, State.QUEUED if ready else State.SCHEDULED, m.eta, now)
                if m.idempotency_key is not None:
                    self._keys[m.idempotency_key] = m.id
                if m.job_id is not None and m.job_id not in self._jobs:
                    if job is not None and job.id == m.job_id:
                        self._jobs[m.job_id] = (job.name, job.created_at or now, {})
                    else:
                        self._jobs[m.job_id] = (m.job_id, now, {})
                self._count(m, "accepted", +1)
                ids.append(m.id)
            self._wake.notify_all()
            return ids

    def claim(
        self, queues: Sequence[str], limit: int, lease_seconds: float, worker_id: str
    ) -> list[Delivery]:
        with self._lock:
            now = self.clock()
            ready = [
                r for r in self._rows.values()
                if r.msg.queue in queues and (
                    r.state == State.QUEUED
                    or (r.state == State.SCHEDULED and r.eta is not None and r.eta <= now)
                )
            ]
            ready.sort(key=lambda r: (-r.msg.priority, r.msg.id))
            out = []
            for r in ready[: max(limit, 0)]:
                r.state, r.token, r.expires_at = State.RUNNING, new_token(), now + lease_seconds
                r.deliveries += 1
                r.updated_at = now
                r.attempts.append(Attempt(r.deliveries, worker_id, now))
                out.append(Delivery(
                    Lease(r.msg.id, r.token), r.msg.task, r.msg.queue, r.msg.body,
                    r.msg.priority, r.deliveries, r.retries, r.msg.max_deliveries,
                    r.msg.job_id, r.expires_at,
                ))
            return out

    def extend(self, leases: Sequence[Lease], lease_seconds: float) -> list[Lease]:
        with self._lock:
            now, lost = self.clock(), []
            for lease in leases:
                r = self._held(lease)
                if r is None:
                    lost.append(lease)
                else:
                    r.expires_at = now + lease_seconds
            return lost

    def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        with self._lock:
            return [self._settle_one(o) for o in outcomes]

    def _settle_one(self, o: Outcome) -> bool:
        r = self._rows.get(o.lease.message_id)
        if r is None or r.token != o.lease.token:
            return False
        if r.state != State.RUNNING:
            return True  # already applied by an earlier call carrying the same token
        now = self.clock()
        if isinstance(o, Complete):
            r.result = o.result
            r.result_expires_at = None if o.result_ttl is None else now + o.result_ttl
            self._end_attempt(r, now, "succeeded", None)
            self._finalize(r, State.SUCCEEDED, now)
        elif isinstance(o, Reschedule):
            r.retries += 1
            r.error = o.error
            r.eta = o.at
            self._end_attempt(r, now, "retry", o.error)
            self._move(r, State.QUEUED if o.at <= now else State.SCHEDULED, now)
        elif isinstance(o, Bury):
            r.error = o.error
            self._end_attempt(r, now, "dead", o.error)
            self._finalize(r, State.DEAD, now)
        elif isinstance(o, Release):
            self._give_back(r, now, o.started, o.error)
        return True

    def _give_back(self, r: _Row, now: float, started: bool, error: ErrorInfo | None) -> State:
        r.token = None
        if not started:
            r.deliveries -= 1
            r.attempts.pop()
            self._move(r, State.QUEUED, now)
            return State.QUEUED
        err = error or ErrorInfo("worker-lost")
        r.error = err
        self._end_attempt(r, now, err.reason, err)
        if r.deliveries >= r.msg.max_deliveries:
            self._finalize(r, State.DEAD, now)
            return State.DEAD
        self._move(r, State.QUEUED, now)
        return State.QUEUED

    def progress(self, lease: Lease, done: float, total: float | None, note: str | None) -> bool:
        with self._lock:
            r = self._held(lease)
            if r is None:
                return False
            r.progress = Progress(done, total, note, self.clock())
            return True

    def recover_expired(self, limit: int = 1000) -> list[tuple[str, State]]:
        with self._lock:
            now = self.clock()
            out: list[tuple[str, State]] = []
            for r in list(self._rows.values()):
                if r.result_expires_at is not None and r.result_expires_at <= now:
                    r.result = None
                if len(out) < limit and r.state == State.RUNNING and r.expires_at is not None \
                        and r.expires_at < now:
                    lost = r.deliveries >= r.msg.max_deliveries
                    err = ErrorInfo("worker-lost" if lost else "lease-expired",
                                    message=f"lease expired after delivery {r.deliveries}")
                    self._end_attempt(r, now, "lease-expired", err)
                    r.token, r.error = None, err
                    if lost:
                        self._finalize(r, State.DEAD, now)
                    else:
                        self._move(r, State.QUEUED, now)
                    out.append((r.msg.id, r.state))
            return out

    def cancel(self, ids: Sequence[str]) -> list[str]:
        with self._lock:
            now, out = self.clock(), []
            for mid in ids:
                r = self._rows.get(mid)
                if r is not None and r.state in (State.QUEUED, State.SCHEDULED):
                    r.error = ErrorInfo("cancelled")
                    self._finalize(r, State.CANCELLED, now)
                    out.append(mid)
            return out

    def requeue_dead(self, ids: Sequence[str] | None = None, queue: str | None = None) -> int:
        with self._lock:
            now, n = self.clock(), 0
            for r in self._select_dead(ids, queue):
                r.retries = r.deliveries = 0
                r.eta, r.token = None, None
                self._count(r.msg, "dead", -1)
                self._move(r, State.QUEUED, now)
                n += 1
            self._wake.notify_all()
            return n

    def purge_dead(self, ids: Sequence[str] | None = None, queue: str | None = None) -> int:
        with self._lock:
            rows = self._select_dead(ids, queue)
            for r in rows:
                del self._rows[r.msg.id]
                if r.msg.idempotency_key is not None:
                    self._keys.pop(r.msg.idempotency_key, None)
            return len(rows)

    def wait(self, queues: Sequence[str], timeout: float) -> bool:
        with self._lock:
            return self._wake.wait(timeout)

    # -- reads --------------------------------------------------------------------------

    def message(self, message_id: str) -> MessageInfo | None:
        with self._lock:
            r = self._rows.get(message_id)
            return None if r is None else self._info(r)

    def messages(
        self, *, queue: str | None = None, state: State | None = None, limit: int = 100
    ) -> list[MessageInfo]:
        with self._lock:
            rows = sorted(
                (r for r in self._rows.values()
                 if (queue is None or r.msg.queue == queue) and (state is None or r.state == state)),
                key=lambda r: r.msg.id,
            )
            return [self._info(r) for r in rows[:limit]]

    def queue_stats(self) -> list[QueueStats]:
        with self._lock:
            return [QueueStats(q, self._counts(c, lambda r, q=q: r.msg.queue == q))
                    for q, c in sorted(self._queue_counts.items())]

    def job(self, job_id: str) -> JobInfo | None:
        with self._lock:
            if job_id not in self._jobs:
                return None
            name, created_at, c = self._jobs[job_id]
            counts = self._counts(c, lambda r: r.msg.job_id == job_id)
            progress = tuple(
                (r.msg.id, r.progress) for r in sorted(self._rows.values(), key=lambda r: r.msg.id)
                if r.msg.job_id == job_id and r.state == State.RUNNING and r.progress is not None
            )
            state = job_state(counts.accepted, counts.succeeded, counts.dead, counts.cancelled)
            return JobInfo(job_id, name, created_at, counts, state, progress)

    def jobs(self, limit: int = 50) -> list[JobInfo]:
        with self._lock:
            newest = sorted(self._jobs, key=lambda j: (self._jobs[j][1], j), reverse=True)
            return [info for j in newest[:limit] if (info := self.job(j)) is not None]

    # -- worker registry ------------------------------------------------------------------

    def register_worker(self, info: WorkerInfo, ttl: float) -> None:
        with self._lock:
            now = self.clock()
            self._workers[info.id] = (replace(info, last_seen=now), now + ttl)

    def unregister_worker(self, worker_id: str) -> None:
        with self._lock:
            self._workers.pop(worker_id, None)

    def workers(self) -> list[WorkerInfo]:
        with self._lock:
            now = self.clock()
            return [w for w, until in self._workers.values() if until >= now]

    def close(self) -> None:
        pass

    # -- helpers --------------------------------------------------------------------------

    def _held(self, lease: Lease) -> _Row | None:
        r = self._rows.get(lease.message_id)
        ok = r is not None and r.state == State.RUNNING and r.token == lease.token
        return r if ok else None

    def _count(self, m: NewMessage, name: str, delta: int) -> None:
        c = self._queue_counts.setdefault(m.queue, {})
        c[name] = c.get(name, 0) + delta
        if m.job_id is not None:
            jc = self._jobs[m.job_id][2]
            jc[name] = jc.get(name, 0) + delta

    def _move(self, r: _Row, state: State, now: float) -> None:
        r.state, r.updated_at, r.expires_at = state, now, None

    def _finalize(self, r: _Row, state: State, now: float) -> None:
        assert state in FINAL_STATES
        self._move(r, state, now)
        self._count(r.msg, _FINAL_COUNTERS[state], +1)

    @staticmethod
    def _end_attempt(r: _Row, now: float, outcome: str, error: ErrorInfo | None) -> None:
        if r.attempts and r.attempts[-1].ended_at is None:
            r.attempts[-1] = replace(r.attempts[-1], ended_at=now, outcome=outcome, error=error)

    def _select_dead(self, ids: Sequence[str] | None, queue: str | None) -> list[_Row]:
        if ids is None:
            pool: Iterable[_Row] = self._rows.values()
        else:  # an id named twice is still one message
            pool = [self._rows[i] for i in dict.fromkeys(ids) if i in self._rows]
        return [r for r in pool if r.state == State.DEAD and (queue is None or r.msg.queue == queue)]

    def _counts(self, stored: dict[str, int], member) -> Counts:  # type: ignore[no-untyped-def]
        live = {State.QUEUED: 0, State.SCHEDULED: 0, State.RUNNING: 0}
        for r in self._rows.values():
            if r.state in live and member(r):
                live[r.state] += 1
        return Counts(
            accepted=stored.get("accepted", 0), queued=live[State.QUEUED],
            scheduled=live[State.SCHEDULED], running=live[State.RUNNING],
            succeeded=stored.get("succeeded", 0), dead=stored.get("dead", 0),
            cancelled=stored.get("cancelled", 0),
        )

    @staticmethod
    def _info(r: _Row) -> MessageInfo:
        m = r.msg
        return MessageInfo(
            id=m.id, task=m.task, queue=m.queue, state=r.state, priority=m.priority, eta=r.eta,
            retries=r.retries, deliveries=r.deliveries, max_deliveries=m.max_deliveries,
            job_id=m.job_id, idempotency_key=m.idempotency_key, created_at=m.created_at,
            updated_at=r.updated_at, body=m.body, result=r.result,
            result_expires_at=r.result_expires_at, error=r.error,
            lease_expires_at=r.expires_at if r.state == State.RUNNING else None,
            progress=r.progress, attempts=tuple(r.attempts),
        )
