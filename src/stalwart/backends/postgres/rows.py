"""Between the contract's records and the row and JSON shapes the schema stores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...states import State
from ..base import Attempt, Bury, Complete, ErrorInfo, MessageInfo, Outcome, Progress, Release


def error_json(error: ErrorInfo | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {"reason": error.reason, "exc_type": error.exc_type, "message": error.message,
            "traceback": error.traceback}


def error_info(data: dict[str, Any] | None) -> ErrorInfo | None:
    if data is None:
        return None
    return ErrorInfo(data["reason"], data.get("exc_type"), data.get("message"),
                     data.get("traceback"))


def progress_info(data: dict[str, Any] | None) -> Progress | None:
    if data is None:
        return None
    return Progress(data["done"], data.get("total"), data.get("note"), data.get("updated_at", 0.0))


def attempt_info(data: dict[str, Any]) -> Attempt:
    return Attempt(
        delivery=data["delivery"], worker_id=data["worker_id"], started_at=data["started_at"],
        ended_at=data.get("ended_at"), outcome=data.get("outcome"),
        error=error_info(data.get("error")),
    )


def message_info(row: Sequence[Any]) -> MessageInfo:
    """A MessageInfo from a row in the order of ``queries.MESSAGE_COLUMNS``."""
    (mid, task, queue, state, priority, eta, retries, deliveries, max_deliveries, job_id,
     key, created_at, updated_at, body, result, result_expires_at, error, lease_expires_at,
     progress, attempts) = row
    st = State(state)
    return MessageInfo(
        id=mid, task=task, queue=queue, state=st, priority=priority, eta=eta, retries=retries,
        deliveries=deliveries, max_deliveries=max_deliveries, job_id=job_id,
        idempotency_key=key, created_at=created_at, updated_at=updated_at, body=bytes(body),
        result=result, result_expires_at=result_expires_at, error=error_info(error),
        lease_expires_at=lease_expires_at if st == State.RUNNING else None,
        progress=progress_info(progress),
        attempts=tuple(attempt_info(a) for a in attempts),
    )


def outcome_columns(outcomes: Sequence[Outcome]) -> dict[str, list[Any]]:
    """The settle statement's parallel arrays, one element per outcome."""
    cols: dict[str, list[Any]] = {k: [] for k in (
        "ids", "tokens", "kinds", "results", "ttls", "ats", "errors", "started", "outcomes")}
    for o in outcomes:
        error: ErrorInfo | None = None
        result = ttl = at = None
        started = False
        if isinstance(o, Complete):
            kind, outcome, result, ttl = "complete", "succeeded", o.result, o.result_ttl
        elif isinstance(o, Bury):
            kind, outcome, error = "bury", "dead", o.error
        elif isinstance(o, Release):
            kind, started = "release", o.started
            error = (o.error or ErrorInfo("worker-lost")) if o.started else None
            outcome = error.reason if error else "released"
        else:
            kind, outcome, at, error = "reschedule", "retry", o.at, o.error
        cols["ids"].append(o.lease.message_id)
        cols["tokens"].append(o.lease.token)
        cols["kinds"].append(kind)
        cols["results"].append(result)
        cols["ttls"].append(ttl)
        cols["ats"].append(at)
        cols["errors"].append(error_json(error))
        cols["started"].append(started)
        cols["outcomes"].append(outcome)
    return cols
