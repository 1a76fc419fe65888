"""Message and job states, and which transition may follow which, as one table.

Backends enforce these rules in their atomic steps; the model in ``stalwart.testing.model``
checks them; nothing else decides what state follows what.
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    """Where a message is in its life; the last three are final."""

    SCHEDULED = "scheduled"  # eta in the future, including a retry waiting for its delay
    QUEUED = "queued"  # ready to be claimed
    RUNNING = "running"  # leased by a worker
    SUCCEEDED = "succeeded"
    DEAD = "dead"  # dead-lettered, with a reason
    CANCELLED = "cancelled"


FINAL_STATES = frozenset({State.SUCCEEDED, State.DEAD, State.CANCELLED})
IN_FLIGHT_STATES = (State.QUEUED, State.SCHEDULED, State.RUNNING)
ALL_STATES = (*IN_FLIGHT_STATES, State.SUCCEEDED, State.DEAD, State.CANCELLED)

# operation -> {from_state: to_state}. "enqueue" starts from None.
TRANSITIONS: dict[str, dict[State | None, State]] = {
    "enqueue": {None: State.QUEUED},  # or SCHEDULED when eta is in the future
    "promote": {State.SCHEDULED: State.QUEUED},  # eta passed
    "claim": {State.QUEUED: State.RUNNING},
    "complete": {State.RUNNING: State.SUCCEEDED},
    "retry": {State.RUNNING: State.SCHEDULED},
    "fail": {State.RUNNING: State.DEAD},
    "release": {State.RUNNING: State.QUEUED},  # or DEAD past max_deliveries
    "recover": {State.RUNNING: State.QUEUED},  # or DEAD past max_deliveries
    "cancel": {State.QUEUED: State.CANCELLED, State.SCHEDULED: State.CANCELLED},
    "requeue": {State.DEAD: State.QUEUED},
}


def allowed(operation: str, source: State | None) -> bool:
    """True when ``operation`` may move a message out of ``source``."""
    return source in TRANSITIONS[operation]


class JobState(StrEnum):
    """A job runs until every member is final, then ends in one of two states."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FINISHED_WITH_FAILURES = "finished_with_failures"


def job_state(total: int, succeeded: int, dead: int, cancelled: int) -> JobState:
    """The job's state from its counters: final once every member is final."""
    if succeeded + dead + cancelled < total:
        return JobState.RUNNING
    return JobState.SUCCEEDED if succeeded == total else JobState.FINISHED_WITH_FAILURES
