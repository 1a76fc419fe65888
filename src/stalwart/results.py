"""Handles on what was enqueued: a task's state and result, a job's counters and progress."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .backends.base import JobInfo, MessageInfo
from .errors import ResultExpired, ResultTimeout, StalwartError, TaskCancelled, TaskError
from .states import FINAL_STATES, JobState, State

if TYPE_CHECKING:
    from .app import App


def _poll_delays(timeout: float | None) -> Any:
    """Short sleeps first (most tasks are quick), growing to half a second."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.005
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return
        yield delay if remaining is None else min(delay, remaining)
        delay = min(delay * 1.5, 0.5)


class TaskHandle:
    """What ``delay()`` returns: the message id, and ways to ask how it went."""

    def __init__(self, app: App, message_id: str) -> None:
        self.app = app
        self.id = message_id

    def __repr__(self) -> str:
        return f"<TaskHandle {self.id}>"

    def info(self) -> MessageInfo:
        info = self.app.backend.message(self.id)
        if info is None:
            raise StalwartError(
                f"no message {self.id} in {self.app.backend.url}; it was never accepted there, "
                "or it was pruned after its retention period"
            )
        return info

    def state(self) -> State:
        """scheduled, queued, running, succeeded, dead or cancelled."""
        return self.info().state

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the final state and return the task's return value.

        Raises TaskError (with the remote exception type, message and traceback) for a dead
        task, TaskCancelled, ResultExpired past the result TTL, ResultTimeout on timeout.
        """
        for pause in _poll_delays(timeout):
            info = self.info()
            if info.state in FINAL_STATES:
                return _outcome(info)
            time.sleep(pause)
        info = self.info()
        if info.state in FINAL_STATES:
            return _outcome(info)
        raise ResultTimeout(f"task {self.id} is still {info.state} after {timeout}s")

    def cancel(self) -> bool:
        """Cancel if not started yet; True when it was cancelled."""
        return bool(self.app.backend.cancel([self.id]))


def _outcome(info: MessageInfo) -> Any:
    if info.state == State.SUCCEEDED:
        if info.result_expired:
            raise ResultExpired(f"task {info.id} succeeded but its result expired")
        return None if info.result is None else json.loads(info.result)
    if info.state == State.CANCELLED:
        raise TaskCancelled(f"task {info.id} was cancelled before it ran")
    err = info.error
    raise TaskError(
        info.id, err.reason if err else "unknown", err.exc_type if err else None,
        err.message if err else None, err.traceback if err else None,
    )


class JobHandle:
    """What ``app.job()`` returns: the job id and its members' ids, and its progress."""

    def __init__(self, app: App, job_id: str, name: str, ids: Sequence[str]) -> None:
        self.app = app
        self.id = job_id
        self.name = name
        self.ids = list(ids)

    def __repr__(self) -> str:
        return f"<JobHandle {self.name} {self.id} members={len(self.ids)}>"

    def progress(self) -> JobInfo:
        """Counters (total, queued, scheduled, running, succeeded, dead, cancelled) and state."""
        info = self.app.backend.job(self.id)
        if info is None:
            raise StalwartError(f"no job {self.id} in {self.app.backend.url}")
        return info

    def wait(self, timeout: float | None = None) -> JobInfo:
        """Block until every member is final; returns the final counters."""
        for pause in _poll_delays(timeout):
            info = self.progress()
            if info.state != JobState.RUNNING:
                return info
            time.sleep(pause)
        info = self.progress()
        if info.state != JobState.RUNNING:
            return info
        raise ResultTimeout(f"job {self.id} still running after {timeout}s: {info.counts}")

    def tasks(self) -> list[TaskHandle]:
        return [TaskHandle(self.app, i) for i in self.ids]
