"""Retry policy: which exceptions are retried, how often, and after what delay.

The same exponential backoff with jitter also paces the library's own retries of transient
backend faults (``backoff_delay``), so there is one formula to reason about.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any


def backoff_delay(
    attempt: int, base: float, factor: float, cap: float, jitter: bool = True
) -> float:
    """Delay before retry number ``attempt`` (0-based): ``base * factor**attempt``, capped.

    Jitter is "equal jitter": half the delay fixed, half random, so many clients that failed
    together spread out without any of them retrying at once.
    """
    delay = min(cap, base * factor ** max(attempt, 0))
    if jitter:
        delay = delay / 2 + random.uniform(0, delay / 2)
    return delay


@dataclass(frozen=True)
class Retry:
    """When and how a failed task is tried again.

    ``Retry(max_retries=3, backoff=1.0, factor=2.0, max_delay=600, jitter=True,
    on=(Exception,))``: up to three more attempts after 1, 2 and 4 seconds (jittered), for
    any exception. ``stalwart.Fail`` is never retried.
    """

    max_retries: int | None = 3  # None: retry without limit (max_deliveries still bounds crashes)
    backoff: float = 1.0
    factor: float = 2.0
    max_delay: float = 600.0
    jitter: bool = True
    on: tuple[type[BaseException], ...] = field(default=(Exception,))

    def retries_left(self, retries_done: int, max_retries: int | None = None) -> bool:
        limit = self.max_retries if max_retries is None else max_retries
        return limit is None or retries_done < limit

    def applies_to(self, exc: BaseException) -> bool:
        from .errors import Fail

        return not isinstance(exc, Fail) and isinstance(exc, self.on)

    def delay(self, retries_done: int) -> float:
        """Seconds to wait before the next attempt, given how many retries were done."""
        return backoff_delay(retries_done, self.backoff, self.factor, self.max_delay, self.jitter)


NEVER = Retry(max_retries=0, on=())


def from_celery_options(default: Retry, options: dict[str, Any]) -> Retry:
    """A policy from Celery's task options, with Celery's meaning, over ``default``.

    As in Celery: ``autoretry_for`` lists what is retried automatically; ``retry_backoff``
    True means 1 s doubling (a number is the first delay); without it the delay is the
    constant ``default_retry_delay`` (180 s); ``retry_backoff_max`` caps (600 s);
    ``retry_jitter`` defaults to True; ``max_retries`` defaults to 3.
    """
    celery_names = {"autoretry_for", "retry_backoff", "retry_backoff_max", "retry_jitter",
                    "max_retries", "default_retry_delay"}
    if not celery_names & options.keys():
        return default
    on = tuple(options.get("autoretry_for", default.on if "autoretry_for" not in options else ()))
    backoff_opt = options.get("retry_backoff", False)
    if backoff_opt:
        base = 1.0 if backoff_opt is True else float(backoff_opt)
        factor = 2.0
    elif "autoretry_for" in options or "default_retry_delay" in options:
        base, factor = float(options.get("default_retry_delay", 180)), 1.0
    else:
        base, factor = default.backoff, default.factor
    return Retry(
        max_retries=options.get("max_retries", default.max_retries),
        backoff=base,
        factor=factor,
        max_delay=float(options.get("retry_backoff_max", default.max_delay)),
        jitter=bool(options.get("retry_jitter", default.jitter)),
        on=on,
    )
