"""Transient is not terminal: every backend call retried on passing faults until a deadline.

A connection reset, a timeout, a failover's READONLY or SQLite's "database is locked" is
retried with exponential backoff and jitter; only after ``deadline`` seconds does the caller
see :class:`BrokerUnavailable`. Retrying is safe because every operation of the contract is
idempotent under a lost reply (enqueue by message id, settle by lease token; a repeated
claim only delays the messages the lost reply leased until their lease expires).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from ..errors import BrokerUnavailable, is_transient
from ..retry import backoff_delay
from . import redact
from .base import Backend

log = logging.getLogger("stalwart.backend")

# Operations that take a lock-free, short path and are retried; anything else passes through.
RETRIED = frozenset({
    "enqueue", "claim", "extend", "settle", "complete", "retry", "fail", "release", "progress",
    "recover_expired", "cancel", "wait", "exchange", "message", "messages", "requeue_dead",
    "purge_dead", "queue_stats", "job", "jobs", "register_worker", "unregister_worker", "workers",
})


class Resilient:
    """Wraps a backend so that transient faults cost time, never a task or a job."""

    def __init__(
        self,
        inner: Backend,
        deadline: float = 30.0,
        *,
        base_delay: float = 0.05,
        max_delay: float = 2.0,
        on_fault: Callable[[str, BaseException, int], None] | None = None,
    ) -> None:
        self.inner = inner
        self.deadline = deadline
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.on_fault = on_fault

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in RETRIED or not callable(attr):
            return attr
        wrapped = functools.partial(self.call, name, attr)
        functools.update_wrapper(wrapped, attr)
        setattr(self, name, wrapped)  # built once: later calls skip __getattr__ on the hot path
        return wrapped

    def call(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` until it succeeds, fails terminally, or the deadline passes."""
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                elapsed = time.monotonic() - started
                if elapsed >= self.deadline:
                    raise BrokerUnavailable(
                        f"{name} on {redact(self.inner.url)} kept failing for {elapsed:.1f}s "
                        f"(last error: {type(exc).__name__}: {exc}); the operation did not "
                        "take effect. Check that the server is up and reachable, or raise "
                        "broker_deadline to wait longer."
                    ) from exc
                if self.on_fault is not None:
                    self.on_fault(name, exc, attempt)
                else:
                    log.warning("transient fault in %s (attempt %d): %s: %s; retrying",
                                name, attempt + 1, type(exc).__name__, exc)
                pause = backoff_delay(attempt, self.base_delay, 2.0, self.max_delay)
                time.sleep(min(pause, max(0.0, self.deadline - elapsed)))
                attempt += 1
