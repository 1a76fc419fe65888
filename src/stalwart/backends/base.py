"""The backend contract: one interface every backend implements, and the records it speaks.

Every operation is atomic. Time comes from the backend's ``clock`` (seconds since the
epoch, injectable so the conformance suite can let leases expire without sleeping).

Fencing rule, the same for every backend: a message row keeps the token of its newest
claim until the next claim, a release or a recovery clears or replaces it. An outcome
(complete, reschedule, bury, release), an extend or a progress report carrying token T:

* is applied, and answered True, when the message is ``running`` with token T, even if the
  lease's time has passed but nobody recovered it yet (nobody else can hold it then);
* is answered True without effect when the message is no longer running but still carries
  token T: that outcome was already applied (a retried call after a lost reply), so a
  retry of the round trip can never apply it twice;
* is refused (False) otherwise: the lease was recovered or the message claimed again.

Counters: each queue counts ``accepted`` (new messages stored) and the final transitions
``succeeded``, ``dead`` and ``cancelled``; a requeue from dead takes one off ``dead``. Each
job counts the same for its members. In-flight counts come from the messages' live states.
The conservation law every backend keeps, per queue and per job:
``accepted == queued + scheduled + running + succeeded + dead + cancelled``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..states import JobState, State

Clock = Callable[[], float]


# --- what goes in ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewMessage:
    """A message to store. ``body`` is the encoded envelope; the backend never parses it."""

    id: str
    task: str
    queue: str = "default"
    body: bytes = b""
    priority: int = 0  # 0..9, higher first
    eta: float | None = None  # epoch seconds; None or past means ready now
    max_deliveries: int = 5
    job_id: str | None = None
    idempotency_key: str | None = None
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job to create with the first batch of its members (``NewMessage.job_id == id``)."""

    id: str
    name: str
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Lease:
    """Proof of a claim: the holder of the token is the only one who may settle the delivery."""

    message_id: str
    token: str


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """Why an attempt did not succeed. ``reason`` is a short fixed word (see REASONS)."""

    reason: str
    exc_type: str | None = None
    message: str | None = None
    traceback: str | None = None


# Reasons a message ends dead or an attempt ends badly; free text goes in ``message``.
REASONS = (
    "exception",  # the task raised and no retry is left (or the exception is not retried)
    "retries-exhausted",
    "fail",  # the task raised stalwart.Fail
    "time-limit",  # killed at its hard time limit
    "worker-lost",  # the process died, or its lease expired, max_deliveries times
    "lease-expired",  # an attempt whose lease ran out (not final by itself)
    "unknown-task",
    "undecodable",
    "unsigned",  # no signature, or a forged one
    "shutdown",  # released by a worker that was stopping
    "cancelled",
)


# --- outcomes: what a worker reports for a delivery -----------------------------------


@dataclass(frozen=True, slots=True)
class Complete:
    """Final ``succeeded``; ``result`` is JSON text (or None), kept for ``result_ttl`` seconds."""

    lease: Lease
    result: str | None = None
    result_ttl: float | None = 86400.0  # None keeps it as long as the message row


@dataclass(frozen=True, slots=True)
class Reschedule:
    """Back to ``scheduled`` until ``at`` (``queued`` if ``at`` has passed); ``retries + 1``."""

    lease: Lease
    at: float
    error: ErrorInfo


@dataclass(frozen=True, slots=True)
class Bury:
    """Final ``dead`` with ``error.reason``: retries exhausted, Fail, unknown task, ..."""

    lease: Lease
    error: ErrorInfo


@dataclass(frozen=True, slots=True)
class Release:
    """Give a delivery back at once.

    ``started=False`` (prefetched, never run): back to ``queued`` and the claim is undone
    (``deliveries - 1``, no attempt recorded). ``started=True`` (interrupted: child died,
    shutdown timeout): the attempt is recorded with ``error``; back to ``queued``, or final
    ``dead`` with ``error.reason`` when ``deliveries >= max_deliveries``.
    """

    lease: Lease
    started: bool = False
    error: ErrorInfo | None = None


Outcome = Complete | Reschedule | Bury | Release


# --- what comes out -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivery:
    """One claimed message: the lease, the stored body and the counters the backend keeps."""

    lease: Lease
    task: str
    queue: str
    body: bytes
    priority: int
    deliveries: int  # including this one
    retries: int  # retries done before this delivery
    max_deliveries: int
    job_id: str | None
    expires_at: float


@dataclass(frozen=True, slots=True)
class Attempt:
    """One delivery of a message: who ran it, when, and how it ended (None while running)."""

    delivery: int
    worker_id: str
    started_at: float
    ended_at: float | None = None
    outcome: str | None = None  # succeeded | retry | dead | released | <a REASON>
    error: ErrorInfo | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """A running task's own report of how far it got."""

    done: float
    total: float | None = None
    note: str | None = None
    updated_at: float = 0.0


