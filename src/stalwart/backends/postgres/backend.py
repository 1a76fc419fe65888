"""PostgreSQL backend: ``FOR UPDATE SKIP LOCKED`` claims, one statement per atomic step.

Each operation is one SQL statement (see ``queries.sql``) sent on an autocommit connection
from a pool, so it is atomic and costs one round trip. Counters change in the same statement
as the transition they count, as appended deltas that ``recover_expired`` folds later.
Waiters are woken by LISTEN/NOTIFY on a channel per schema.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, replace
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool

from ...errors import SchemaError
from ...net import ConnectionSettings, SocketKeepalive, read_keepalive
from ...states import State, job_state
from .. import redact
from ..base import (
    BackendBase,
    Clock,
    Counts,
    Delivery,
    JobInfo,
    Lease,
    MessageInfo,
    NewJob,
    NewMessage,
    Outcome,
    QueueStats,
    Release,
    WorkerInfo,
)
from . import migrate as migrations
from .config import connect_kwargs, parse_url
from .queries import load
from .rows import message_info, outcome_columns, progress_info

_RESULT_BATCH = 1000
_FOLD_BATCH = 5000  # counter deltas folded per statement
_FOLD_ROUNDS = 10  # statements per recover_expired call, at most
_PRUNE_ROUNDS = 4  # batches of prune_batch rows per recover_expired call, at most


def _lock_order(messages: list[NewMessage]) -> list[NewMessage]:
    """The batch in the order every producer inserts in: by idempotency key, then by id.

    An insert that meets a row another producer is inserting waits for that producer; two
    producers sending the same ids or keys in different orders would each wait for the
    other (a deadlock). A batch repeating an id or key within itself keeps its own order,
    since there the first of the repeats is the one stored.
    """
    keys = [m.idempotency_key for m in messages if m.idempotency_key is not None]
    if len({m.id for m in messages}) < len(messages) or len(set(keys)) < len(keys):
        return messages
    return sorted(messages, key=lambda m: (m.idempotency_key is None,
                                           m.idempotency_key or "", m.id))


class PostgresBackend(BackendBase):
    """Messages in one schema of a PostgreSQL database; safe for many hosts and processes.

    URL options (query string, or keyword arguments): ``schema`` (default ``stalwart``),
    ``auto_migrate`` (default true: create or upgrade the schema on first use),
    ``retention`` (seconds succeeded and cancelled rows are kept; default none: kept for
    ever), ``dead_retention`` (default none: dead rows stay until purged),
    ``pool_min`` / ``pool_max`` (connections in the pool).
    """

    capabilities = frozenset({"transactional_enqueue", "blocking_wait", "multi_host"})

    def __init__(
        self,
        url: str,
        *,
        clock: Clock = time.time,
        connection: ConnectionSettings | None = None,
        settings: ConnectionSettings | None = None,
        **options: Any,
    ) -> None:
        self.url = redact(url)
        self.clock = clock
        # ``connection`` is the name App passes; ``settings`` the one other backends take.
        self.settings = connection or settings or ConnectionSettings()
        conninfo, self.options = parse_url(url, options)
        self._conninfo = make_conninfo(conninfo, **connect_kwargs(self.settings))
        self._sql = load(self.options.quoted_schema)
        self._channel = self.options.channel
        self._schema_lock = threading.Lock()
        self._schema_ok = False
        self._open_lock = threading.Lock()
        self._held: list[psycopg.Connection[Any]] = []  # every connection made, for connections()
        self._last_used: dict[int, float] = {}
        self._listen_lock = threading.Lock()
        self._listener: psycopg.Connection[Any] | None = None
        self._closing = False
        self._pool = ConnectionPool(
            self._conninfo,
            min_size=self.options.pool_min,
            max_size=max(self.options.pool_max, self.options.pool_min, 1),
            kwargs={"autocommit": True, "prepare_threshold": 0},
            configure=self._configure,
            check=self._check,
            timeout=self.settings.socket_timeout,
            name=f"stalwart-{self.options.schema}",
            open=True,
        )

    # -- connections ----------------------------------------------------------------------

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        with self._open_lock:
            self._held = [c for c in self._held if not c.closed]
            self._held.append(conn)
            live = {id(c) for c in self._held}
            self._last_used = {k: v for k, v in self._last_used.items() if k in live}

    def _check(self, conn: psycopg.Connection[Any]) -> None:
        """Ping a pooled connection that idled past the health-check interval before reuse."""
        idle = time.monotonic() - self._last_used.get(id(conn), 0.0)
        if idle > self.settings.health_check_interval:
            ConnectionPool.check_connection(conn)

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled autocommit connection, once the schema is known to be usable."""
        if not self._schema_ok:
            self._ensure_schema()
        # No ``reset`` callback on the pool: with one, the pool hands connections back in a
        # background task, and its close() drops such pending returns without closing them.
        with self._pool.connection() as conn:
            try:
                yield conn
            except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName,
                    psycopg.errors.UndefinedFunction):
                self._schema_ok = False  # dropped under us: check (and migrate) on next use
                raise
            finally:
                self._last_used[id(conn)] = time.monotonic()

    def _ensure_schema(self) -> None:
        with self._schema_lock:
            if self._schema_ok:
                return
            with self._pool.connection() as conn:
                version = migrations.current_version(conn, self.options.schema)
                if version > migrations.LATEST:
                    raise migrations.too_new(self.options.schema, version)
                if version < migrations.LATEST:
                    if not self.options.auto_migrate:
                        raise SchemaError(
                            f"PostgreSQL schema {self.options.schema!r} is at version {version}"
                            f", this stalwart needs {migrations.LATEST}; run `stalwart migrate "
                            "APP` (or open the backend with auto_migrate=true)"
                        )
                    migrations.migrate(conn, self.options.schema, self.clock)
            self._schema_ok = True

    def migrate(self) -> tuple[int, int]:
        """Create or upgrade this backend's schema; return (version before, version after)."""
        with self._schema_lock, self._pool.connection() as conn:
            result = migrations.migrate(conn, self.options.schema, self.clock)
            self._schema_ok = True
            return result

    def schema_version(self) -> int:
        """The schema's applied version (0 when it does not exist yet)."""
        with self._pool.connection() as conn:
            return migrations.current_version(conn, self.options.schema)

    def connections(self) -> list[SocketKeepalive]:
        """Keepalive settings of every open connection, as the kernel reports them."""
        with self._open_lock:
            conns = [c for c in self._held if not c.closed]
        if self._listener is not None and not self._listener.closed:
            conns.append(self._listener)
        out = []
        for conn in conns:
            try:
                fd = conn.pgconn.socket
                sock = socket.socket(fileno=os.dup(fd))
            except (OSError, psycopg.OperationalError):
                continue  # closed meanwhile
            try:
                out.append(replace(read_keepalive(sock), fd=fd))
            finally:
                sock.close()
        return out

    def server_info(self) -> dict[str, Any]:
        """Durability settings, schema version, clock and version of the server.

        ``time`` is the server's clock in epoch seconds; ``clock_skew`` is this host's clock
        minus the server's, measured around one round trip.
        """
        with self._conn() as conn:
            version = migrations.current_version(conn, self.options.schema)
            before = time.time()
            row = conn.execute(self._sql["server_info"]).fetchone()
            after = time.time()
        assert row is not None
        return {
            "synchronous_commit": row[0], "fsync": row[1], "server_version": row[2],
            "server_time": row[3], "time": row[4], "clock_skew": (before + after) / 2 - row[4],
            "schema_version": version, "schema": self.options.schema,
        }

    def close(self) -> None:
        """Close the LISTEN connection and the pool; a ``wait`` in progress returns False."""
        self._closing = True
        while not self._listen_lock.acquire(timeout=0.05):
            # A wait holds the listener: wake it with a notification that names no queue
            # (other waiters of this schema ignore it) rather than wait for its timeout.
            try:
                with self._pool.connection() as conn:
                    conn.execute("SELECT pg_notify(%s, '')", (self._channel,))
            except psycopg.Error:
                self._listen_lock.acquire()  # then the wait ends at its timeout
                break
        try:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
        finally:
            self._listen_lock.release()
        self._pool.close()
        # Any connection the pool lost track of, unless a thread is using it right now.
        with self._open_lock:
            for conn in self._held:
                if not conn.closed and conn.lock.acquire(blocking=False):
                    try:
                        conn.close()
                    finally:
                        conn.lock.release()

    # -- writes ---------------------------------------------------------------------------

    def enqueue(self, messages: Sequence[NewMessage], job: NewJob | None = None) -> list[str]:
        if not messages:
            return []
        with self._conn() as conn:
            return self._enqueue(conn, messages, job)

    def enqueue_in(
        self, conn: psycopg.Connection[Any], messages: Sequence[NewMessage],
        job: NewJob | None = None,
    ) -> list[str]:
        """Enqueue through the caller's own connection, inside the caller's transaction.

        Nothing is committed here: the messages exist once the caller commits, and never if
        it rolls back. Waiters are woken at the caller's commit.
        """
        if not self._schema_ok:
            self._ensure_schema()
        if not messages:
            return []
        return self._enqueue(conn, messages, job)

    def _enqueue(
        self, conn: psycopg.Connection[Any], messages: Sequence[NewMessage], job: NewJob | None
    ) -> list[str]:
        """Insert, then look up the stored id of each message that was a duplicate.

        The insert is one statement, atomic by itself: on an autocommit connection it commits
        alone (one round trip); on the caller's connection it joins the caller's transaction
        (psycopg begins one if none is open) and nothing here commits it. The lookup only
        reads, so it needs no transaction: the rows it looks for are committed, or the
        caller's own.
        """
        ids = [m.id for m in messages]
        todo = list(range(len(messages)))
        for _ in range(3):  # again only if a colliding row was purged in between
            stored = self._insert(conn, _lock_order([messages[i] for i in todo]), job)
            missing = [i for i in todo if messages[i].id not in stored]
            if not missing:
                break
            found = dict(conn.execute(self._sql["enqueue_lookup"], {
                "ids": [messages[i].id for i in missing],
                "keys": [messages[i].idempotency_key for i in missing],
                "ords": missing,
            }).fetchall())
            todo = [i for i in missing if found.get(i) is None]
            for i in missing:
                ids[i] = found.get(i) or ids[i]
            if not todo:
                break
        return ids

    def _insert(
        self, conn: psycopg.Connection[Any], messages: Sequence[NewMessage], job: NewJob | None
    ) -> set[str]:
        now = self.clock()
        rows = conn.execute(self._sql["enqueue"], {
            "ids": [m.id for m in messages], "tasks": [m.task for m in messages],
            "queues": [m.queue for m in messages], "bodies": [bytes(m.body) for m in messages],
            "priorities": [m.priority for m in messages], "etas": [m.eta for m in messages],
            "max_deliveries": [m.max_deliveries for m in messages],
            "job_ids": [m.job_id for m in messages],
            "keys": [m.idempotency_key for m in messages],
            "created": [m.created_at for m in messages], "now": now,
            "job_id": job.id if job else None, "job_name": job.name if job else None,
            "job_created_at": (job.created_at or now) if job else now,
            "channel": self._channel,
        })
        return {row[0] for row in rows}

    def claim(
        self, queues: Sequence[str], limit: int, lease_seconds: float, worker_id: str
    ) -> list[Delivery]:
        if limit <= 0 or not queues:
            return []
        with self._conn() as conn:
            rows = conn.execute(self._sql["claim"], {
                "queues": list(dict.fromkeys(queues)), "limit": limit, "now": self.clock(),
                "lease_seconds": lease_seconds, "worker_id": worker_id,
            }).fetchall()
        rows.sort(key=lambda r: (-r[5], r[0]))
        return [
            Delivery(Lease(r[0], r[1]), r[2], r[3], bytes(r[4]), r[5], r[6], r[7], r[8], r[9],
                     r[10])
            for r in rows
        ]

    def extend(self, leases: Sequence[Lease], lease_seconds: float) -> list[Lease]:
        if not leases:
            return []
        with self._conn() as conn:
            held = set(conn.execute(self._sql["extend"], {
                "ids": [lease.message_id for lease in leases],
                "tokens": [lease.token for lease in leases],
                "now": self.clock(), "lease_seconds": lease_seconds,
            }).fetchall())
        return [lease for lease in leases if (lease.message_id, lease.token) not in held]

    def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        if not outcomes:
            return []
        # One row may be updated once per statement, so a lease repeated in the batch is sent
        # once; the repeats are answered as the fencing rule answers a retried call: True if
        # the first was applied or already applied, unless it was a release that applied
        # (a release clears the token).
        first: dict[Lease, int] = {}
        unique: list[Outcome] = []
        slot = []
        for o in outcomes:
            if o.lease not in first:
                first[o.lease] = len(unique)
                unique.append(o)
                slot.append((first[o.lease], False))
            else:
                slot.append((first[o.lease], True))
        cols = outcome_columns(unique)
        cols["errors"] = [None if e is None else json.dumps(e) for e in cols["errors"]]
        with self._conn() as conn:
            rows = conn.execute(self._sql["settle"], {
                **cols, "now": self.clock(), "channel": self._channel,
            }).fetchall()
        applied = [bool(r[1]) for r in rows]
        answers = [bool(r[1] or r[2]) for r in rows]
        return [
            answers[i] and not (repeat and applied[i] and isinstance(unique[i], Release))
            for i, repeat in slot
        ]

    def progress(self, lease: Lease, done: float, total: float | None, note: str | None) -> bool:
        with self._conn() as conn:
            row = conn.execute(self._sql["progress"], {
                "id": lease.message_id, "token": lease.token, "done": done, "total": total,
                "note": note, "now": self.clock(),
            }).fetchone()
        return row is not None

    def recover_expired(self, limit: int = 1000) -> list[tuple[str, State]]:
        now = self.clock()
        with self._conn() as conn:
            rows = conn.execute(self._sql["recover"], {
                "now": now, "limit": max(limit, 0), "channel": self._channel,
            }).fetchall()
            for _ in range(_FOLD_ROUNDS):
                folded = conn.execute(self._sql["fold_counts"], {"limit": _FOLD_BATCH})
                row = folded.fetchone()
                if not row or row[0] < _FOLD_BATCH:
                    break
            conn.execute(self._sql["expire_results"], {"now": now, "limit": _RESULT_BATCH})
            self._prune(conn, now)
        return [(r[0], State(r[1])) for r in rows]

    def _prune(self, conn: psycopg.Connection[Any], now: float) -> None:
        """Delete final rows past their retention, a small batch per statement."""
        batch = self.options.prune_batch
        for name, keep in (("prune_done", self.options.retention),
                           ("prune_dead", self.options.dead_retention)):
            if keep is None:
                continue
            for _ in range(_PRUNE_ROUNDS):
                cur = conn.execute(self._sql[name], {"before": now - keep, "limit": batch})
                if cur.rowcount < batch:
                    break
        conn.execute(self._sql["prune_workers"], {"before": now - 86400.0})

    def cancel(self, ids: Sequence[str]) -> list[str]:
        if not ids:
            return []
        with self._conn() as conn:
            done = {r[0] for r in conn.execute(self._sql["cancel"], {
                "ids": list(ids), "now": self.clock()})}
        return [i for i in dict.fromkeys(ids) if i in done]

    def requeue_dead(self, ids: Sequence[str] | None = None, queue: str | None = None) -> int:
        if ids is not None and not ids:
            return 0
        with self._conn() as conn:
            row = conn.execute(self._sql["requeue_dead"], {
                "ids": None if ids is None else list(ids), "queue": queue, "now": self.clock(),
                "channel": self._channel,
            }, prepare=False).fetchone()
        return int(row[0]) if row else 0

    def purge_dead(self, ids: Sequence[str] | None = None, queue: str | None = None) -> int:
        if ids is not None and not ids:
            return 0
        with self._conn() as conn:
            cur = conn.execute(self._sql["purge_dead"], {
                "ids": None if ids is None else list(ids), "queue": queue}, prepare=False)
            return cur.rowcount

    # -- waiting --------------------------------------------------------------------------

    def wait(self, queues: Sequence[str], timeout: float) -> bool:
        """Block until a queue of ``queues`` is notified, a scheduled message falls due or a
        lease ends, or ``timeout`` passes. The LISTEN stays open between calls, so a message
        enqueued between a claim and the next wait still wakes it."""
        deadline = time.monotonic() + max(timeout, 0.0)
        if not self._listen_lock.acquire(timeout=max(timeout, 0.0)):
            return False
        try:
            if self._closing:
                return False
            listener = self._listen()
            wanted = set(queues)
            if self._drain(listener, wanted):
                return True
            with self._conn() as conn:
                due_now, next_due = conn.execute(self._sql["next_due"], {
                    "queues": list(wanted), "now": self.clock()}).fetchone() or (False, None)
            if due_now:
                return True
            wake_at = deadline
            if next_due is not None:
                wake_at = min(deadline, time.monotonic() + max(next_due - self.clock(), 0.0)
                              + 0.001)
            while (left := wake_at - time.monotonic()) > 0:
                # The generator holds the connection's lock until it ends: never drain inside.
                received = [n.payload for n in listener.notifies(timeout=left, stop_after=1)]
                if self._closing:
                    return False
                if wanted.intersection(received):
                    self._drain(listener, wanted)
                    return True
            return wake_at < deadline
        except psycopg.Error:
            self._drop_listener()
            raise
        finally:
            self._listen_lock.release()

    def _listen(self) -> psycopg.Connection[Any]:
        if self._listener is None or self._listener.closed:
            if not self._schema_ok:
                self._ensure_schema()
            conn = psycopg.connect(self._conninfo, autocommit=True)
            conn.execute(f'LISTEN "{self._channel}"')
            self._listener = conn
        return self._listener

    @staticmethod
    def _drain(listener: psycopg.Connection[Any], wanted: set[str]) -> bool:
        """Consume notifications already received; True if one was for a wanted queue."""
        hit = False
        for n in listener.notifies(timeout=0):
            hit = hit or n.payload in wanted
        return hit

    def _drop_listener(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    # -- inspection -----------------------------------------------------------------------

    def message(self, message_id: str) -> MessageInfo | None:
        with self._conn() as conn:
            row = conn.execute(self._sql["message"], {"id": message_id}).fetchone()
        return None if row is None else message_info(row)

    def messages(
        self, *, queue: str | None = None, state: State | None = None, limit: int = 100
    ) -> list[MessageInfo]:
        with self._conn() as conn:
            rows = conn.execute(self._sql["messages"], {
                "queue": queue, "state": None if state is None else str(state),
                "limit": max(limit, 0)}, prepare=False).fetchall()
        return [message_info(r) for r in rows]

    def queue_stats(self) -> list[QueueStats]:
        with self._conn() as conn:
            rows = conn.execute(self._sql["queue_stats"]).fetchall()
        return [QueueStats(r[0], Counts(*r[1:8])) for r in rows]

    def job(self, job_id: str) -> JobInfo | None:
        with self._conn() as conn:
            return self._job(conn, job_id)

    def _job(self, conn: psycopg.Connection[Any], job_id: str) -> JobInfo | None:
        row = conn.execute(self._sql["job"], {"id": job_id}).fetchone()
        if row is None:
            return None
        counts = Counts(*row[3:10])
        progress = tuple(
            (mid, p) for mid, data in row[10] if (p := progress_info(data)) is not None
        )
        state = job_state(counts.accepted, counts.succeeded, counts.dead, counts.cancelled)
        return JobInfo(row[0], row[1], row[2], counts, state, progress)

    def jobs(self, limit: int = 50) -> list[JobInfo]:
        with self._conn() as conn:
            ids = [r[0] for r in conn.execute(self._sql["newest_jobs"], {"limit": max(limit, 0)})]
            return [info for j in ids if (info := self._job(conn, j)) is not None]

    # -- worker registry ------------------------------------------------------------------

    def register_worker(self, info: WorkerInfo, ttl: float) -> None:
        now = self.clock()
        data = asdict(info)
        data["queues"] = list(info.queues)
        with self._conn() as conn:
            conn.execute(self._sql["register_worker"], {
                "id": info.id, "info": json.dumps(data), "now": now, "expires_at": now + ttl})

    def unregister_worker(self, worker_id: str) -> None:
        with self._conn() as conn:
            conn.execute(self._sql["unregister_worker"], {"id": worker_id})

    def workers(self) -> list[WorkerInfo]:
        with self._conn() as conn:
            rows = conn.execute(self._sql["workers"], {"now": self.clock()}).fetchall()
        out = []
        for data, last_seen in rows:
            data = {**data, "queues": tuple(data["queues"]), "last_seen": last_seen}
            out.append(WorkerInfo(**data))
        return out
