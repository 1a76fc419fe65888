"""The one exception tree, and the classifier that tells transient faults from terminal ones.

Every error stalwart raises derives from :class:`StalwartError`. Each message says what
happened and what to do next. :func:`is_transient` is the single place that decides whether
an error from a backend may be retried; nothing else in the library guesses.
"""

from __future__ import annotations

import errno
import sqlite3


class StalwartError(Exception):
    """Root of every error stalwart raises; catch this to catch them all."""


class ConfigurationError(StalwartError):
    """The App, a task or a URL is set up wrongly; the message names the setting to fix."""


class MessageError(StalwartError):
    """A message cannot be built or read (bad arguments, too large, undecodable, forged)."""


class ArgumentNotSerializable(MessageError):
    """A task argument cannot be carried as JSON; pass plain data (ids, strings, numbers)."""


class MessageTooLarge(MessageError):
    """The encoded message exceeds the size limit; store the payload elsewhere and pass a key."""


class UndecodableMessage(MessageError):
    """A stored message body is not a valid stalwart envelope (corrupt, or another format)."""


class SignatureError(MessageError):
    """A message is unsigned or its HMAC does not match any configured key."""


class UnknownTask(StalwartError):
    """A task name is not in the App's registry; import the module that defines it."""


class BackendError(StalwartError):
    """A backend operation failed for a reason that retrying will not fix."""


class BrokerUnavailable(BackendError):
    """The backend could not be reached before the deadline; the operation did not take effect.

    The URL in the message has its password redacted. Check that the server is up and
    reachable, or raise ``App(broker_deadline=...)`` to wait longer.
    """


class SchemaError(BackendError):
    """The backend's stored schema is missing or newer than this version of stalwart."""


class TaskError(StalwartError):
    """A task ended ``dead``; carries the remote exception type, message and traceback."""

    def __init__(
        self,
        message_id: str,
        reason: str,
        exc_type: str | None,
        exc_message: str | None,
        traceback: str | None,
    ) -> None:
        self.message_id = message_id
        self.reason = reason
        self.exc_type = exc_type
        self.exc_message = exc_message
        self.traceback = traceback
        head = f"task {message_id} is dead ({reason})"
        if exc_type:
            head += f": {exc_type}: {exc_message}"
        if traceback:
            head += f"\n--- remote traceback ---\n{traceback.rstrip()}"
        super().__init__(head)


class TaskCancelled(StalwartError):
    """The task was cancelled before it ran; it has no result."""


class ResultTimeout(StalwartError, TimeoutError):
    """``result(timeout=...)`` elapsed before the task reached a final state."""


class ResultExpired(StalwartError):
    """The task succeeded but its result was pruned after its TTL; raise ``result_ttl``."""


class SoftTimeLimitExceeded(StalwartError):
    """Raised inside a running task at its ``soft_time_limit``; catch it to clean up."""


class TimeLimitExceeded(StalwartError):
    """The task ran past its hard ``time_limit`` and its process was killed."""


class WorkerLost(StalwartError):
    """The process running the task died (signal, segfault, out of memory)."""


class Fail(StalwartError):
    """Raise inside a task to end it ``dead`` at once, skipping any retries left."""


class RetryRequested(StalwartError):
    """Raised by ``self.retry()`` inside a bound task to schedule the next attempt."""

    def __init__(
        self,
        countdown: float | None = None,
        exc: BaseException | None = None,
        max_retries: int | None = None,
    ) -> None:
        self.countdown = countdown
        self.exc = exc
        self.max_retries = max_retries
        super().__init__(f"retry in {countdown}s" if countdown is not None else "retry")


# --- transient or terminal -------------------------------------------------------------

_TRANSIENT_ERRNOS = {
    errno.ECONNRESET,
    errno.ECONNREFUSED,
    errno.ECONNABORTED,
    errno.EPIPE,
    errno.ETIMEDOUT,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ENETDOWN,
    errno.EAGAIN,
}

# Server replies that mean "not now" rather than "never": a replica loading its dataset,
# a former primary after failover, a cluster slot in migration.
_TRANSIENT_REPLY_PREFIXES = ("LOADING", "READONLY", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN", "BUSY ")

# PostgreSQL SQLSTATEs that a retry can cure: serialization failure, deadlock, connection
# exceptions (class 08), admin shutdown / crash shutdown / cannot connect now (57P01-57P03).
_TRANSIENT_SQLSTATES = {"40001", "40P01", "57P01", "57P02", "57P03", "55P03", "53300"}


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` is a passing fault (network, busy store, failover) worth retrying.

    Terminal errors (bad SQL, a Lua script error, a refused auth) return False so that they
    surface at once instead of being retried until a deadline.
    """
    if isinstance(exc, BrokerUnavailable):
        return False
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        return "locked" in text or "busy" in text
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return True
    module = type(exc).__module__ or ""
    if module.startswith("redis"):
        return _redis_is_transient(exc)
    if module.startswith("psycopg"):
        return _psycopg_is_transient(exc)
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc and isinstance(cause, OSError):
        return is_transient(cause)
    return False


def _redis_is_transient(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"ConnectionError", "TimeoutError", "BusyLoadingError", "ReadOnlyError",
                "TryAgainError", "ClusterDownError", "MasterDownError"}:
        return "AuthenticationError" not in names and "AuthorizationError" not in names
    if "ResponseError" in names:
        return str(exc).startswith(_TRANSIENT_REPLY_PREFIXES)
    return False


def _psycopg_is_transient(exc: BaseException) -> bool:
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate:
        return sqlstate in _TRANSIENT_SQLSTATES or sqlstate.startswith("08")
    names = {cls.__name__ for cls in type(exc).__mro__}
    # OperationalError without a SQLSTATE: the connection broke before the server answered.
    return bool(names & {"OperationalError", "PoolTimeout", "ConnectionTimeout"})