@dataclass(frozen=True, slots=True)
class MessageInfo:
    """Everything stored about one message, for inspection, results and the dead-letter store."""

    id: str
    task: str
    queue: str
    state: State
    priority: int
    eta: float | None
    retries: int
    deliveries: int
    max_deliveries: int
    job_id: str | None
    idempotency_key: str | None
    created_at: float
    updated_at: float
    body: bytes
    result: str | None = None  # JSON text; None before success or after the TTL
    result_expires_at: float | None = None
    error: ErrorInfo | None = None  # the latest error; the dead reason when dead
    lease_expires_at: float | None = None
    progress: Progress | None = None
    attempts: tuple[Attempt, ...] = ()

    @property
    def result_expired(self) -> bool:
        """True when the task succeeded but its result is gone past its TTL."""
        return self.state == State.SUCCEEDED and self.result is None and (
            self.result_expires_at is not None
        )


@dataclass(frozen=True, slots=True)
class Counts:
    """Accepted messages and where each of them is now; ``unaccounted`` must be 0."""

    accepted: int = 0
    queued: int = 0
    scheduled: int = 0
    running: int = 0
    succeeded: int = 0
    dead: int = 0
    cancelled: int = 0

    @property
    def unaccounted(self) -> int:
        """Accepted minus every state: anything but 0 means a message vanished (or doubled)."""
        return self.accepted - (
            self.queued + self.scheduled + self.running + self.succeeded + self.dead
            + self.cancelled
        )


@dataclass(frozen=True, slots=True)
class QueueStats:
    queue: str
    counts: Counts


@dataclass(frozen=True, slots=True)
class JobInfo:
    id: str
    name: str
    created_at: float
    counts: Counts  # counts.accepted is the job's total
    state: JobState
    progress: tuple[tuple[str, Progress], ...] = ()  # (message id, progress) of running members

    @property
    def total(self) -> int:
        return self.counts.accepted


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A live worker as it registered itself: what it consumes and how to reach it."""

    id: str
    hostname: str
    pid: int
    queues: tuple[str, ...]
    concurrency: int = 1
    pool: str = "process"
    started_at: float = 0.0
    last_seen: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)


# --- the contract ---------------------------------------------------------------------

CAPABILITIES = (
    "transactional_enqueue",  # enqueue through the caller's own database connection
    "blocking_wait",  # wait() is woken by the server, not by polling
    "multi_host",  # workers on several machines may share it
)


@runtime_checkable
class Backend(Protocol):
    """What every backend does. All operations are atomic and thread-safe."""

    url: str  # with any password redacted
    clock: Clock
    capabilities: frozenset[str]

    def enqueue(self, messages: Sequence[NewMessage], job: NewJob | None = None) -> list[str]:
        """Store a batch in one step; return each message's id, in order.

        A message whose id is already stored, or whose idempotency key belongs to a stored
        message, is not stored again: its slot in the result is the existing message's id.
        Only newly stored messages count as accepted (for the queue, and for the job named
        by their ``job_id``; ``job`` gives that job its name when it does not exist yet).
        A message whose eta is in the future starts ``scheduled``, otherwise ``queued``.
        """
        ...

    def claim(
        self, queues: Sequence[str], limit: int, lease_seconds: float, worker_id: str
    ) -> list[Delivery]:
        """Lease up to ``limit`` ready messages from ``queues``.

        Ready means ``queued``, or ``scheduled`` with eta passed. Highest priority first,
        then oldest id first, across all the given queues. Each gets a fresh token, an
        expiry of now + ``lease_seconds``, ``deliveries + 1`` and a new attempt record.
        """
        ...

    def extend(self, leases: Sequence[Lease], lease_seconds: float) -> list[Lease]:
        """Push held leases to now + ``lease_seconds`` in one step; return those not held."""
        ...

    def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        """Apply each outcome atomically (one round trip for the batch); True where applied.

        Follows the fencing rule in the module docstring. Job and queue counters change in
        the same atomic step as each message's final transition.
        """
        ...

    def complete(
        self, lease: Lease, result: str | None = None, result_ttl: float | None = 86400.0
    ) -> bool:
        """``settle([Complete(...)])`` for one delivery (every backend gets it from BackendBase)."""
        ...

    def retry(self, lease: Lease, at: float, error: ErrorInfo) -> bool:
        """``settle([Reschedule(...)])`` for one delivery."""
        ...

    def fail(self, lease: Lease, error: ErrorInfo) -> bool:
        """``settle([Bury(...)])`` for one delivery."""
        ...

    def release(self, lease: Lease, started: bool = False, error: ErrorInfo | None = None) -> bool:
        """``settle([Release(...)])`` for one delivery."""
        ...

    def progress(self, lease: Lease, done: float, total: float | None, note: str | None) -> bool:
        """Record a running task's progress; False when the lease is no longer held."""
        ...

    def recover_expired(self, limit: int = 1000) -> list[tuple[str, State]]:
        """Expired leases back to ``queued``, or ``dead`` (worker-lost) past max_deliveries.

        Returns (id, new state) for each recovered message. Idempotent and safe to run from
        every worker at once. Also removes results past their TTL.
        """
        ...

    def cancel(self, ids: Sequence[str]) -> list[str]:
        """Cancel queued or scheduled messages; return the ids that were cancelled."""
        ...

    def wait(self, queues: Sequence[str], timeout: float) -> bool:
        """Block up to ``timeout`` seconds until work may be ready; True if woken early."""
        ...

    def exchange(
        self, outcomes: Sequence[Outcome], queues: Sequence[str], limit: int,
        lease_seconds: float, worker_id: str, wait: float = 0.0,
    ) -> tuple[list[bool], list[Delivery]]:
        """A worker's turn: ``settle(outcomes)``, then ``claim()``; when that finds nothing
        and ``wait`` > 0, ``wait()`` up to that long and claim again.

        Returns what ``settle`` and the last ``claim`` returned. A backend that can do the
        whole turn in one round trip does (the claim then runs the moment the wait ends);
        the lease it grants is never shorter than ``lease_seconds``.
        """
        ...

    # -- inspection -------------------------------------------------------------------

    def message(self, message_id: str) -> MessageInfo | None:
        """One message with its attempt history, or None if unknown."""
        ...

    def messages(
        self, *, queue: str | None = None, state: State | None = None, limit: int = 100
    ) -> list[MessageInfo]:
        """Messages filtered by queue and state, oldest first (attempts may be omitted)."""
        ...

    def requeue_dead(self, ids: Sequence[str] | None = None, queue: str | None = None) -> int:
        """Dead messages (the given ids, or all, or all of one queue) back to ``queued``.

        Each gets ``retries = 0`` and ``deliveries = 0``: a full budget again.
        """
        ...

    def purge_dead(self, ids: Sequence[str] | None = None, queue: str | None = None) -> int:
        """Delete dead messages from the store; counters keep them as dead."""
        ...

    def queue_stats(self) -> list[QueueStats]:
        """Every queue that ever accepted a message, with its counts."""
        ...

    def job(self, job_id: str) -> JobInfo | None: ...

    def jobs(self, limit: int = 50) -> list[JobInfo]:
        """The newest jobs first."""
        ...

    # -- worker registry ---------------------------------------------------------------

    def register_worker(self, info: WorkerInfo, ttl: float) -> None:
        """Create or refresh a worker's entry; it counts as live for ``ttl`` seconds."""
        ...

    def unregister_worker(self, worker_id: str) -> None: ...

    def workers(self) -> list[WorkerInfo]:
        """Live workers only, with ``last_seen`` as of their latest registration."""
        ...

    def close(self) -> None:
        """Release connections; the backend may not be used afterwards."""
        ...


