"""The supervisor: claims in batches, hands jobs to a pool, settles outcomes in batches.

One consume loop in the main thread does every claim and settle (one round trip for many
outcomes); the pool only runs task code; a heartbeat thread of its own extends the leases.
Every delivery the supervisor holds is in ``held`` until an outcome for it was settled (or
refused), so nothing it claimed can be forgotten: it is run, given back, or its lease runs
out and another worker recovers it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from ..app import App
from ..backends.base import (
    Backend,
    Bury,
    Complete,
    Delivery,
    ErrorInfo,
    Lease,
    Outcome,
    Release,
    Reschedule,
    WorkerInfo,
)
from ..backends.resilient import Resilient
from ..errors import (
    ConfigurationError,
    SignatureError,
    TimeLimitExceeded,
    UndecodableMessage,
    UnknownTask,
)
from ..ids import new_token
from ..message import decode
from ..task import Task
from .async_pool import AsyncPool
from .execute import unknown_task
from .heartbeat import Heartbeat
from .jobs import Event, Finished, Job, Lost, ProgressReport, Returned, Started, Verdict
from .logging import EventLog
from .outcomes import decide, exc_name
from .process_pool import ProcessPool
from .thread_pool import ThreadPool

PROGRESS_INTERVAL = 1.0  # seconds between progress writes for one delivery
POLL_SECONDS = 0.2  # longest the loop blocks, so signals and deadlines are seen promptly
MAX_IDLE_DELAY = 0.5  # longest pause between claims that found nothing
SETTLE_BATCH = 500
SETTLE_LINGER = 0.005  # seconds an outcome may wait for others to share its round trip
SHORT_TASK_SECONDS = 0.01  # a task this quick on average may wait in a busy child's pipe
DURATION_WEIGHT = 0.2  # weight of the newest run in a task's moving average duration


class Pool(Protocol):
    kind: str
    replaced: int

    def start(self) -> None: ...
    def free_slots(self) -> int: ...
    def running(self) -> int: ...
    def pids(self) -> list[int]: ...
    def submit(self, job: Job) -> None: ...
    def wait(self, timeout: float) -> list[Event]: ...
    def kill(self, job_id: str) -> None: ...
    def close(self, timeout: float = 5.0) -> None: ...


POOLS: dict[str, Callable[[App, int], Pool]] = {
    "process": ProcessPool, "thread": ThreadPool, "async": AsyncPool,
}


@dataclass(eq=False)
class Held:
    """A delivery this worker holds, from claim until its outcome is settled."""

    delivery: Delivery
    job: Job | None
    task: Task[Any, Any] | None
    received: float
    dispatched: bool = False  # handed to the pool (running, or waiting in a child's pipe)
    started: float | None = None
    hard_at: float | None = None
    killed_for: str | None = None  # "time-limit" | "shutdown"
    lost: bool = False  # the heartbeat found the lease gone: no longer ours
    settling: bool = False
    progress: tuple[float, float | None, str | None] | None = None
    progress_sent: float = 0.0
    duration: float | None = None  # how long the task ran, once it ended

    @property
    def lease(self) -> Lease:
        return self.delivery.lease

    def fields(self) -> dict[str, Any]:
        d = self.delivery
        return {"task": d.task, "id": d.lease.message_id, "job": d.job_id, "queue": d.queue,
                "delivery": d.deliveries}


class Supervisor:
    """``stalwart worker``'s engine; ``run()`` until a signal or ``request_stop()``."""

    def __init__(
        self,
        app: App,
        queues: list[str],
        *,
        concurrency: int | None = None,
        pool: str = "process",
        lease_seconds: float | None = None,
        heartbeat_seconds: float | None = None,
        prefetch: int | None = None,
        shutdown_timeout: float = 30.0,
        recover_interval: float | None = None,
        worker_id: str | None = None,
        health_port: int | None = None,
        backend_factory: Callable[[], Backend] | None = None,
        install_signals: bool = True,
        log: EventLog | None = None,
    ) -> None:
        if pool not in POOLS:
            raise ConfigurationError(f"unknown pool {pool!r}; use one of {sorted(POOLS)}")
        if not queues:
            raise ConfigurationError("a worker needs at least one queue (-Q name,other)")
        self.app = app
        self.queues = list(dict.fromkeys(queues))
        self.concurrency = max(1, concurrency or os.cpu_count() or 1)
        self.pool_kind = pool
        self.lease_seconds = float(lease_seconds or app.lease_seconds)
        self.log = log or EventLog()
        heartbeat = float(heartbeat_seconds or app.heartbeat_seconds)
        if heartbeat > self.lease_seconds / 3:
            self.log.event(logging.WARNING, "heartbeat shortened", was=heartbeat,
                           now=round(self.lease_seconds / 3, 3),
                           detail="a lease must survive two missed heartbeats")
            heartbeat = self.lease_seconds / 3
        self.heartbeat_seconds = heartbeat
        # Celery's default multiplier: enough in hand that claims and settles come in batches.
        self.prefetch = 4 * self.concurrency if prefetch is None else max(0, prefetch)
        self.shutdown_timeout = shutdown_timeout
        self.recover_interval = recover_interval or min(5.0, self.lease_seconds / 10)
        self.stall_seconds = 3 * self.heartbeat_seconds
        self.hostname = socket.gethostname()
        self.worker_id = worker_id or f"{self.hostname}:{os.getpid()}:{new_token()[:6]}"
        self.health_port = health_port
        self.backend_factory = backend_factory or app.open_backend
        self.install_signals = install_signals

        self.pool: Pool = POOLS[pool](app, self.concurrency)
        self.held: dict[str, Held] = {}
        self.pending: deque[Held] = deque()
        self.outbox: list[tuple[Outcome, Held]] = []
        self.outbox_since = 0.0
        self._lock = threading.Lock()
        self._lost: list[Lease] = []
        self.backend: Any = None
        self.heartbeat: Heartbeat | None = None
        self.started_at = time.time()
        self.beat = time.monotonic()
        self.last_round_trip = time.monotonic()
        self.stalled = False
        self.reopen = False
        self.stop_requested = False
        self.force_requested = False
        self.stopping = False
        self.forced = False
        self.stop_deadline = 0.0
        self.next_claim_at = 0.0
        self.idle_delay = 0.0
        self.claim_batch = max(1, (self.concurrency + self.prefetch) // 2)
        self.settled = 0
        self.loop_failures = 0
        self.durations: dict[str, float] = {}  # task name -> moving average run time

    # -- control ------------------------------------------------------------------------

    def request_stop(self, force: bool = False) -> None:
        """Warm stop (finish running tasks), or with ``force`` (or a second call) a cold one."""
        if force or self.stop_requested:
            self.force_requested = True
        self.stop_requested = True

    def _on_signal(self, signum: int, frame: object) -> None:
        self.request_stop()

    def _open(self, deadline: float) -> Backend:
        return Resilient(self.backend_factory(), deadline)  # type: ignore[return-value]

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> int:
        """Work until stopped; returns the process exit code."""
        self.pool.start()  # fork the children before any thread of ours exists
        self.backend = self._open(self.app.broker_deadline)
        self.heartbeat = Heartbeat(self, self._open(self.heartbeat_seconds), self.log)
        self.heartbeat.start()
        server = None
        if self.health_port is not None:
            from .health import serve_health

            server = serve_health(self.health_port, self.health_report)
            self.health_port = server.server_address[1]  # the real one when asked for port 0
        if self.install_signals:
            signal.signal(signal.SIGTERM, self._on_signal)
            signal.signal(signal.SIGINT, self._on_signal)
        self.log.event(logging.INFO, "worker started", worker=self.worker_id,
                       queues=",".join(self.queues), pool=self.pool_kind,
                       concurrency=self.concurrency, lease=self.lease_seconds,
                       heartbeat=self.heartbeat_seconds, backend=self.backend.url,
                       health_port=self.health_port)
        failures = 0
        try:
            while True:
                self.beat = time.monotonic()
                try:
                    if self._step():
                        break
                    failures = self.loop_failures = 0
                except Exception as exc:
                    failures = self.loop_failures = failures + 1
                    self.log.logger.error("consume loop error (%s: %s); retrying", type(exc).__name__,
                                          exc, exc_info=failures == 1)
                    if self.forced and failures >= 3:
                        # Told twice to stop and the backend does not answer: leave. What
                        # is still held comes back when its lease expires; nothing is lost.
                        self.log.event(logging.ERROR, "exiting unsettled", worker=self.worker_id,
                                       held=len(self.held),
                                       detail="their leases expire and other workers recover them")
                        break
                    if failures % 3 == 0:  # a connection in a bad state: start afresh
                        self.reopen = True
                    time.sleep(min(2.0, 0.05 * 2 ** min(failures, 6)))
        finally:
            self._finish(server)
        return 0

    def _step(self) -> bool:
        """One turn of the loop; True when a stop has finished."""
        if self.reopen:
            self._reopen()
        self._apply_lost()
        if self.stop_requested and not self.stopping:
            self._begin_stop()
        if self.force_requested and not self.forced:
            self._kill_running("second signal: stopping now")
        now = time.monotonic()
        if self.stopping and not self.forced and now >= self.stop_deadline and self._running():
            self._kill_running(f"running tasks past the {self.shutdown_timeout:g}s shutdown timeout")
        self._enforce_time_limits(now)
        for event in self._wait():
            try:
                self._on_event(event)
            except Exception as exc:  # never forget a delivery: give it back instead
                self._give_back(event.job_id, exc)
        self._dispatch()  # free slots get their next job before any round trip
        self._flush()
        if not self.stopping and not self._idle():  # an idle worker claims in its wait
            self._maybe_claim(time.monotonic())
            self._dispatch()
        self._flush_progress()
        if self.stalled and not self.reopen:
            self.stalled = False
            self.log.event(logging.WARNING, "consume loop resumed", worker=self.worker_id)
        return self.stopping and not self.held and not self.outbox and self.pool.running() == 0

    def _running(self) -> list[Held]:
        return [e for e in self.held.values() if e.started is not None and not e.settling]

    def _round_trip(self) -> None:
        self.last_round_trip = time.monotonic()

    # -- claiming and dispatching -------------------------------------------------------------

    def _maybe_claim(self, now: float) -> None:
        capacity = self.concurrency + self.prefetch
        in_hand = self.pool.running() + len(self.pending)
        want = capacity - in_hand
        if want <= 0 or now < self.next_claim_at:
            return
        if in_hand > 0 and want < self.claim_batch:
            return
        batch = self.outbox[:SETTLE_BATCH]  # what is done rides along with the claim
        applied, deliveries = self.backend.exchange(
            [o for o, _ in batch], self.queues, want, self.lease_seconds, self.worker_id)
        self._round_trip()
        self._settled(batch, applied)
        self._claimed(deliveries, now)

    def _claimed(self, deliveries: list[Delivery], now: float) -> None:
        """Take what a claim returned; back off while claims keep coming back empty."""
        if deliveries:
            self.idle_delay, self.next_claim_at = 0.0, 0.0
        else:
            self.idle_delay = min(MAX_IDLE_DELAY, max(0.01, self.idle_delay * 2))
            self.next_claim_at = now + self.idle_delay
        for delivery in deliveries:
            self._receive(delivery)

    def _receive(self, d: Delivery) -> None:
        entry = Held(d, None, None, time.monotonic())
        with self._lock:
            self.held[d.lease.message_id] = entry
        try:
            reason, error = self._prepare(entry)
        except Exception as exc:  # a body that decodes to nonsense must not be held forever
            reason, error = "undecodable", exc
        if error is not None:
            self._queue(Bury(d.lease, ErrorInfo(reason, exc_name(error), str(error))), entry)
            self._note(logging.WARNING, "refused", entry, reason=reason)
            return
        self.pending.append(entry)
        self._note(logging.INFO, "received", entry)

    def _prepare(self, entry: Held) -> tuple[str, Exception | None]:
        """Decode and resolve the task in the supervisor: what cannot run is never sent on."""
        d = entry.delivery
        try:
            msg = decode(d.body, signer=self.app.signer)
        except SignatureError as exc:
            return "unsigned", exc
        except UndecodableMessage as exc:
            return "undecodable", exc
        # The stored record is authoritative: a backend may store an envelope under the id
        # its idempotency key reserved, so the id and job come from the delivery.
        msg.id, msg.job_id = d.lease.message_id, d.job_id
        entry.job = job = Job.from_message(msg, d.retries, d.deliveries, None, None)
        task = self.app.tasks.get(msg.task)
        if task is None:
            return "unknown-task", UnknownTask(unknown_task(job).message)
        entry.task = task
        job.time_limit = task.options.time_limit if msg.time_limit is None else msg.time_limit
        job.soft_time_limit = task.options.soft_time_limit if msg.soft_time_limit is None \
            else msg.soft_time_limit
        return "", None

    def _dispatch(self) -> None:
        """Idle runners first; then short jobs queue behind short ones in busy children."""
        queue_behind = getattr(self.pool, "queue_behind", None)
        while self.pending and not self.stopping:
            entry = self.pending[0]
            if entry.lost or entry.job is None:
                self.pending.popleft()
                continue
            if self.pool.free_slots() > 0:
                self.pool.submit(entry.job)
                self._started(entry)
            elif queue_behind is not None and self._short(entry.job.task) \
                    and queue_behind(entry.job, self._short):
                entry.dispatched = True
            else:
                break
            self.pending.popleft()
        flush = getattr(self.pool, "flush", None)
        if flush is not None:
            flush()  # the jobs for one child leave together

    def _short(self, task: str) -> bool:
        """Whether ``task`` has run, on average, quickly enough to wait behind another."""
        seconds = self.durations.get(task)
        return seconds is not None and seconds < SHORT_TASK_SECONDS

    def _started(self, entry: Held) -> None:
        entry.dispatched = True
        entry.started = time.monotonic()
        if entry.job is not None and entry.job.time_limit:
            entry.hard_at = entry.started + entry.job.time_limit
        self._note(logging.DEBUG, "started", entry)

    def _idle(self) -> bool:
        return self.pool.running() == 0 and not self.pending and not self.stopping

    def _wait(self) -> list[Event]:
        now = time.monotonic()
        if self._idle():
            return self._idle_turn(now)
        timeout = POLL_SECONDS
        if self.outbox:
            timeout = max(0.0, self.outbox_since + SETTLE_LINGER - now)
        for entry in self.held.values():
            if entry.hard_at is not None and entry.killed_for is None:
                timeout = min(timeout, max(0.0, entry.hard_at - now))
        if self.next_claim_at > now and self.pool.free_slots() > 0 and not self.stopping:
            timeout = min(timeout, self.next_claim_at - now)
        return self.pool.wait(max(0.0, timeout))

    def _idle_turn(self, now: float) -> list[Event]:
        """Nothing runs: settle what is done, wait for work and claim it, in one call.

        On Redis that is one round trip, and the claim runs the moment an enqueue wakes it
        (work already waiting ends the wait at once: it claims first, or finds a wake token).
        """
        # Found nothing lately: back off (up to MAX_IDLE_DELAY), else a poll's length.
        wait = self.next_claim_at - now if self.next_claim_at > now else POLL_SECONDS
        batch = self.outbox[:SETTLE_BATCH]
        applied, deliveries = self.backend.exchange(
            [o for o, _ in batch], self.queues, self.concurrency + self.prefetch,
            self.lease_seconds, self.worker_id, wait)
        self._round_trip()
        self._settled(batch, applied)
        self._claimed(deliveries, time.monotonic())
        return []

    # -- outcomes -----------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        entry = self.held.get(event.job_id)
        if entry is None or entry.settling:
            return  # a late word about a delivery already settled or given up
        if isinstance(event, Started):
            if entry.started is None:
                self._started(entry)
            return
        if isinstance(event, Returned):
            self._returned(entry)
            return
        if entry.started is None:
            return
        if isinstance(event, ProgressReport):
            entry.progress = (event.done, event.total, event.note)
            return
        if isinstance(event, Finished):
            task, took = entry.delivery.task, event.verdict.duration
            mean = self.durations.get(task)
            self.durations[task] = took if mean is None else \
                mean + DURATION_WEIGHT * (took - mean)
            outcome = self._outcome(entry, event.verdict)
        else:
            outcome = self._lost_outcome(entry, event)
        if entry.lost:
            self._note(logging.WARNING, "outcome dropped", entry,
                       detail="its lease was lost while it ran; another worker owns it now")
            with self._lock:
                self.held.pop(entry.lease.message_id, None)
            return
        self._queue(outcome, entry)

    def _returned(self, entry: Held) -> None:
        """A job that never began in its child (the child died): run it again, uncounted."""
        if entry.started is not None:
            return
        entry.dispatched = False
        self._note(logging.INFO, "returned", entry,
                   detail="its child died before it began; it runs elsewhere, uncounted")
        if entry.lost:
            with self._lock:
                self.held.pop(entry.lease.message_id, None)
        elif self.stopping:
            self._queue(Release(entry.lease, False), entry)
        else:
            self.pending.appendleft(entry)

    def _give_back(self, job_id: str, exc: Exception) -> None:
        entry = self.held.get(job_id)
        self.log.logger.error("cannot handle the outcome of %s (%s: %s); giving it back",
                              job_id, type(exc).__name__, exc, exc_info=True)
        if entry is not None and not entry.settling:
            self._queue(Release(entry.lease, True, ErrorInfo(
                "worker-lost", exc_name(exc), f"the worker could not record the outcome: {exc}")),
                entry)

    def _lost_outcome(self, entry: Held, event: Lost) -> Outcome:
        job, task = entry.job, entry.task
        assert job is not None and task is not None
        if entry.killed_for == "time-limit":
            exc = TimeLimitExceeded(
                f"{job.task} ran past its hard time limit of {job.time_limit:g}s and was "
                f"stopped ({event.detail})")
            verdict = decide(exc, task.options.retry, job.retries, job.max_retries)
            verdict.duration = time.monotonic() - (entry.started or entry.received)
            return self._outcome(entry, verdict)
        if entry.killed_for == "shutdown":
            return Release(entry.lease, True, ErrorInfo(
                "shutdown", None, f"the worker stopped before the task finished ({event.detail})"))
        self._note(logging.ERROR, "child lost", entry, detail=event.detail)
        return Release(entry.lease, True, ErrorInfo("worker-lost", "stalwart.errors.WorkerLost",
                                                    event.detail))

    def _outcome(self, entry: Held, v: Verdict) -> Outcome:
        entry.duration = v.duration
        if v.kind == "complete":
            return Complete(entry.lease, v.result, v.result_ttl)
        error = ErrorInfo(v.reason or "exception", v.exc_type, v.message, v.traceback)
        if v.kind == "reschedule":
            return Reschedule(entry.lease, self.backend.clock() + v.delay, error)
        return Bury(entry.lease, error)

    def _queue(self, outcome: Outcome, entry: Held) -> None:
        entry.settling = True
        if not self.outbox:
            self.outbox_since = time.monotonic()
        self.outbox.append((outcome, entry))

    def _flush(self) -> None:
        """Settle what the outbox holds, once it is full, old enough, or nothing else is due."""
        if not self.outbox or self._idle():
            return  # an idle worker settles in its next turn, with its wait and claim
        due = time.monotonic() - self.outbox_since >= SETTLE_LINGER
        if not (due or self.stopping or len(self.outbox) >= SETTLE_BATCH):
            return
        batch = self.outbox[:SETTLE_BATCH]
        applied = self.backend.settle([o for o, _ in batch])
        self._round_trip()
        self._settled(batch, applied)

    def _settled(self, batch: list[tuple[Outcome, Held]], applied: list[bool]) -> None:
        """Forget what a settle call answered for (the first ``len(batch)`` of the outbox)."""
        if not batch:
            return
        del self.outbox[: len(batch)]
        self.outbox_since = time.monotonic()
        with self._lock:
            for _, entry in batch:
                if self.held.get(entry.lease.message_id) is entry:
                    del self.held[entry.lease.message_id]
        self.settled += len(batch)
        self.next_claim_at = 0.0
        for (outcome, entry), ok in zip(batch, applied, strict=True):
            self._log_outcome(outcome, entry, ok)

    def _note(self, level: int, action: str, entry: Held, **extra: Any) -> None:
        """A log line about one delivery; its fields are built only if the level is on."""
        if self.log.enabled(level):
            self.log.event(level, action, **entry.fields(), **extra)

    def _log_outcome(self, o: Outcome, entry: Held, ok: bool) -> None:
        extra: dict[str, Any] = {}
        if not ok:
            level, action = logging.WARNING, "outcome refused"
            extra = {"outcome": type(o).__name__,
                     "detail": "the lease was lost (expired and recovered); the result of this "
                               "attempt is discarded, another delivery runs it"}
        elif isinstance(o, Complete):
            level, action = logging.INFO, "succeeded"
        elif isinstance(o, Reschedule):
            level, action = logging.WARNING, "retry scheduled"
            extra = {"reason": o.error.reason, "at": round(o.at, 3), "error": o.error}
        elif isinstance(o, Bury):
            level, action = logging.ERROR, "dead"
            extra = {"reason": o.error.reason, "error": o.error}
        elif o.started:
            final = entry.delivery.deliveries >= entry.delivery.max_deliveries
            level, action = (logging.ERROR, "dead") if final else (logging.WARNING, "released")
            extra = {"reason": o.error.reason if o.error else "worker-lost", "error": o.error}
        else:
            level, action = logging.DEBUG, "released"
            extra = {"reason": "unstarted"}
        if not self.log.enabled(level):
            return
        if isinstance(extra.get("error"), ErrorInfo):
            extra["error"] = _error_text(extra["error"])
        self.log.event(level, action, **entry.fields(), duration=entry.duration, **extra)

    def _flush_progress(self) -> None:
        now = time.monotonic()
        for entry in list(self.held.values()):
            if entry.progress is None or entry.lost or entry.settling:
                continue
            if now - entry.progress_sent < PROGRESS_INTERVAL:
                continue
            done, total, note = entry.progress
            entry.progress, entry.progress_sent = None, now
            self.backend.progress(entry.lease, done, total, note)
            self._round_trip()

    # -- limits, leases, stopping -------------------------------------------------------------

    def _enforce_time_limits(self, now: float) -> None:
        for entry in self._running():
            if entry.hard_at is not None and entry.hard_at <= now and entry.killed_for is None:
                entry.killed_for = "time-limit"
                self._note(logging.WARNING, "time limit", entry,
                           limit=entry.job.time_limit if entry.job else None)
                self.pool.kill(entry.lease.message_id)

    def held_leases(self) -> list[Lease]:
        """Every lease still ours (for the heartbeat thread)."""
        with self._lock:
            return [e.lease for e in self.held.values() if not e.lost]

    def leases_lost(self, leases: list[Lease]) -> None:
        """The heartbeat found these no longer held (called from its thread)."""
        with self._lock:
            self._lost.extend(leases)

    def _apply_lost(self) -> None:
        with self._lock:
            lost, self._lost = self._lost, []
        for lease in lost:
            entry = self.held.get(lease.message_id)
            if entry is None or entry.lease != lease or entry.settling or entry.lost:
                continue
            entry.lost = True
            self._note(logging.WARNING, "lease lost", entry,
                       running=entry.started is not None)
            if not entry.dispatched:  # still ours to drop; a dispatched one runs anyway
                with self._lock:
                    self.held.pop(lease.message_id, None)
                try:
                    self.pending.remove(entry)
                except ValueError:
                    pass

    def _begin_stop(self) -> None:
        self.stopping = True
        self.stop_deadline = time.monotonic() + self.shutdown_timeout
        if hasattr(self.pool, "respawn"):
            self.pool.respawn = False
        self.log.event(logging.WARNING, "stopping", worker=self.worker_id,
                       running=len(self._running()), prefetched=len(self.pending),
                       timeout=self.shutdown_timeout)
        while self.pending:
            entry = self.pending.popleft()
            if not entry.lost:
                self._queue(Release(entry.lease, False), entry)

    def _kill_running(self, why: str) -> None:
        self.forced = True
        running = [e for e in self._running() if e.killed_for is None]
        if running:
            self.log.event(logging.WARNING, "killing tasks", worker=self.worker_id,
                           count=len(running), detail=why)
        for entry in running:
            entry.killed_for = "shutdown"
            self.pool.kill(entry.lease.message_id)

    def _finish(self, server: Any) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
            self.heartbeat.join(timeout=self.heartbeat_seconds + 5)
        self.pool.close()
        if server is not None:
            server.shutdown()
            server.server_close()
        try:
            if self.backend is not None:
                self.backend.unregister_worker(self.worker_id)
        except Exception as exc:
            self.log.event(logging.WARNING, "unregister failed", worker=self.worker_id,
                           error=f"{type(exc).__name__}: {exc}")
        for backend in (self.backend, self.heartbeat.backend if self.heartbeat else None):
            try:
                if backend is not None:
                    getattr(backend, "inner", backend).close()
            except Exception:
                pass
        self.log.event(logging.INFO, "worker stopped", worker=self.worker_id,
                       settled=self.settled, left=len(self.held))

    # -- watchdog and health -----------------------------------------------------------------

    def watch_loop(self) -> None:
        """From the heartbeat thread: a consume loop stuck past the bound gets a new backend."""
        age = time.monotonic() - self.beat
        if age <= self.stall_seconds or self.stalled:
            return
        self.stalled = True
        self.reopen = True
        self.log.event(logging.ERROR, "consume loop stalled", worker=self.worker_id,
                       seconds=round(age, 1),
                       detail="closing and reopening the backend; the loop restarts")
        try:
            self.backend.inner.close()  # unblocks a call hung on a dead connection
        except Exception:
            pass

    def _reopen(self) -> None:
        self.backend = self._open(self.app.broker_deadline)
        self.reopen = False  # only once a new one is open: a failed open is tried again
        self.log.event(logging.WARNING, "backend reopened", worker=self.worker_id,
                       backend=self.backend.url)

    def health(self) -> str:
        now = time.monotonic()
        if self.stalled or now - self.beat > self.stall_seconds:
            return "stalled"
        if self.loop_failures >= 3:
            return "backend-failing"
        if self.heartbeat is not None and now - self.heartbeat.last_ok > self.stall_seconds:
            return "heartbeat-failing"
        return "ok"

    def health_report(self) -> dict[str, Any]:
        now = time.monotonic()
        return {
            "worker": self.worker_id, "health": self.health(),
            "loop_age": round(now - self.beat, 3),
            "round_trip_age": round(now - self.last_round_trip, 3),
            "running": self.pool.running(), "prefetched": len(self.pending),
            "stopping": self.stopping,
        }

    def _connections(self) -> list[dict[str, Any]] | None:
        """This worker's sockets with their keepalive as read back (``stalwart doctor``)."""
        found: list[dict[str, Any]] | None = None
        backends = (self.backend, self.heartbeat.backend if self.heartbeat else None)
        for backend in backends:
            fn = getattr(backend, "connections", None) if backend is not None else None
            if not callable(fn):
                continue
            try:
                found = (found or []) + [asdict(c) for c in fn()]
            except Exception:  # a report about sockets must never stop a heartbeat
                continue
        return found

    def info(self) -> WorkerInfo:
        meta = self.health_report()
        meta.update(children=self.pool.pids(), lease_seconds=self.lease_seconds,
                    heartbeat_seconds=self.heartbeat_seconds, replaced=self.pool.replaced,
                    health_port=self.health_port)
        connections = self._connections()
        if connections is not None:
            meta["connections"] = connections
        return WorkerInfo(
            id=self.worker_id, hostname=self.hostname, pid=os.getpid(),
            queues=tuple(self.queues), concurrency=self.concurrency, pool=self.pool_kind,
            started_at=self.started_at, meta=meta,
        )


def _error_text(error: ErrorInfo) -> str | None:
    if error.exc_type is None and error.message is None:
        return None
    return f"{error.exc_type or ''}: {error.message or ''}".strip(": ")
