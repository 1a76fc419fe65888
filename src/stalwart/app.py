"""App: the settings, the task registry, and the enqueue path every message takes."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, overload

from .backends import open_backend, redact
from .backends.base import Backend, NewJob
from .backends.resilient import Resilient
from .errors import ConfigurationError, UnknownTask
from .ids import new_id
from .message import DEFAULT_MAX_SIZE, Message, Signer, encode
from .net import ConnectionSettings
from .results import JobHandle, TaskHandle
from .retry import Retry, from_celery_options
from .task import Signature, Task, TaskOptions, _to_epoch

log = logging.getLogger("stalwart")

DEFAULT_BROKER = "sqlite:///stalwart.db"
F = TypeVar("F", bound=Callable[..., Any])

_CELERY_RETRY_OPTIONS = {"autoretry_for", "retry_backoff", "retry_backoff_max", "retry_jitter",
                         "max_retries", "default_retry_delay"}
_TASK_OPTIONS = {"name", "queue", "priority", "retry", "max_deliveries", "time_limit",
                 "soft_time_limit", "result_ttl", "bind", "acks_late",
                 "reject_on_worker_lost"} | _CELERY_RETRY_OPTIONS


class App:
    """A stalwart application: where messages go, and which tasks exist.

    ``broker`` defaults to ``$STALWART_BROKER``, else ``sqlite:///stalwart.db``. Transient
    backend faults are retried for ``broker_deadline`` seconds before any caller sees
    BrokerUnavailable.
    """

    def __init__(
        self,
        name: str,
        broker: str | None = None,
        *,
        retry: Retry | None = None,
        max_deliveries: int = 5,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        result_ttl: float | None = 86400.0,
        max_message_size: int = DEFAULT_MAX_SIZE,
        signing_keys: Sequence[str | bytes] | None = None,
        connection: ConnectionSettings | None = None,
        broker_deadline: float = 30.0,
        lease_seconds: float = 30.0,
        heartbeat_seconds: float = 10.0,
        default_queue: str = "default",
        backend_options: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.broker_url = broker or os.environ.get("STALWART_BROKER") or DEFAULT_BROKER
        self.retry_policy = retry or Retry()
        self.max_deliveries = max_deliveries
        self.time_limit = time_limit
        self.soft_time_limit = soft_time_limit
        self.result_ttl = result_ttl
        self.max_message_size = max_message_size
        self.signer = Signer(signing_keys) if signing_keys else None
        self.connection = connection or ConnectionSettings()
        self.broker_deadline = broker_deadline
        self.lease_seconds = lease_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.default_queue = default_queue
        self.backend_options = dict(backend_options or {})
        self.tasks: dict[str, Task[Any, Any]] = {}
        self._backend: Resilient | None = None
        self._backend_pid = 0
        self._lock = threading.Lock()
        self._consumers = _ConsumerWatch(self)

    def __repr__(self) -> str:
        return f"<App {self.name} broker={redact(self.broker_url)}>"

    # -- backend ------------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        """The backend, opened on first use (and again in a forked child), fault-tolerant."""
        if self._backend is None or self._backend_pid != os.getpid():
            with self._lock:
                if self._backend is None or self._backend_pid != os.getpid():
                    raw = open_backend(self.broker_url, connection=self.connection,
                                       **self.backend_options)
                    self._backend = Resilient(raw, self.broker_deadline)
                    self._backend_pid = os.getpid()
        return self._backend  # type: ignore[return-value]

    def open_backend(self, **overrides: Any) -> Backend:
        """A new raw backend connection set of this App's (for workers and tools)."""
        options = {"connection": self.connection, **self.backend_options, **overrides}
        return open_backend(self.broker_url, **options)

    def close(self) -> None:
        if self._backend is not None and self._backend_pid == os.getpid():
            self._backend.inner.close()
        self._backend = None

    # -- tasks --------------------------------------------------------------------------

    @overload
    def task(self, fn: F) -> Task[Any, Any]: ...
    @overload
    def task(self, fn: None = None, **options: Any) -> Callable[[F], Task[Any, Any]]: ...

    def task(self, fn: Callable[..., Any] | None = None, **options: Any) -> Any:
        """Register a function as a task: ``@app.task`` or ``@app.task(queue=..., ...)``.

        Options: name, queue, priority, retry (a Retry), max_deliveries, time_limit,
        soft_time_limit, result_ttl, bind, and Celery's names with Celery's meaning:
        autoretry_for, retry_backoff, retry_backoff_max, retry_jitter, max_retries,
        default_retry_delay, acks_late, reject_on_worker_lost.
        """
        unknown = set(options) - _TASK_OPTIONS
        if unknown:
            raise ConfigurationError(
                f"unknown task option(s) {sorted(unknown)}; known: {sorted(_TASK_OPTIONS)}"
            )

        def register(func: Callable[..., Any]) -> Task[Any, Any]:
            name = options.get("name") or f"{func.__module__}.{func.__qualname__}"
            task: Task[Any, Any] = Task(self, func, name, self._task_options(options))
            existing = self.tasks.get(name)
            if existing is not None and existing.fn is not func:
                log.debug("task %s registered again; the newer definition wins", name)
            self.tasks[name] = task
            return task

        return register(fn) if fn is not None else register

    def _task_options(self, options: dict[str, Any]) -> TaskOptions:
        policy = options.get("retry") or from_celery_options(self.retry_policy, options)
        max_deliveries = options.get("max_deliveries", self.max_deliveries)
        # Celery's meaning: a task is redelivered after its worker died only with both
        # acks_late and reject_on_worker_lost. Otherwise it is delivered once and, if the
        # worker dies, it ends dead (worker-lost): never silently lost, never run twice.
        if "acks_late" in options or "reject_on_worker_lost" in options:
            if not (options.get("acks_late") and options.get("reject_on_worker_lost")):
                max_deliveries = 1
        return TaskOptions(
            queue=options.get("queue", self.default_queue),
            priority=_check_priority(options.get("priority", 0)),
            retry=policy,
            max_deliveries=max_deliveries,
            time_limit=options.get("time_limit", self.time_limit),
            soft_time_limit=options.get("soft_time_limit", self.soft_time_limit),
            result_ttl=options.get("result_ttl", self.result_ttl),
            bind=bool(options.get("bind", False)),
        )

    def get_task(self, name: str) -> Task[Any, Any]:
        task = self.tasks.get(name)
        if task is None:
            raise UnknownTask(
                f"no task named {name!r} in app {self.name!r}; import the module that defines "
                f"it where the App is created (registered: {', '.join(sorted(self.tasks)) or 'none'})"
            )
        return task

    # -- sending ------------------------------------------------------------------------

    def signature(self, task_name: str, *args: Any, **kwargs: Any) -> Signature:
        """A signature by task name, for a task defined in another code base."""
        return Signature(task_name, list(args), dict(kwargs), app=self)

    def send(
        self,
        signatures: Sequence[Signature],
        *,
        job: NewJob | None = None,
        connection: Any = None,
    ) -> list[TaskHandle]:
        """Encode and store a batch of signatures in one backend step."""
        now = time.time()
        built = [self._build(sig, now, job.id if job else None) for sig in signatures]
        records = [m.to_new_message(encode(m, max_size=self.max_message_size, signer=self.signer))
                   for m in built]
        if connection is not None:
            backend = self.backend
            enqueue_in = getattr(getattr(backend, "inner", backend), "enqueue_in", None)
            if enqueue_in is None:
                raise ConfigurationError(
                    f"connection= needs a backend that can enqueue inside your transaction "
                    f"(PostgreSQL); {redact(self.broker_url)} cannot"
                )
            ids = enqueue_in(connection, records, job)
        else:
            ids = self.backend.enqueue(records, job)
        self._consumers.check({m.queue for m in built})
        return [TaskHandle(self, i) for i in ids]

    def job(self, name: str, signatures: Sequence[Signature]) -> JobHandle:
        """Enqueue a named batch as one job; its counters show the members' progress."""
        job = NewJob(new_id(), name, time.time())
        handles = self.send(signatures, job=job)
        return JobHandle(self, job.id, name, [h.id for h in handles])

    def handle(self, message_id: str) -> TaskHandle:
        """A handle on a message enqueued earlier, by its id."""
        return TaskHandle(self, message_id)

    def _build(self, sig: Signature, now: float, job_id: str | None) -> Message:
        task = self.tasks.get(sig.task)
        opts = task.options if task is not None else self._task_options({})
        o = sig.options
        eta = _to_epoch(o.get("eta"))
        if o.get("countdown") is not None:
            eta = now + float(o["countdown"])
        return Message(
            id=new_id(),
            task=sig.task,
            args=list(sig.args),
            kwargs=dict(sig.kwargs),
            queue=o.get("queue") or opts.queue,
            priority=_check_priority(o.get("priority", opts.priority)),
            eta=eta,
            max_retries=o.get("max_retries"),
            max_deliveries=opts.max_deliveries,
            time_limit=o.get("time_limit", opts.time_limit),
            soft_time_limit=o.get("soft_time_limit", opts.soft_time_limit),
            job_id=job_id,
            idempotency_key=o.get("idempotency_key"),
            created_at=now,
            headers=dict(o.get("headers") or {}),
        )


def _check_priority(priority: Any) -> int:
    if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 9:
        raise ConfigurationError(f"priority must be an integer from 0 to 9, got {priority!r}")
    return priority


class _ConsumerWatch:
    """Warns once per queue when a message goes to a queue no live worker consumes."""

    REFRESH_SECONDS = 30.0

    def __init__(self, app: App) -> None:
        self.app = app
        self.warned: set[str] = set()
        self.consumed: set[str] = set()
        self.checked_at = -1e9

    def check(self, queues: set[str]) -> None:
        pending = queues - self.warned
        if not pending:
            return
        try:
            if time.monotonic() - self.checked_at > self.REFRESH_SECONDS:
                self.consumed = {q for w in self.app.backend.workers() for q in w.queues}
                self.checked_at = time.monotonic()
        except Exception:  # a warning must never fail an enqueue that already succeeded
            return
        for queue in sorted(pending - self.consumed):
            self.warned.add(queue)
            log.warning(
                "queue %r has no live worker consuming it; its messages will wait until one "
                "starts (stalwart worker APP -Q %s)", queue, queue,
            )