class BackendBase:
    """Single-outcome conveniences over ``settle``, shared by every backend."""

    _last_claim_found = True  # did the last exchange() claim anything (see exchange)

    def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:  # pragma: no cover
        raise NotImplementedError

    def complete(self, lease: Lease, result: str | None = None, result_ttl: float | None = 86400.0) -> bool:
        return self.settle([Complete(lease, result, result_ttl)])[0]

    def retry(self, lease: Lease, at: float, error: ErrorInfo) -> bool:
        return self.settle([Reschedule(lease, at, error)])[0]

    def fail(self, lease: Lease, error: ErrorInfo) -> bool:
        return self.settle([Bury(lease, error)])[0]

    def release(self, lease: Lease, started: bool = False, error: ErrorInfo | None = None) -> bool:
        return self.settle([Release(lease, started, error)])[0]

    def exchange(
        self, outcomes: Sequence[Outcome], queues: Sequence[str], limit: int,
        lease_seconds: float, worker_id: str, wait: float = 0.0,
    ) -> tuple[list[bool], list[Delivery]]:
        """Step by step; a backend that can do it in one round trip overrides this.

        The first claim is skipped when the last turn's claim found nothing: ``wait`` wakes
        for what arrived since, so an idle worker asks once per turn, not twice.
        """
        applied = self.settle(outcomes) if outcomes else []
        claim = self.claim  # type: ignore[attr-defined]
        got: list[Delivery] = []
        if wait <= 0 or self._last_claim_found:
            got = claim(queues, limit, lease_seconds, worker_id)
        if not got and wait > 0:
            self.wait(queues, wait)  # type: ignore[attr-defined]
            got = claim(queues, limit, lease_seconds, worker_id)
        self._last_claim_found = bool(got)
        return applied, got

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()  # type: ignore[attr-defined]
