"""From how an attempt ended to what happens next: complete, reschedule or bury.

One function decides for every pool, in the process that saw the exception (so its class
and the task's retry policy are at hand): a child for its own attempts, the supervisor for
attempts it ended itself (hard time limit).
"""

from __future__ import annotations

import json
import traceback as tb
from typing import Any

from ..errors import ArgumentNotSerializable, Fail, RetryRequested, TimeLimitExceeded
from ..message import check_json
from ..retry import Retry
from .jobs import Verdict


def exc_name(exc: BaseException) -> str:
    """``module.Qualname`` of an exception's class (builtins by name only)."""
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def _format(exc: BaseException) -> str:
    return "".join(tb.format_exception(type(exc), exc, exc.__traceback__))


def succeeded(result: Any, result_ttl: float | None) -> Verdict:
    """Complete with the result as JSON text, or bury with a clear reason if JSON cannot carry it."""
    try:
        check_json(result, "the task's return value")
        text = None if result is None else json.dumps(result, separators=(",", ":"),
                                                      allow_nan=False)
    except (ArgumentNotSerializable, ValueError, TypeError) as exc:
        return Verdict(
            "bury", reason="exception", exc_type=exc_name(exc),
            message=f"the task ran, but its result cannot be stored: {str(exc).split(';')[0]}; "
                    "return plain data (ids, strings, numbers, lists and dicts of those)",
        )
    return Verdict("complete", result=text, result_ttl=result_ttl)


def decide(
    exc: BaseException, policy: Retry, retries_done: int, max_retries: int | None = None
) -> Verdict:
    """What follows an attempt that raised ``exc``.

    ``max_retries`` is the call's own limit (from the message), overriding the policy's.
    ``Fail`` buries at once; ``self.retry()`` reschedules unless past its limit; anything
    else is retried with the policy's backoff when the policy covers it.
    """
    if isinstance(exc, Fail):
        return _bury("fail", exc)
    if isinstance(exc, RetryRequested):
        limit = exc.max_retries if exc.max_retries is not None else max_retries
        cause = exc.exc if exc.exc is not None else exc
        where = cause if cause.__traceback__ is not None else exc  # exc= often never raised
        if policy.retries_left(retries_done, limit):
            delay = exc.countdown if exc.countdown is not None else policy.delay(retries_done)
            return _reschedule(cause, delay, _reason(cause), where)
        return _bury("retries-exhausted", cause, where)
    reason = _reason(exc)
    if policy.applies_to(exc):
        if policy.retries_left(retries_done, max_retries):
            return _reschedule(exc, policy.delay(retries_done), reason)
        return _bury("retries-exhausted", exc)
    return _bury(reason, exc)


def _reason(exc: BaseException) -> str:
    return "time-limit" if isinstance(exc, TimeLimitExceeded) else "exception"


def _traceback(exc: BaseException) -> str | None:
    return _format(exc) if exc.__traceback__ is not None else None


def _bury(reason: str, exc: BaseException, where: BaseException | None = None) -> Verdict:
    return Verdict("bury", reason=reason, exc_type=exc_name(exc), message=str(exc),
                   traceback=_traceback(where or exc))


def _reschedule(exc: BaseException, delay: float, reason: str,
                where: BaseException | None = None) -> Verdict:
    return Verdict("reschedule", delay=max(0.0, float(delay)), reason=reason,
                   exc_type=exc_name(exc), message=str(exc), traceback=_traceback(where or exc))
