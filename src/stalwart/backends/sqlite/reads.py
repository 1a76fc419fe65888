"""Inspection queries: rows of the SQLite schema turned into the contract's records.

Each function takes a connection inside a transaction that the caller opened, so that
what it reads is one consistent snapshot.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from ...states import State, job_state
from ..base import Attempt, Counts, ErrorInfo, JobInfo, MessageInfo, Progress, QueueStats, WorkerInfo

MESSAGE_COLUMNS = (
    "id, task, queue, state, priority, eta, retries, deliveries, max_deliveries, job_id, "
    "idempotency_key, created_at, updated_at, body, result, result_expires_at, error_reason, "
    "error_type, error_message, error_traceback, lease_expires_at, progress_done, "
    "progress_total, progress_note, progress_updated_at"
)
_LIVE_STATES = ("queued", "scheduled", "running")


def error_info(reason: Any, exc_type: Any, message: Any, traceback: Any) -> ErrorInfo | None:
    """The four error columns as an ErrorInfo, or None when no error was recorded."""
    return None if reason is None else ErrorInfo(reason, exc_type, message, traceback)


def error_params(error: ErrorInfo | None) -> tuple[Any, Any, Any, Any]:
    """An ErrorInfo as the values of the four error columns."""
    if error is None:
        return (None, None, None, None)
    return (error.reason, error.exc_type, error.message, error.traceback)


def messages(conn: sqlite3.Connection, where: str = "", params: tuple[Any, ...] = (),
             tail: str = "") -> list[MessageInfo]:
    """Messages matching ``where`` (SQL after WHERE), each with its attempt history."""
    sql = f"SELECT {MESSAGE_COLUMNS} FROM messages"
    if where:
        sql += f" WHERE {where}"
    rows = conn.execute(f"{sql} {tail}", params).fetchall()
    history = _attempts(conn, [r[0] for r in rows])
    return [_message(r, history.get(r[0], [])) for r in rows]


def _attempts(conn: sqlite3.Connection, ids: list[str]) -> dict[str, list[Attempt]]:
    out: dict[str, list[Attempt]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        for row in conn.execute(
            "SELECT message_id, delivery, worker_id, started_at, ended_at, outcome,"
            " error_reason, error_type, error_message, error_traceback FROM attempts"
            f" WHERE message_id IN ({', '.join('?' * len(chunk))}) ORDER BY seq", chunk,
        ):
            out.setdefault(row[0], []).append(
                Attempt(row[1], row[2], row[3], row[4], row[5], error_info(*row[6:10]))
            )
    return out


def _message(row: tuple[Any, ...], attempts: list[Attempt]) -> MessageInfo:
    (mid, task, queue, state, priority, eta, retries, deliveries, max_deliveries, job_id, key,
     created_at, updated_at, body, result, result_expires_at, *rest) = row
    lease_expires_at = rest[4]
    p_done, p_total, p_note, p_at = rest[5:9]
    return MessageInfo(
        id=mid, task=task, queue=queue, state=State(state), priority=priority, eta=eta,
        retries=retries, deliveries=deliveries, max_deliveries=max_deliveries, job_id=job_id,
        idempotency_key=key, created_at=created_at, updated_at=updated_at, body=bytes(body),
        result=result, result_expires_at=result_expires_at, error=error_info(*rest[0:4]),
        lease_expires_at=lease_expires_at if state == State.RUNNING.value else None,
        progress=None if p_at is None else Progress(p_done, p_total, p_note, p_at),
        attempts=tuple(attempts),
    )


def queue_stats(conn: sqlite3.Connection) -> list[QueueStats]:
    """Stored counters per queue, with in-flight counts from the live states."""
    live: dict[tuple[str, str], int] = {}
    for state in _LIVE_STATES:  # one query per state: each is answered by a partial index
        for queue, n in conn.execute(
            "SELECT queue, count(*) FROM messages WHERE state = ? GROUP BY queue", (state,)
        ):
            live[(queue, state)] = n
    return [
        QueueStats(queue, Counts(
            accepted=accepted, queued=live.get((queue, "queued"), 0),
            scheduled=live.get((queue, "scheduled"), 0), running=live.get((queue, "running"), 0),
            succeeded=succeeded, dead=dead, cancelled=cancelled,
        ))
        for queue, accepted, succeeded, dead, cancelled in conn.execute(
            "SELECT queue, accepted, succeeded, dead, cancelled FROM queue_counts ORDER BY queue"
        )
    ]


def job(conn: sqlite3.Connection, job_id: str) -> JobInfo | None:
    """A job's counters, state and the progress of its running members."""
    row = conn.execute(
        "SELECT name, created_at, accepted, succeeded, dead, cancelled FROM jobs WHERE id = ?",
        (job_id,),
    ).fetchone()
    if row is None:
        return None
    name, created_at, accepted, succeeded, dead, cancelled = row
    live = dict(conn.execute(
        "SELECT state, count(*) FROM messages WHERE job_id = ?"
        " AND state IN ('queued', 'scheduled', 'running') GROUP BY state", (job_id,),
    ).fetchall())
    counts = Counts(
        accepted=accepted, queued=live.get("queued", 0), scheduled=live.get("scheduled", 0),
        running=live.get("running", 0), succeeded=succeeded, dead=dead, cancelled=cancelled,
    )
    progress = tuple(
        (mid, Progress(done, total, note, at))
        for mid, done, total, note, at in conn.execute(
            "SELECT id, progress_done, progress_total, progress_note, progress_updated_at"
            " FROM messages WHERE job_id = ? AND state = 'running'"
            " AND progress_updated_at IS NOT NULL ORDER BY id", (job_id,),
        )
    )
    state = job_state(accepted, succeeded, dead, cancelled)
    return JobInfo(job_id, name, created_at, counts, state, progress)


def jobs(conn: sqlite3.Connection, limit: int) -> list[JobInfo]:
    """The newest jobs first."""
    newest = conn.execute(
        "SELECT id FROM jobs ORDER BY created_at DESC, id DESC LIMIT ?", (max(limit, 0),)
    ).fetchall()
    return [info for (job_id,) in newest if (info := job(conn, job_id)) is not None]


def workers(conn: sqlite3.Connection, now: float) -> list[WorkerInfo]:
    """Workers whose registration has not run out, in the order they first registered."""
    return [
        WorkerInfo(wid, host, pid, tuple(json.loads(queues)), concurrency, pool, started,
                   seen, json.loads(meta))
        for wid, host, pid, queues, concurrency, pool, started, seen, meta in conn.execute(
            "SELECT id, hostname, pid, queues, concurrency, pool, started_at, last_seen, meta"
            " FROM workers WHERE expires_at >= ? ORDER BY seq", (now,),
        )
    ]
