"""Connections to one SQLite file: one per thread and per process, transactions, the schema.

SQLite connections must not cross ``fork``: a child that finds a connection opened by its
parent leaves it alone (neither used nor closed) and opens its own. Every write runs in a
``BEGIN IMMEDIATE`` transaction, so two writers never deadlock upgrading a read lock, and a
busy or locked database is waited out with backoff until ``busy_timeout``.
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from importlib import resources
from typing import TypeVar

from ...errors import BackendError, SchemaError
from .config import SQLiteSettings

SCHEMA_VERSION = 1
SCHEMA_FILE = "schema.sql"
TABLES = ("messages", "attempts", "queue_counts", "jobs", "workers")
WAL_SIZE_LIMIT = 64 * 1024 * 1024  # bytes the WAL file is truncated to after a checkpoint

T = TypeVar("T")

# Connections a forked child inherited: kept referenced so that the garbage collector never
# closes them in the child (closing may checkpoint or unlink files the parent still uses).
_INHERITED: list[sqlite3.Connection] = []
_OPEN: weakref.WeakSet[Connections] = weakref.WeakSet()


def _reset_after_fork() -> None:
    """A lock held by another thread at fork time would stay held forever in the child."""
    for pool in list(_OPEN):
        pool._lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_after_fork)


def is_busy(exc: sqlite3.OperationalError) -> bool:
    """"database is locked" or "busy": another connection holds the lock; wait and retry."""
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def schema_statements() -> list[str]:
    """The statements of ``schema.sql``, comments dropped, in order."""
    text = resources.files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    statements, current = [], ""
    for line in text.splitlines(keepends=True):
        if not current and (not line.strip() or line.lstrip().startswith("--")):
            continue
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return statements


class Connections:
    """This process's connections to one database file, and transactions over them."""

    def __init__(self, settings: SQLiteSettings) -> None:
        self.path = settings.path
        self.busy_timeout = settings.busy_timeout
        self._local = threading.local()
        self._opened: list[tuple[int, weakref.ref[threading.Thread], sqlite3.Connection]] = []
        self._lock = threading.Lock()
        self._closed = False
        _OPEN.add(self)

    def get(self) -> sqlite3.Connection:
        """This thread's connection in this process, opened on first use."""
        if self._closed:
            raise BackendError(f"the SQLite backend for {self.path!r} is closed; open a new one")
        local = self._local
        pid = os.getpid()
        conn = getattr(local, "conn", None)
        if conn is not None and local.pid == pid:
            return conn
        if conn is not None:
            _INHERITED.append(conn)  # opened before a fork: leave it to the parent
        conn = self._open()
        local.conn, local.pid = conn, pid
        with self._lock:
            keep = []
            for owner, thread_ref, other in self._opened:
                thread = thread_ref()
                if owner != pid:
                    _INHERITED.append(other)
                elif thread is None or not thread.is_alive():
                    other.close()  # its thread is gone; nobody else can be using it
                else:
                    keep.append((owner, thread_ref, other))
            keep.append((pid, weakref.ref(threading.current_thread()), conn))
            self._opened = keep
        return conn

    def _open(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None,
                                   check_same_thread=False)
        except sqlite3.Error as exc:
            raise BackendError(
                f"cannot open the SQLite database {self.path!r} ({exc}); check the path and "
                "its permissions"
            ) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            conn.execute("PRAGMA synchronous = FULL")  # durable accept: fsync every commit
            conn.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        except sqlite3.Error:
            conn.close()
            raise
        return conn

    def run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool = True) -> T:
        """Run ``fn`` in one transaction, retrying busy/locked errors until ``busy_timeout``.

        ``fn`` may run more than once, so it builds its results from the database only.
        Past the deadline the driver's "database is locked" error is raised as it is: the
        library classifies it as transient. Any other SQLite error becomes a BackendError.
        """
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.005
        while True:
            conn = self.get()
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
                if not is_busy(exc):
                    raise self.translate(exc) from exc
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise
                time.sleep(min(delay * (0.5 + random.random()), remaining))
                delay = min(delay * 2, 0.1)
            except sqlite3.DatabaseError as exc:
                raise self.translate(exc) from exc

    def translate(self, exc: sqlite3.Error) -> BackendError:
        """A SQLite error that retrying will not fix, said in words that tell what to do."""
        text = str(exc).lower()
        if "not a database" in text or "malformed" in text or "corrupt" in text:
            return BackendError(
                f"the SQLite database {self.path!r} is corrupt or not a stalwart database "
                f"({exc}); move it aside (keep it for inspection) and point the URL at a new "
                "file, or restore it from a backup"
            )
        if "readonly" in text or "read-only" in text:
            return BackendError(
                f"the SQLite database {self.path!r} is read-only ({exc}); give this user write "
                "access to the file and its directory"
            )
        return BackendError(f"SQLite database {self.path!r}: {exc}")

    def data_version(self) -> int:
        """A number that changes whenever another connection commits to the file."""
        for _ in range(100):
            try:
                return int(self.get().execute("PRAGMA data_version").fetchone()[0])
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise self.translate(exc) from exc
                time.sleep(0.01)
        return -1

    def initialize(self) -> None:
        """WAL mode and the schema on first use; refuse a file written by a newer stalwart."""
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                mode = self.get().execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or time.monotonic() >= deadline:
                    raise self.translate(exc) from exc
                time.sleep(0.01)
            except sqlite3.DatabaseError as exc:
                raise self.translate(exc) from exc
        if str(mode).lower() != "wal":
            raise BackendError(
                f"could not switch the SQLite database {self.path!r} to WAL mode (it reports "
                f"{mode!r}); WAL needs a local file system, not a network share"
            )
        self.run(self._create_schema)

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise SchemaError(
                f"the SQLite database {self.path!r} has schema version {version}, newer than "
                f"this stalwart understands ({SCHEMA_VERSION}); upgrade stalwart on this machine"
            )
        if version == SCHEMA_VERSION:
            return
        others = [name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        ) if name not in TABLES]
        if others:
            raise SchemaError(
                f"the SQLite database {self.path!r} holds other tables ({', '.join(others[:5])})"
                " and no stalwart schema; point the URL at a file of its own"
            )
        for statement in schema_statements():
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        """Close this process's connections; connections inherited from a parent stay open."""
        pid = os.getpid()
        with self._lock:
            for owner, _, conn in self._opened:
                if owner == pid:
                    try:
                        conn.close()
                    except sqlite3.Error:
                        pass
                else:
                    _INHERITED.append(conn)
            self._opened = []
        self._closed = True
