"""Shared printing helpers for the operator commands: times, counts, and rich consoles."""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from typing import Any, TypeVar

import click
from rich.console import Console

from ..backends.base import Counts, ErrorInfo
from ..errors import StalwartError

F = TypeVar("F", bound=Callable[..., Any])

COUNT_FIELDS = ("accepted", "queued", "scheduled", "running", "succeeded", "dead", "cancelled")


def console(stderr: bool = False, **options: Any) -> Console:
    """A console that wraps wide tables sensibly even when output is piped."""
    return Console(stderr=stderr, soft_wrap=False, width=None if _is_tty(stderr) else 160,
                   **options)


def _is_tty(stderr: bool) -> bool:
    import sys

    stream = sys.stderr if stderr else sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


def counts_dict(counts: Counts) -> dict[str, int]:
    """The counters of a queue or job, with ``unaccounted`` (which must be 0)."""
    out = {name: int(getattr(counts, name)) for name in COUNT_FIELDS}
    out["unaccounted"] = counts.unaccounted
    return out


def when(epoch: float | None) -> str:
    """An epoch time as local ISO text to the second, or '-'."""
    if epoch is None:
        return "-"
    return dt.datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


def ago(epoch: float | None, now: float | None = None) -> str:
    """How long ago ``epoch`` was, in a short human form ('3s ago', '5m ago')."""
    if epoch is None:
        return "-"
    delta = (time.time() if now is None else now) - epoch
    if delta < 0:
        return f"in {_span(-delta)}"
    return f"{_span(delta)} ago"


def _span(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def error_dict(error: ErrorInfo | None) -> dict[str, Any] | None:
    return None if error is None else asdict(error)


def plain(value: Any) -> Any:
    """A record (dataclass, tuple, enum) as plain JSON-ready data."""
    if is_dataclass(value) and not isinstance(value, type):
        return {k: plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


def raw_backend(backend: Any) -> Any:
    """The backend under the fault-tolerant wrapper, for optional features like server_info."""
    return getattr(backend, "inner", backend)


def user_errors(fn: F) -> F:
    """Show a stalwart error (broker unreachable, bad setting) as one line, not a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except StalwartError as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from exc

    return wrapper  # type: ignore[return-value]
