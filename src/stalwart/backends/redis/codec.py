"""Text forms the Redis backend stores, and the records they decode to.

Times travel as ``repr(float)`` text and are stored as sent, so a time read back equals the
time the client's clock gave, to the last digit.
"""

from __future__ import annotations

import json
from typing import Any

from ...states import State
from ..base import Attempt, ErrorInfo, MessageInfo, Progress


def t(seconds: float) -> str:
    """A time or duration as exact text."""
    return repr(float(seconds))


def opt(value: str | None) -> str:
    """An optional string for a script: '' for None, '=' + value otherwise."""
    return "" if value is None else "=" + value


def error_json(error: ErrorInfo) -> str:
    return json.dumps({
        "reason": error.reason, "exc_type": error.exc_type, "message": error.message,
        "traceback": error.traceback,
    })


def error_from(text: bytes | str | None) -> ErrorInfo | None:
    if text is None:
        return None
    d = json.loads(text)
    return ErrorInfo(d["reason"], d.get("exc_type"), d.get("message"), d.get("traceback"))


def progress_json(done: float, total: float | None, note: str | None, now: float) -> str:
    return json.dumps({"done": done, "total": total, "note": note, "updated_at": now})


def progress_from(text: bytes | None) -> Progress | None:
    if text is None:
        return None
    d = json.loads(text)
    return Progress(d["done"], d.get("total"), d.get("note"), d.get("updated_at", 0.0))


def attempt_from(text: bytes) -> Attempt:
    d = json.loads(text)
    err = d.get("err")
    return Attempt(
        delivery=int(d["n"]), worker_id=str(d["w"]), started_at=float(d["s"]),
        ended_at=float(d["e"]) if "e" in d else None, outcome=d.get("o"),
        error=error_from(err) if err else None,
    )


def message_from(h: dict[bytes, bytes], attempts: list[bytes]) -> MessageInfo:
    """A message hash (and its attempts list) as the contract's record."""

    def s(name: bytes) -> Any:
        v = h.get(name)
        return None if v is None else v.decode("utf-8")

    def f(name: bytes) -> float | None:
        v = h.get(name)
        return None if v is None else float(v)

    state = State(s(b"state"))
    return MessageInfo(
        id=s(b"id"), task=s(b"task"), queue=s(b"queue"), state=state,
        priority=int(h[b"priority"]), eta=f(b"eta"), retries=int(h[b"retries"]),
        deliveries=int(h[b"deliveries"]), max_deliveries=int(h[b"max_deliveries"]),
        job_id=s(b"job"), idempotency_key=s(b"ikey"), created_at=float(h[b"created_at"]),
        updated_at=float(h[b"updated_at"]), body=h.get(b"body", b""), result=s(b"result"),
        result_expires_at=f(b"rexp"), error=error_from(h.get(b"error")),
        lease_expires_at=f(b"expires") if state == State.RUNNING else None,
        progress=progress_from(h.get(b"progress")),
        attempts=tuple(attempt_from(a) for a in attempts),
    )
