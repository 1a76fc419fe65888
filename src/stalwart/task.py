"""Tasks: the ``@app.task`` decorator's product, signatures, and the bound-task context.

A task keeps its function's signature (``ParamSpec``), so ``resize.delay(42)`` is checked
by a type checker the same way ``resize(42)`` is.
"""

from __future__ import annotations

import contextvars
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from .errors import ConfigurationError, RetryRequested, StalwartError
from .retry import Retry

if TYPE_CHECKING:
    from .app import App
    from .results import TaskHandle

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True)
class TaskOptions:
    """What a task was declared with; a call's own options override these."""

    queue: str = "default"
    priority: int = 0
    retry: Retry = field(default_factory=Retry)
    max_deliveries: int = 5
    time_limit: float | None = None
    soft_time_limit: float | None = None
    result_ttl: float | None = 86400.0
    bind: bool = False


@dataclass
class Request:
    """``self.request`` inside a bound task: which delivery of which message is running."""

    id: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    retries: int
    deliveries: int
    job_id: str | None = None
    eta: float | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    time_limit: float | None = None
    soft_time_limit: float | None = None
    max_retries: int | None = None
    # Set by the worker: sends progress to the backend under this delivery's lease.
    report_progress: Callable[[float, float | None, str | None], None] | None = None


current_request: contextvars.ContextVar[Request | None] = contextvars.ContextVar(
    "stalwart_current_request", default=None
)


def _to_epoch(eta: dt.datetime | float | None) -> float | None:
    if eta is None or isinstance(eta, (int, float)):
        return eta
    if eta.tzinfo is None:
        raise ConfigurationError(
            "eta is a naive datetime; pass an aware one (datetime.now(timezone.utc) + ...) "
            "or epoch seconds, so that no host's local time zone changes when it runs"
        )
    return eta.timestamp()


class Task(Generic[P, R]):
    """A function registered under a name, run by workers when its messages are claimed."""

    def __init__(self, app: App, fn: Callable[..., R], name: str, options: TaskOptions) -> None:
        self.app = app
        self.fn = fn
        self.name = name
        self.options = options
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<task {self.name} queue={self.options.queue}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function here and now, as a plain call."""
        if self.options.bind:
            return self.fn(self, *args, **kwargs)
        return self.fn(*args, **kwargs)

    # -- sending ------------------------------------------------------------------------

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle:
        """Enqueue with the task's own options; returns at once with a handle."""
        return self.apply_async(args, kwargs)

    def apply_async(
        self,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        countdown: float | None = None,
        eta: dt.datetime | float | None = None,
        queue: str | None = None,
        priority: int | None = None,
        idempotency_key: str | None = None,
        time_limit: float | None = None,
        soft_time_limit: float | None = None,
        max_retries: int | None = None,
        headers: dict[str, Any] | None = None,
        connection: Any = None,
    ) -> TaskHandle:
        """Enqueue with per-call options.

        ``connection``: a database connection of the caller's (PostgreSQL backend) through
        which the message is written inside the caller's open transaction: it exists if
        and only if that transaction commits.
        """
        sig = self.s(*args, **(kwargs or {})).set(
            countdown=countdown, eta=eta, queue=queue, priority=priority,
            idempotency_key=idempotency_key, time_limit=time_limit,
            soft_time_limit=soft_time_limit, max_retries=max_retries, headers=headers,
        )
        return self.app.send([sig], connection=connection)[0]

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature: this task with these arguments, to send later or put in a job."""
        return Signature(self.name, list(args), dict(kwargs), app=self.app)

    # -- inside a running bound task -----------------------------------------------------

    @property
    def request(self) -> Request:
        """The delivery being run now; only inside a task run by a worker."""
        req = current_request.get()
        if req is None:
            raise StalwartError(f"{self.name}.request is only available while a worker runs it")
        return req

    def retry(
        self,
        countdown: float | None = None,
        exc: BaseException | None = None,
        max_retries: int | None = None,
    ) -> RetryRequested:
        """Schedule another attempt after ``countdown`` seconds; raises, never returns.

        Written ``raise self.retry(...)`` as in Celery. Past ``max_retries`` the task ends
        dead with ``exc`` (or the retry request) as its error.
        """
        raise RetryRequested(countdown=countdown, exc=exc, max_retries=max_retries)

    def progress(self, done: float, total: float | None = None, note: str | None = None) -> None:
        """Report how far the running task got; the job shows it while it runs."""
        req = self.request
        if req.report_progress is not None:
            req.report_progress(done, total, note)


@dataclass
class Signature:
    """A task name with arguments and call options: ``resize.s(42)``."""

    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)
    app: App | None = field(default=None, repr=False, compare=False)

    def set(self, **options: Any) -> Signature:
        """This signature with more call options (None values are ignored)."""
        merged = {**self.options, **{k: v for k, v in options.items() if v is not None}}
        if "eta" in merged:
            merged["eta"] = _to_epoch(merged["eta"])
        return Signature(self.task, self.args, self.kwargs, merged, self.app)

    def delay(self) -> TaskHandle:
        return self.apply_async()

    def apply_async(self, **options: Any) -> TaskHandle:
        if self.app is None:
            raise ConfigurationError("this signature has no App; build it with task.s(...)")
        return self.app.send([self.set(**options)])[0]
