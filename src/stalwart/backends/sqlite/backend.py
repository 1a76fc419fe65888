"""The embedded default backend: one SQLite file in WAL mode, shared by processes on one host.

``sqlite:///stalwart.db`` is relative to the working directory, ``sqlite:////abs/path.db``
absolute. Options go in the query string or as keyword arguments:

* ``busy_timeout`` (seconds, default 30): how long an operation keeps retrying while another
  process holds the write lock, with backoff, before the driver's "database is locked"
  error is raised (which the library classifies as transient);
* ``retention`` (seconds, default none): ``recover_expired`` deletes ``succeeded`` and
  ``cancelled`` rows older than this, freeing their idempotency keys; dead messages stay in
  the dead-letter store until purged.

Every write is one ``BEGIN IMMEDIATE`` transaction committed with ``synchronous=FULL``, so
an accepted message survives a power cut. Each thread and each process gets its own
connection; a connection inherited across ``fork`` is never used (nor closed) by the child.
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from ..errors import BackendError, ConfigurationError, SchemaError
from ..ids import new_token
from ..states import State, job_state
from . import redact
from .base import (
    Attempt,
    BackendBase,
    Bury,
    Clock,
    Complete,
    Counts,
    Delivery,
    ErrorInfo,
    JobInfo,
    Lease,
    MessageInfo,
    NewJob,
    NewMessage,
    Outcome,
    Progress,
    QueueStats,
    Release,
    Reschedule,
    WorkerInfo,
)

SCHEMA_VERSION = 1
_SCHEMA_FILE = "sqlite_schema.sql"
_CLEANUP_BATCH = 500
_WORKER_FORGET_S = 86400.0  # registry rows this long past their ttl are deleted

T = TypeVar("T")

# Connections a forked child inherited: kept referenced so that the garbage collector never
# closes them in the child (closing may checkpoint or unlink files the parent still uses).
_INHERITED: list[sqlite3.Connection] = []

_MESSAGE_COLUMNS = (
    "id, task, queue, state, priority, eta, retries, deliveries, max_deliveries, job_id, "
    "idempotency_key, created_at, updated_at, body, result, result_expires_at, error_reason, "
    "error_type, error_message, error_traceback, lease_expires_at, progress_done, "
    "progress_total, progress_note, progress_updated_at"
)
_CLAIM_COLUMNS = "seq, id, task, queue, body, priority, deliveries, retries, max_deliveries, job_id"
_FINAL_COUNTER = {State.SUCCEEDED: "succeeded", State.DEAD: "dead", State.CANCELLED: "cancelled"}


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def _database_path(url: str) -> str:
    """The file path in a ``sqlite:`` URL: three slashes relative, four absolute."""
    parts = urlsplit(url)
    if parts.netloc:
        raise ConfigurationError(
            f"SQLite URL {url!r} has a host part ({parts.netloc!r}); write the file after three "
            "slashes: sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    path = unquote(parts.path[1:]) if parts.path.startswith("/") else unquote(parts.path)
    if not path or path == ":memory:" or path.startswith("file:"):
        raise ConfigurationError(
            f"SQLite URL {url!r} names no database file; use sqlite:///stalwart.db (a file "
            "shared by every worker process), or memory:// for an in-process store in tests"
        )
    return path


def _check_writable(path: str, url: str) -> None:
    """Fail early, and say what to do, when WAL cannot create its files beside ``path``."""
    full = os.path.abspath(path)
    directory = os.path.dirname(full)
    if os.path.isdir(full):
        raise ConfigurationError(
            f"the SQLite database path {full!r} (from {url!r}) is a directory; name a file "
            f"in it, e.g. sqlite:///{os.path.join(full, 'stalwart.db')}"
        )
    if not os.path.isdir(directory):
        raise ConfigurationError(
            f"the directory of the SQLite database {full!r} (from {url!r}) does not exist; "
            f"create it (mkdir -p {directory}) or point the URL at an existing directory"
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigurationError(
            f"the directory {directory!r} of the SQLite database {full!r} is not writable; "
            "SQLite in WAL mode creates -wal and -shm files beside the database, so give this "
            "user write access to the directory or choose another path"
        )
    if os.path.exists(full) and not os.access(full, os.R_OK | os.W_OK):
        raise ConfigurationError(
            f"the SQLite database {full!r} is not readable and writable by this user; fix its "
            "permissions or choose another path"
        )


def _options(url: str, given: dict[str, Any]) -> tuple[float, float | None]:
    """``busy_timeout`` and ``retention`` from the query string, keyword arguments winning."""
    known = {"busy_timeout", "retention"}
    merged: dict[str, Any] = dict(parse_qsl(urlsplit(url).query))
    merged.update(given)
    unknown = sorted(set(merged) - known)
    if unknown:
        raise ConfigurationError(
            f"unknown SQLite backend option(s) {', '.join(unknown)} in {url!r}; "
            f"known: {', '.join(sorted(known))}"
        )

    def seconds(name: str, value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = -1.0
        if number < 0:
            raise ConfigurationError(
                f"SQLite option {name}={value!r} must be a number of seconds >= 0"
            )
        return number

    busy = seconds("busy_timeout", merged.get("busy_timeout", 30.0))
    raw = merged.get("retention")
    retention = None if raw in (None, "", "none") else seconds("retention", raw)
    return busy, retention


def _schema_statements() -> list[str]:
    text = resources.files(__package__).joinpath(_SCHEMA_FILE).read_text(encoding="utf-8")
    statements, current = [], ""
    for line in text.splitlines(keepends=True):
        if not current and (not line.strip() or line.lstrip().startswith("--")):
            continue
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return statements


def _error(reason: Any, exc_type: Any, message: Any, traceback: Any) -> ErrorInfo | None:
    return None if reason is None else ErrorInfo(reason, exc_type, message, traceback)


def _error_params(error: ErrorInfo | None) -> tuple[Any, Any, Any, Any]:
    if error is None:
        return (None, None, None, None)
    return (error.reason, error.exc_type, error.message, error.traceback)


class _Deltas:
    """Counter changes gathered during one transaction and written at its end."""

    def __init__(self) -> None:
        self.queues: dict[tuple[str, str], int] = {}
        self.jobs: dict[tuple[str, str], int] = {}

    def add(self, queue: str, job_id: str | None, column: str, delta: int = 1) -> None:
        self.queues[(queue, column)] = self.queues.get((queue, column), 0) + delta
        if job_id is not None:
            self.jobs[(job_id, column)] = self.jobs.get((job_id, column), 0) + delta

    def write(self, conn: sqlite3.Connection) -> None:
        for (queue, column), delta in self.queues.items():
            if delta:
                conn.execute(
                    f"INSERT INTO queue_counts (queue, {column}) VALUES (?, ?) "
                    f"ON CONFLICT (queue) DO UPDATE SET {column} = {column} + excluded.{column}",
                    (queue, delta),
                )
        for (job_id, column), delta in self.jobs.items():
            if delta:
                conn.execute(
                    f"UPDATE jobs SET {column} = {column} + ? WHERE id = ?", (delta, job_id)
                )


_OPEN: weakref.WeakSet[SQLiteBackend] = weakref.WeakSet()


def _reset_after_fork() -> None:
    """A lock held by another thread at fork time would stay held forever in the child."""
    for backend in list(_OPEN):
        backend._conns_lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


class SQLiteBackend(BackendBase):
    """The contract on one SQLite file: atomic transactions, safe for many local processes."""

    capabilities = frozenset[str]()

    def __init__(self, url: str = "sqlite:///stalwart.db", *, clock: Clock = time.time,
                 busy_timeout: float | None = None, retention: float | None = None) -> None:
        given: dict[str, Any] = {}
        if busy_timeout is not None:
            given["busy_timeout"] = busy_timeout
        if retention is not None:
            given["retention"] = retention
        self.url = redact(url)
        self.clock = clock
        # Resolved once: a later chdir (a daemonizing worker) must not move the database.
        self.path = os.path.abspath(_database_path(url))
        self.busy_timeout, self.retention = _options(url, given)
        _check_writable(self.path, self.url)
        self._local = threading.local()
        self._conns: list[tuple[int, weakref.ref[threading.Thread], sqlite3.Connection]] = []
        self._conns_lock = threading.Lock()
        self._closed = False
        _OPEN.add(self)
        self._initialize()

    # -- connections and transactions -----------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise ConfigurationError(
                f"cannot open the SQLite database {self.path!r} ({exc}); "
                "check the path and its permissions"
            ) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = OFF")
            # After a checkpoint, truncate the WAL file back to this size instead of
            # keeping its largest size forever.
            conn.execute("PRAGMA journal_size_limit = 67108864")
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection in this process, opened on first use."""
        if self._closed:
            raise BackendError(f"the SQLite backend for {self.url!r} is closed; open a new one")
        local = self._local
        pid = os.getpid()
        conn = getattr(local, "conn", None)
        if conn is not None and local.pid == pid:
            return conn
        if conn is not None:
            _INHERITED.append(conn)  # opened before a fork: leave it to the parent
        conn = self._connect()
        local.conn, local.pid = conn, pid
        with self._conns_lock:
            keep = []
            for owner_pid, thread_ref, other in self._conns:
                thread = thread_ref()
                if owner_pid == pid and (thread is None or not thread.is_alive()):
                    other.close()  # its thread is gone; nobody else can be using it
                elif owner_pid == pid:
                    keep.append((owner_pid, thread_ref, other))
                else:
                    _INHERITED.append(other)
            keep.append((pid, weakref.ref(threading.current_thread()), conn))
            self._conns = keep
        return conn

    def _run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        """Run ``fn`` in one transaction, retrying busy/locked errors until ``busy_timeout``.

        ``fn`` may run more than once, so it builds its results from the database only.
        """
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.005
        while True:
            conn = self._conn()
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    result = fn(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        try:
                            conn.execute("ROLLBACK")
                        except sqlite3.Error:
                            pass
                    raise
                return result
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise self._translate(exc) from exc
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise
                time.sleep(min(delay * (0.5 + random.random()), remaining))
                delay = min(delay * 2, 0.1)
            except sqlite3.DatabaseError as exc:
                raise self._translate(exc) from exc

    def _translate(self, exc: sqlite3.Error) -> BackendError:
        full = self.path
        text = str(exc).lower()
        if "not a database" in text or "malformed" in text or "corrupt" in text:
            return BackendError(
                f"the SQLite database {full!r} is corrupt or not a stalwart database ({exc}); "
                "move it aside (keep it for inspection) and point the URL at a new file, or "
                "restore it from a backup"
            )
        if "readonly" in text or "read-only" in text:
            return BackendError(
                f"the SQLite database {full!r} is read-only ({exc}); give this user write "
                "access to the file and its directory"
            )
        return BackendError(f"SQLite database {full!r}: {exc}")

    def _initialize(self) -> None:
        """Create the schema on first use; refuse a file written by a newer stalwart."""
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                conn = self._conn()
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or time.monotonic() >= deadline:
                    raise self._translate(exc) from exc
                time.sleep(0.01)
            except sqlite3.DatabaseError as exc:
                raise self._translate(exc) from exc
        if str(mode).lower() != "wal":
            raise BackendError(
                f"could not switch the SQLite database {self.path!r} to WAL "
                f"mode (it reports {mode!r}); WAL needs a local file system, not a network share"
            )

        def create(conn: sqlite3.Connection) -> None:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise SchemaError(
                    f"the SQLite database {self.path!r} has schema version "
                    f"{version}, newer than this stalwart understands ({SCHEMA_VERSION}); "
                    "upgrade stalwart on this machine"
                )
            if version == SCHEMA_VERSION:
                return
            if version == 0:
                user_tables = conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%' AND name NOT IN "
                    "('messages', 'attempts', 'queue_counts', 'jobs', 'workers')"
                ).fetchall()
                if user_tables:
                    raise SchemaError(
                        f"the SQLite database {self.path!r} holds other tables "
                        f"({', '.join(r[0] for r in user_tables[:5])}) and no stalwart schema; "
                        "point the URL at a file of its own"
                    )
            for statement in _schema_statements():
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

        self._run(create)

    # -- writes ---------------------------------------------------------------------------

    def enqueue(self, messages: Sequence[NewMessage], job: NewJob | None = None) -> list[str]:
        if not messages:
            return []

        def run(conn: sqlite3.Connection) -> list[str]:
            now = self.clock()
            ids: list[str] = []
            deltas = _Deltas()
            jobs_seen: set[str] = set()
            for m in messages:
                ready = m.eta is None or m.eta <= now
                cur = conn.execute(
                    "INSERT INTO messages (id, task, queue, priority, state, eta, max_deliveries,"
                    " job_id, idempotency_key, body, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                    (m.id, m.task, m.queue, m.priority,
                     State.QUEUED.value if ready else State.SCHEDULED.value, m.eta,
                     m.max_deliveries, m.job_id, m.idempotency_key, m.body, m.created_at, now),
                )
                if cur.rowcount == 0:
                    ids.append(self._existing_id(conn, m))
                    continue
                if m.job_id is not None and m.job_id not in jobs_seen:
                    jobs_seen.add(m.job_id)
                    named = job is not None and job.id == m.job_id
                    conn.execute(
                        "INSERT INTO jobs (id, name, created_at) VALUES (?, ?, ?) "
                        "ON CONFLICT (id) DO NOTHING",
                        (m.job_id, job.name if named and job else m.job_id,
                         (job.created_at or now) if named and job else now),
                    )
                deltas.add(m.queue, m.job_id, "accepted")
                ids.append(m.id)
            deltas.write(conn)
            return ids

        return self._run(run)

    @staticmethod
    def _existing_id(conn: sqlite3.Connection, m: NewMessage) -> str:
        if conn.execute("SELECT 1 FROM messages WHERE id = ?", (m.id,)).fetchone():
            return m.id
        row = conn.execute(
            "SELECT id FROM messages WHERE idempotency_key = ?", (m.idempotency_key,)
        ).fetchone()
        if row is None:  # pragma: no cover - the insert conflicted on one of the two
            raise BackendError(f"message {m.id} was neither stored nor found")
        return str(row[0])

    def claim(
        self, queues: Sequence[str], limit: int, lease_seconds: float, worker_id: str
    ) -> list[Delivery]:
        wanted = list(dict.fromkeys(queues))
        if limit <= 0 or not wanted:
            return []

        def run(conn: sqlite3.Connection) -> list[Delivery]:
            now = self.clock()
            rows: list[tuple[Any, ...]] = []
            for q in wanted:
                rows += conn.execute(
                    f"SELECT {_CLAIM_COLUMNS} FROM messages INDEXED BY messages_queued"
                    " WHERE state = 'queued' AND queue = ?"
                    " ORDER BY priority DESC, id LIMIT ?", (q, limit),
                ).fetchall()
                rows += conn.execute(
                    f"SELECT {_CLAIM_COLUMNS} FROM messages INDEXED BY messages_scheduled"
                    " WHERE state = 'scheduled'"
                    " AND queue = ? AND eta <= ? ORDER BY priority DESC, id LIMIT ?",
                    (q, now, limit),
                ).fetchall()
            rows.sort(key=lambda r: (-r[5], r[1]))
            chosen = rows[:limit]
            expires = now + lease_seconds
            out, updates, attempts = [], [], []
            for seq, mid, task, queue, body, priority, deliveries, retries, maxd, job_id in chosen:
                token = new_token()
                updates.append((token, expires, now, seq))
                attempts.append((mid, deliveries + 1, worker_id, now))
                out.append(Delivery(
                    Lease(mid, token), task, queue, bytes(body), priority, deliveries + 1,
                    retries, maxd, job_id, expires,
                ))
            conn.executemany(
                "UPDATE messages SET state = 'running', token = ?, lease_expires_at = ?,"
                " deliveries = deliveries + 1, updated_at = ? WHERE seq = ?", updates,
            )
            conn.executemany(
                "INSERT INTO attempts (message_id, delivery, worker_id, started_at)"
                " VALUES (?, ?, ?, ?)", attempts,
            )
            return out

        return self._run(run)

    def extend(self, leases: Sequence[Lease], lease_seconds: float) -> list[Lease]:
        if not leases:
            return []

        def run(conn: sqlite3.Connection) -> list[Lease]:
            expires = self.clock() + lease_seconds
            lost = []
            for lease in leases:
                cur = conn.execute(
                    "UPDATE messages SET lease_expires_at = ? WHERE id = ? AND state = 'running'"
                    " AND token = ?", (expires, lease.message_id, lease.token),
                )
                if cur.rowcount == 0:
                    lost.append(lease)
            return lost

        return self._run(run)

    def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        if not outcomes:
            return []

        def run(conn: sqlite3.Connection) -> list[bool]:
            now = self.clock()
            deltas = _Deltas()
            done = [self._settle_one(conn, o, now, deltas) for o in outcomes]
            deltas.write(conn)
            return done

        return self._run(run)

    def _settle_one(
        self, conn: sqlite3.Connection, o: Outcome, now: float, deltas: _Deltas
    ) -> bool:
        row = conn.execute(
            "SELECT seq, state, token, deliveries, max_deliveries, queue, job_id FROM messages"
            " WHERE id = ?", (o.lease.message_id,),
        ).fetchone()
        if row is None or row[2] != o.lease.token:
            return False
        seq, state, _, deliveries, max_deliveries, queue, job_id = row
        if state != State.RUNNING.value:
            return True  # already applied by an earlier call carrying the same token
        mid = o.lease.message_id
        if isinstance(o, Complete):
            expires = None if o.result_ttl is None else now + o.result_ttl
            conn.execute(
                "UPDATE messages SET state = 'succeeded', result = ?, result_expires_at = ?,"
                " lease_expires_at = NULL, updated_at = ? WHERE seq = ?",
                (o.result, expires, now, seq),
            )
            self._end_attempt(conn, mid, now, "succeeded", None)
            deltas.add(queue, job_id, "succeeded")
        elif isinstance(o, Reschedule):
            new_state = State.QUEUED if o.at <= now else State.SCHEDULED
            conn.execute(
                "UPDATE messages SET state = ?, eta = ?, retries = retries + 1,"
                " error_reason = ?, error_type = ?, error_message = ?, error_traceback = ?,"
                " lease_expires_at = NULL, updated_at = ? WHERE seq = ?",
                (new_state.value, o.at, *_error_params(o.error), now, seq),
            )
            self._end_attempt(conn, mid, now, "retry", o.error)
        elif isinstance(o, Bury):
            self._bury(conn, seq, mid, now, o.error, "dead", queue, job_id, deltas)
        elif isinstance(o, Release):
            if not o.started:
                conn.execute(
                    "UPDATE messages SET state = 'queued', token = NULL, lease_expires_at = NULL,"
                    " deliveries = deliveries - 1, updated_at = ? WHERE seq = ?", (now, seq),
                )
                conn.execute(
                    "DELETE FROM attempts WHERE seq ="
                    " (SELECT max(seq) FROM attempts WHERE message_id = ?)", (mid,),
                )
            else:
                err = o.error or ErrorInfo("worker-lost")
                self._give_back(conn, seq, mid, now, err, err.reason, deliveries >= max_deliveries,
                                queue, job_id, deltas)
        else:  # pragma: no cover - Outcome is a closed union
            raise TypeError(f"not an outcome: {o!r}")
        return True

    def _bury(self, conn: sqlite3.Connection, seq: int, mid: str, now: float, err: ErrorInfo,
              outcome: str, queue: str, job_id: str | None, deltas: _Deltas,
              clear_token: bool = False) -> None:
        conn.execute(
            "UPDATE messages SET state = 'dead', error_reason = ?, error_type = ?,"
            " error_message = ?, error_traceback = ?, lease_expires_at = NULL, updated_at = ?,"
            " token = CASE WHEN ? THEN NULL ELSE token END WHERE seq = ?",
            (*_error_params(err), now, clear_token, seq),
        )
        self._end_attempt(conn, mid, now, outcome, err)
        deltas.add(queue, job_id, "dead")

    def _give_back(self, conn: sqlite3.Connection, seq: int, mid: str, now: float,
                   err: ErrorInfo, outcome: str, lost: bool, queue: str, job_id: str | None,
                   deltas: _Deltas) -> State:
        """An interrupted delivery: its attempt ends; back to queued, or dead when out of
        deliveries. The token is cleared either way (a release or a recovery)."""
        if lost:
            self._bury(conn, seq, mid, now, err, outcome, queue, job_id, deltas, True)
            return State.DEAD
        conn.execute(
            "UPDATE messages SET state = 'queued', token = NULL, error_reason = ?, error_type = ?,"
            " error_message = ?, error_traceback = ?, lease_expires_at = NULL, updated_at = ?"
            " WHERE seq = ?", (*_error_params(err), now, seq),
        )
        self._end_attempt(conn, mid, now, outcome, err)
        return State.QUEUED

    @staticmethod
    def _end_attempt(conn: sqlite3.Connection, mid: str, now: float, outcome: str,
                     error: ErrorInfo | None) -> None:
        conn.execute(
            "UPDATE attempts SET ended_at = ?, outcome = ?, error_reason = ?, error_type = ?,"
            " error_message = ?, error_traceback = ? WHERE seq ="
            " (SELECT max(seq) FROM attempts WHERE message_id = ?) AND ended_at IS NULL",
            (now, outcome, *_error_params(error), mid),
        )

    def progress(self, lease: Lease, done: float, total: float | None, note: str | None) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE messages SET progress_done = ?, progress_total = ?, progress_note = ?,"
                " progress_updated_at = ? WHERE id = ? AND state = 'running' AND token = ?",
                (done, total, note, self.clock(), lease.message_id, lease.token),
            )
            return cur.rowcount > 0

        return self._run(run)

    def recover_expired(self, limit: int = 1000) -> list[tuple[str, State]]:
        now = self.clock()
        recovered = self._recover_leases(now, limit) if limit > 0 else []
        self._cleanup(
            "SELECT 1 FROM messages WHERE result IS NOT NULL AND result_expires_at <= ? LIMIT 1",
            "UPDATE messages SET result = NULL WHERE seq IN (SELECT seq FROM messages"
            " WHERE result IS NOT NULL AND result_expires_at <= ? LIMIT ?)",
            now,
        )
        if self.retention is not None:
            self._cleanup(
                "SELECT 1 FROM messages WHERE state IN ('succeeded', 'cancelled')"
                " AND updated_at < ? LIMIT 1",
                "DELETE FROM messages WHERE seq IN (SELECT seq FROM messages"
                " WHERE state IN ('succeeded', 'cancelled') AND updated_at < ? LIMIT ?)"
                " RETURNING id",
                now - self.retention,
                attempts=True,
            )
        self._cleanup(
            "SELECT 1 FROM workers WHERE expires_at < ? LIMIT 1",
            "DELETE FROM workers WHERE seq IN (SELECT seq FROM workers WHERE expires_at < ?"
            " LIMIT ?)",
            now - _WORKER_FORGET_S,
        )
        return recovered

    def _recover_leases(self, now: float, limit: int) -> list[tuple[str, State]]:
        # A read first, so that idle workers running this every few seconds never queue up
        # for the write lock when there is nothing to recover.
        probe = ("SELECT 1 FROM messages INDEXED BY messages_running"
                 " WHERE state = 'running' AND lease_expires_at < ? LIMIT 1")
        if not self._run(lambda c: c.execute(probe, (now,)).fetchone(), write=False):
            return []

        def run(conn: sqlite3.Connection) -> list[tuple[str, State]]:
            now = self.clock()
            rows = conn.execute(
                "SELECT seq, id, deliveries, max_deliveries, queue, job_id FROM messages"
                " INDEXED BY messages_running"
                " WHERE state = 'running' AND lease_expires_at < ? ORDER BY seq LIMIT ?",
                (now, limit),
            ).fetchall()
            deltas = _Deltas()
            out = []
            for seq, mid, deliveries, max_deliveries, queue, job_id in rows:
                lost = deliveries >= max_deliveries
                err = ErrorInfo("worker-lost" if lost else "lease-expired",
                                message=f"lease expired after delivery {deliveries}")
                state = self._give_back(conn, seq, mid, now, err, "lease-expired", lost,
                                        queue, job_id, deltas)
                out.append((mid, state))
            deltas.write(conn)
            return out

        return self._run(run)

    def _cleanup(self, probe: str, change: str, cutoff: float, attempts: bool = False) -> None:
        """Apply ``change`` in small transactions until nothing older than ``cutoff`` is left."""
        while self._run(lambda c: c.execute(probe, (cutoff,)).fetchone(), write=False):
            def run(conn: sqlite3.Connection) -> int:
                cur = conn.execute(change, (cutoff, _CLEANUP_BATCH))
                if not attempts:
                    return cur.rowcount
                gone = [(r[0],) for r in cur.fetchall()]
                conn.executemany("DELETE FROM attempts WHERE message_id = ?", gone)
                return len(gone)

            if self._run(run) < _CLEANUP_BATCH:
                return

    def cancel(self, ids: Sequence[str]) -> list[str]:
        if not ids:
            return []

        def run(conn: sqlite3.Connection) -> list[str]:
            now = self.clock()
            deltas = _Deltas()
            out = []
            for mid in ids:
                row = conn.execute(
                    "UPDATE messages SET state = 'cancelled', error_reason = 'cancelled',"
                    " error_type = NULL, error_message = NULL, error_traceback = NULL,"
                    " lease_expires_at = NULL, updated_at = ?"
                    " WHERE id = ? AND state IN ('queued', 'scheduled') RETURNING queue, job_id",
                    (now, mid),
                ).fetchone()
                if row is not None:
                    deltas.add(row[0], row[1], "cancelled")
                    out.append(mid)
            deltas.write(conn)
            return out

        return self._run(run)

    def requeue_dead(self, ids: Sequence[str] | None = None, queue: str | None = None) -> int:
        def run(conn: sqlite3.Connection) -> int:
            now = self.clock()
            deltas = _Deltas()
            n = 0
            for seq in self._dead_seqs(conn, ids, queue):
                row = conn.execute(
                    "UPDATE messages SET state = 'queued', retries = 0, deliveries = 0,"
                    " eta = NULL, token = NULL, lease_expires_at = NULL, updated_at = ?"
                    " WHERE seq = ? AND state = 'dead' RETURNING queue, job_id", (now, seq),
                ).fetchone()
                if row is not None:
                    deltas.add(row[0], row[1], "dead", -1)
                    n += 1
            deltas.write(conn)
            return n

        return self._run(run)

    def purge_dead(self, ids: Sequence[str] | None = None, queue: str | None = None) -> int:
        def run(conn: sqlite3.Connection) -> int:
            n = 0
            for seq in self._dead_seqs(conn, ids, queue):
                row = conn.execute(
                    "DELETE FROM messages WHERE seq = ? AND state = 'dead' RETURNING id", (seq,)
                ).fetchone()
                if row is not None:
                    conn.execute("DELETE FROM attempts WHERE message_id = ?", (row[0],))
                    n += 1
            return n

        return self._run(run)

    @staticmethod
    def _dead_seqs(conn: sqlite3.Connection, ids: Sequence[str] | None,
                   queue: str | None) -> list[int]:
        if ids is None:
            sql = "SELECT seq FROM messages WHERE state = 'dead'"
            params: tuple[Any, ...] = ()
            if queue is not None:
                sql, params = sql + " AND queue = ?", (queue,)
            return [r[0] for r in conn.execute(sql + " ORDER BY seq", params)]
        seqs = []
        for mid in dict.fromkeys(ids):
            row = conn.execute(
                "SELECT seq FROM messages WHERE id = ? AND state = 'dead'"
                " AND (? IS NULL OR queue = ?)", (mid, queue, queue),
            ).fetchone()
            if row is not None:
                seqs.append(row[0])
        return seqs

    def wait(self, queues: Sequence[str], timeout: float) -> bool:
        """Poll cheaply until work may be ready: ``PRAGMA data_version`` moves when another
        connection commits, and a scheduled message's eta may pass; backoff 5 ms to 100 ms."""
        wanted = list(dict.fromkeys(queues))
        deadline = time.monotonic() + max(timeout, 0.0)
        conn = self._conn()
        version = self._data_version(conn)
        ready, next_eta = self._readiness(wanted)
        if ready:
            return True
        delay = 0.005
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if next_eta is not None and next_eta - self.clock() <= 0:
                ready, next_eta = self._readiness(wanted)
                if ready:
                    return True
            pause = min(delay, remaining)
            if next_eta is not None:
                pause = min(pause, max(next_eta - self.clock(), 0.001))
            time.sleep(pause)
            delay = min(delay * 2, 0.1)
            current = self._data_version(conn)
            if current != version:
                version = current
                ready, next_eta = self._readiness(wanted)
                if ready:
                    return True
                delay = 0.005

    def _data_version(self, conn: sqlite3.Connection) -> int:
        for _ in range(100):
            try:
                return int(conn.execute("PRAGMA data_version").fetchone()[0])
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
                    raise self._translate(exc) from exc
                time.sleep(0.01)
        return -1

    def _readiness(self, queues: list[str]) -> tuple[bool, float | None]:
        """Whether a message in ``queues`` is ready now, and the earliest future eta."""

        def run(conn: sqlite3.Connection) -> tuple[bool, float | None]:
            now = self.clock()
            soonest: float | None = None
            for q in queues:
                if conn.execute("SELECT 1 FROM messages WHERE state = 'queued' AND queue = ?"
                                " LIMIT 1", (q,)).fetchone():
                    return True, None
                eta = conn.execute("SELECT min(eta) FROM messages WHERE state = 'scheduled'"
                                   " AND queue = ?", (q,)).fetchone()[0]
                if eta is not None:
                    if eta <= now:
                        return True, None
                    soonest = eta if soonest is None else min(soonest, eta)
            return False, soonest

        return self._run(run, write=False)

    # -- reads ----------------------------------------------------------------------------

    def message(self, message_id: str) -> MessageInfo | None:
        def run(conn: sqlite3.Connection) -> MessageInfo | None:
            row = conn.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", (message_id,)
            ).fetchone()
            return None if row is None else self._infos(conn, [row])[0]

        return self._run(run, write=False)

    def messages(
        self, *, queue: str | None = None, state: State | None = None, limit: int = 100
    ) -> list[MessageInfo]:
        def run(conn: sqlite3.Connection) -> list[MessageInfo]:
            where, params = [], []
            if queue is not None:
                where.append("queue = ?")
                params.append(queue)
            if state is not None:
                where.append("state = ?")
                params.append(State(state).value)
            sql = f"SELECT {_MESSAGE_COLUMNS} FROM messages"
            if where:
                sql += " WHERE " + " AND ".join(where)
            rows = conn.execute(sql + " ORDER BY id LIMIT ?", (*params, max(limit, 0))).fetchall()
            return self._infos(conn, rows)

        return self._run(run, write=False)

    @staticmethod
    def _infos(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> list[MessageInfo]:
        attempts: dict[str, list[Attempt]] = {}
        ids = [r[0] for r in rows]
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            for a in conn.execute(
                "SELECT message_id, delivery, worker_id, started_at, ended_at, outcome,"
                " error_reason, error_type, error_message, error_traceback FROM attempts"
                f" WHERE message_id IN ({', '.join('?' * len(chunk))}) ORDER BY seq", chunk,
            ):
                attempts.setdefault(a[0], []).append(
                    Attempt(a[1], a[2], a[3], a[4], a[5], _error(*a[6:10]))
                )
        out = []
        for r in rows:
            (mid, task, queue, state, priority, eta, retries, deliveries, max_deliveries,
             job_id, key, created_at, updated_at, body, result, result_expires_at, *rest) = r
            err = _error(*rest[0:4])
            lease_expires_at = rest[4]
            p_done, p_total, p_note, p_at = rest[5:9]
            out.append(MessageInfo(
                id=mid, task=task, queue=queue, state=State(state), priority=priority, eta=eta,
                retries=retries, deliveries=deliveries, max_deliveries=max_deliveries,
                job_id=job_id, idempotency_key=key, created_at=created_at,
                updated_at=updated_at, body=bytes(body), result=result,
                result_expires_at=result_expires_at, error=err,
                lease_expires_at=lease_expires_at if state == State.RUNNING.value else None,
                progress=None if p_at is None else Progress(p_done, p_total, p_note, p_at),
                attempts=tuple(attempts.get(mid, ())),
            ))
        return out

    def queue_stats(self) -> list[QueueStats]:
        def run(conn: sqlite3.Connection) -> list[QueueStats]:
            live: dict[tuple[str, str], int] = {}
            for state in ("queued", "scheduled", "running"):
                for queue, n in conn.execute(
                    "SELECT queue, count(*) FROM messages WHERE state = ? GROUP BY queue",
                    (state,),
                ):
                    live[(queue, state)] = n
            return [
                QueueStats(queue, Counts(
                    accepted=acc, queued=live.get((queue, "queued"), 0),
                    scheduled=live.get((queue, "scheduled"), 0),
                    running=live.get((queue, "running"), 0),
                    succeeded=ok, dead=dead, cancelled=cancelled,
                ))
                for queue, acc, ok, dead, cancelled in conn.execute(
                    "SELECT queue, accepted, succeeded, dead, cancelled FROM queue_counts"
                    " ORDER BY queue"
                )
            ]

        return self._run(run, write=False)

    def job(self, job_id: str) -> JobInfo | None:
        return self._run(lambda conn: self._job(conn, job_id), write=False)

    @staticmethod
    def _job(conn: sqlite3.Connection, job_id: str) -> JobInfo | None:
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

    def jobs(self, limit: int = 50) -> list[JobInfo]:
        def run(conn: sqlite3.Connection) -> list[JobInfo]:
            newest = conn.execute(
                "SELECT id FROM jobs ORDER BY created_at DESC, id DESC LIMIT ?", (max(limit, 0),)
            ).fetchall()
            return [info for (j,) in newest if (info := self._job(conn, j)) is not None]

        return self._run(run, write=False)

    # -- worker registry ------------------------------------------------------------------

    def register_worker(self, info: WorkerInfo, ttl: float) -> None:
        def run(conn: sqlite3.Connection) -> None:
            now = self.clock()
            conn.execute(
                "INSERT INTO workers (id, hostname, pid, queues, concurrency, pool, started_at,"
                " last_seen, meta, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET hostname = excluded.hostname,"
                " pid = excluded.pid, queues = excluded.queues,"
                " concurrency = excluded.concurrency, pool = excluded.pool,"
                " started_at = excluded.started_at, last_seen = excluded.last_seen,"
                " meta = excluded.meta, expires_at = excluded.expires_at",
                (info.id, info.hostname, info.pid, json.dumps(list(info.queues)),
                 info.concurrency, info.pool, info.started_at, now, json.dumps(info.meta),
                 now + ttl),
            )

        self._run(run)

    def unregister_worker(self, worker_id: str) -> None:
        self._run(lambda conn: conn.execute("DELETE FROM workers WHERE id = ?", (worker_id,)))

    def workers(self) -> list[WorkerInfo]:
        def run(conn: sqlite3.Connection) -> list[WorkerInfo]:
            return [
                WorkerInfo(wid, host, pid, tuple(json.loads(queues)), conc, pool, started,
                           seen, json.loads(meta))
                for wid, host, pid, queues, conc, pool, started, seen, meta in conn.execute(
                    "SELECT id, hostname, pid, queues, concurrency, pool, started_at, last_seen,"
                    " meta FROM workers WHERE expires_at >= ? ORDER BY seq", (self.clock(),),
                )
            ]

        return self._run(run, write=False)

    def close(self) -> None:
        """Close this process's connections; connections inherited from a parent stay open."""
        pid = os.getpid()
        with self._conns_lock:
            for owner_pid, _, conn in self._conns:
                if owner_pid == pid:
                    try:
                        conn.close()
                    except sqlite3.Error:
                        pass
                else:
                    _INHERITED.append(conn)
            self._conns = []
        self._closed = True
