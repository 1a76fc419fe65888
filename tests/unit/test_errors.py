"""The transient-or-terminal classifier: the one place that decides what may be retried."""

import errno
import sqlite3

import pytest

from stalwart.errors import BrokerUnavailable, StalwartError, TaskError, is_transient


@pytest.mark.parametrize("exc", [
    ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
    ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
    BrokenPipeError(errno.EPIPE, "broken pipe"),
    TimeoutError("timed out"),
    OSError(errno.EHOSTUNREACH, "no route"),
    sqlite3.OperationalError("database is locked"),
    sqlite3.OperationalError("database table is locked"),
])
def test_network_faults_and_busy_stores_are_transient(exc):
    assert is_transient(exc)


@pytest.mark.parametrize("exc", [
    ValueError("bad"), KeyError("k"), sqlite3.OperationalError("no such table: messages"),
    sqlite3.IntegrityError("UNIQUE constraint failed"), BrokerUnavailable("gave up"),
    PermissionError(errno.EACCES, "denied"),
])
def test_everything_else_is_terminal(exc):
    assert not is_transient(exc)


def test_redis_replies_are_classified_by_kind():
    redis = pytest.importorskip("redis")
    assert is_transient(redis.exceptions.ConnectionError("Error 104 while reading"))
    assert is_transient(redis.exceptions.TimeoutError("Timeout reading from socket"))
    assert is_transient(redis.exceptions.BusyLoadingError("LOADING Redis is loading"))
    assert is_transient(redis.exceptions.ReadOnlyError("READONLY You can't write"))
    assert is_transient(redis.exceptions.ResponseError("TRYAGAIN Multiple keys"))
    assert not is_transient(redis.exceptions.ResponseError("ERR Error running script"))
    assert not is_transient(redis.exceptions.AuthenticationError("invalid password"))


def test_postgres_errors_are_classified_by_sqlstate():
    errors = pytest.importorskip("psycopg.errors")
    assert is_transient(errors.SerializationFailure())
    assert is_transient(errors.DeadlockDetected())
    assert is_transient(errors.AdminShutdown())
    assert is_transient(errors.CannotConnectNow())
    assert not is_transient(errors.UndefinedTable())
    assert not is_transient(errors.UniqueViolation())


def test_task_error_carries_the_remote_exception():
    err = TaskError("M1", "exception", "ValueError", "bad input", "Traceback...\nValueError")
    assert isinstance(err, StalwartError)
    assert "ValueError: bad input" in str(err) and "remote traceback" in str(err)
    assert err.exc_type == "ValueError" and err.reason == "exception"
