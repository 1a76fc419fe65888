"""What passes between the supervisor and whatever runs the task: jobs, verdicts, events.

All of it is plain data that crosses a pipe as JSON (never pickle), so a child process
needs nothing but the App it inherited at fork.
"""

from __future__ import annotations

import json
import queue
from dataclasses import dataclass, field
from typing import Any

from ..message import Message


@dataclass(slots=True)
class Job:
    """One delivery to run: the decoded message plus the counters the backend keeps."""

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

    @classmethod
    def from_message(cls, msg: Message, retries: int, deliveries: int,
                     time_limit: float | None, soft_time_limit: float | None) -> Job:
        return cls(
            id=msg.id, task=msg.task, args=list(msg.args), kwargs=dict(msg.kwargs),
            queue=msg.queue, retries=retries, deliveries=deliveries, job_id=msg.job_id,
            eta=msg.eta, headers=dict(msg.headers), time_limit=time_limit,
            soft_time_limit=soft_time_limit, max_retries=msg.max_retries,
        )


@dataclass(slots=True)
class Verdict:
    """How an attempt ended, decided where the exception class is known.

    ``kind`` is ``complete`` (``result`` is JSON text), ``reschedule`` (after ``delay``
    seconds) or ``bury``; ``reason`` is one of ``backends.base.REASONS``.
    """

    kind: str
    result: str | None = None
    result_ttl: float | None = None
    delay: float = 0.0
    reason: str | None = None
    exc_type: str | None = None
    message: str | None = None
    traceback: str | None = None
    duration: float = 0.0


# --- events a pool reports back ----------------------------------------------------------


@dataclass(slots=True)
class ProgressReport:
    job_id: str
    done: float
    total: float | None
    note: str | None


@dataclass(slots=True)
class Finished:
    job_id: str
    verdict: Verdict


@dataclass(slots=True)
class Lost:
    """The runner of ``job_id`` is gone (killed, crashed) without a verdict."""

    job_id: str
    detail: str


@dataclass(slots=True)
class Started:
    """A job that waited in a child's pipe behind another has begun to run."""

    job_id: str


@dataclass(slots=True)
class Returned:
    """A job that waited in a child's pipe never began: the child died first. Run it elsewhere."""

    job_id: str


Event = ProgressReport | Finished | Lost | Started | Returned


def drain_events(events: queue.Queue[Event], timeout: float) -> tuple[list[Event], set[str]]:
    """Every event waiting (blocking up to ``timeout`` for the first), and the jobs they end."""
    out: list[Event] = []
    try:
        out.append(events.get(timeout=timeout))
        while True:
            out.append(events.get_nowait())
    except queue.Empty:
        pass
    return out, {e.job_id for e in out if isinstance(e, (Finished, Lost))}


# --- the pipe's wire form ------------------------------------------------------------------


def _fields(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}  # asdict() deep-copies


def dump_job(job: Job) -> bytes:
    return json.dumps(_fields(job), separators=(",", ":")).encode()


def load_job(data: bytes) -> Job:
    return Job(**json.loads(data))


def dump_event(event: Event) -> bytes:
    fields = _fields(event)
    if isinstance(event, Finished):
        fields["verdict"] = _fields(event.verdict)
    return json.dumps([type(event).__name__, fields], separators=(",", ":")).encode()


def load_event(data: bytes) -> Event:
    kind, fields = json.loads(data)
    if kind == "Finished":
        return Finished(fields["job_id"], Verdict(**fields["verdict"]))
    cls = {"ProgressReport": ProgressReport, "Lost": Lost}[kind]
    return cls(**fields)  # type: ignore[no-any-return]
