"""The embedded default backend: one SQLite file in WAL mode, shared by processes on one host.

Every operation of the contract is one transaction (``BEGIN IMMEDIATE`` for writes),
committed with ``synchronous=FULL`` so that an accepted message survives a power cut. Claim
and settle take whole batches in one transaction; counters change in the same transaction as
each final transition. Hot queries (claim, recovery, results TTL) read partial indexes and
never scan the messages table.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from ...errors import BackendError
from ...ids import new_token
from ...states import State
from .. import redact
from ..base import (
    BackendBase,
    Bury,
    Clock,
    Complete,
    Delivery,
    ErrorInfo,
    JobInfo,
    Lease,
    MessageInfo,
    NewJob,
    NewMessage,
    Outcome,
    QueueStats,
    Release,
    Reschedule,
    WorkerInfo,
)
from . import reads
from .config import settings_from_url
from .connections import Connections
from .reads import error_params

CLEANUP_BATCH = 500  # rows per transaction when removing expired results or old rows
WORKER_FORGET_S = 86400.0  # registry rows this long past their ttl are deleted

_CLAIM_COLUMNS = "seq, id, task, queue, body, priority, deliveries, retries, max_deliveries, job_id"


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
        settings = settings_from_url(url, given)
        self.path = settings.path
        self.busy_timeout = settings.busy_timeout
        self.retention = settings.retention
        self._db = Connections(settings)
        self._db.initialize()

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (for diagnostics such as ``stalwart doctor``)."""
        return self._db.get()

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

        return self._db.run(run)

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

        return self._db.run(run)

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

        return self._db.run(run)

    def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        if not outcomes:
            return []

        def run(conn: sqlite3.Connection) -> list[bool]:
            now = self.clock()
            deltas = _Deltas()
            done = [self._settle_one(conn, o, now, deltas) for o in outcomes]
            deltas.write(conn)
            return done

        return self._db.run(run)

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
                (new_state.value, o.at, *error_params(o.error), now, seq),
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
            (*error_params(err), now, clear_token, seq),
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
            " WHERE seq = ?", (*error_params(err), now, seq),
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
            (now, outcome, *error_params(error), mid),
        )

    def progress(self, lease: Lease, done: float, total: float | None, note: str | None) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE messages SET progress_done = ?, progress_total = ?, progress_note = ?,"
                " progress_updated_at = ? WHERE id = ? AND state = 'running' AND token = ?",
                (done, total, note, self.clock(), lease.message_id, lease.token),
            )
            return cur.rowcount > 0

        return self._db.run(run)

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
            now - WORKER_FORGET_S,
        )
        return recovered

    def _recover_leases(self, now: float, limit: int) -> list[tuple[str, State]]:
        # A read first, so that idle workers running this every few seconds never queue up
        # for the write lock when there is nothing to recover.
        probe = ("SELECT 1 FROM messages INDEXED BY messages_running"
                 " WHERE state = 'running' AND lease_expires_at < ? LIMIT 1")
        if not self._db.run(lambda c: c.execute(probe, (now,)).fetchone(), write=False):
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

        return self._db.run(run)

    def _cleanup(self, probe: str, change: str, cutoff: float, attempts: bool = False) -> None:
        """Apply ``change`` in small transactions until nothing older than ``cutoff`` is left."""
        while self._db.run(lambda c: c.execute(probe, (cutoff,)).fetchone(), write=False):
            def run(conn: sqlite3.Connection) -> int:
                cur = conn.execute(change, (cutoff, CLEANUP_BATCH))
                if not attempts:
                    return cur.rowcount
                gone = [(r[0],) for r in cur.fetchall()]
                conn.executemany("DELETE FROM attempts WHERE message_id = ?", gone)
                return len(gone)

            if self._db.run(run) < CLEANUP_BATCH:
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

        return self._db.run(run)

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

        return self._db.run(run)

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

        return self._db.run(run)

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
        """Poll cheaply until work may be ready, with backoff from 5 ms to 100 ms.

        There is no server to block on: ``PRAGMA data_version`` moves when another
        connection commits, and then (or when a scheduled eta passes) one indexed query says
        whether anything in ``queues`` is ready. Commits to other queues do not wake it.
        """
        wanted = list(dict.fromkeys(queues))
        deadline = time.monotonic() + max(timeout, 0.0)
        version = self._db.data_version()
        ready, next_eta = self._readiness(wanted)
        if ready:
            return True
        delay = 0.005
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            pause = min(delay, remaining)
            if next_eta is not None:
                pause = min(pause, max(next_eta - self.clock(), 0.001))
            time.sleep(pause)
            delay = min(delay * 2, 0.1)
            current = self._db.data_version()
            due = next_eta is not None and next_eta <= self.clock()
            if current != version or due:
                if current != version:
                    version, delay = current, 0.005
                ready, next_eta = self._readiness(wanted)
                if ready:
                    return True

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

        return self._db.run(run, write=False)

    # -- reads ----------------------------------------------------------------------------

    def message(self, message_id: str) -> MessageInfo | None:
        found = self._db.run(lambda c: reads.messages(c, "id = ?", (message_id,)), write=False)
        return found[0] if found else None

    def messages(
        self, *, queue: str | None = None, state: State | None = None, limit: int = 100
    ) -> list[MessageInfo]:
        where, params = [], []
        if queue is not None:
            where.append("queue = ?")
            params.append(queue)
        if state is not None:
            where.append("state = ?")
            params.append(State(state).value)
        return self._db.run(lambda c: reads.messages(
            c, " AND ".join(where), (*params, max(limit, 0)), "ORDER BY id LIMIT ?",
        ), write=False)

    def queue_stats(self) -> list[QueueStats]:
        return self._db.run(reads.queue_stats, write=False)

    def job(self, job_id: str) -> JobInfo | None:
        return self._db.run(lambda c: reads.job(c, job_id), write=False)

    def jobs(self, limit: int = 50) -> list[JobInfo]:
        return self._db.run(lambda c: reads.jobs(c, limit), write=False)

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

        self._db.run(run)

    def unregister_worker(self, worker_id: str) -> None:
        self._db.run(lambda c: c.execute("DELETE FROM workers WHERE id = ?", (worker_id,)))

    def workers(self) -> list[WorkerInfo]:
        return self._db.run(lambda c: reads.workers(c, self.clock()), write=False)

    def close(self) -> None:
        """Close this process's connections; the backend may not be used afterwards."""
        self._db.close()
