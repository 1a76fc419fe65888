"""RedisBackend: the contract over the Lua scripts beside it (the design: see the package)."""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, replace
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import redis

from ...errors import ConfigurationError
from ...net import ConnectionSettings, SocketKeepalive, read_keepalive
from ...states import State, job_state
from .. import redact
from ..base import (
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
from . import codec
from .codec import opt, t
from .scripts import Call, Scripts

_SCRIPTS = Scripts()
_BATCH = 500  # messages per script call: keeps each script short, so Redis stays responsive
_STATES = tuple(State)
_OWN_OPTIONS = ("prefix", "retention", "dead_retention")  # the rest go to redis-py


class RedisBackend(BackendBase):
    """The backend contract on Redis (standalone; keys laid out for Cluster)."""

    capabilities = frozenset({"blocking_wait", "multi_host"})

    def __init__(
        self,
        url: str,
        *,
        clock: Clock = time.time,
        prefix: str | None = None,
        settings: ConnectionSettings | None = None,
        wait_block_seconds: float = 5.0,
        retention: float | None = None,
        dead_retention: float | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ConfigurationError(
                f"{redact(url)!r} is not a Redis URL; use redis://, rediss:// or unix://"
            )
        query = parse_qsl(parts.query, keep_blank_values=True)
        prefix = prefix or dict(query).get("prefix") or "stalwart"
        if "{" in prefix or "}" in prefix:
            raise ConfigurationError(f"Redis key prefix {prefix!r} may not contain '{{' or '}}'")
        given = dict(query)
        self.retention = _seconds("retention", retention, given.get("retention"))
        self.dead_retention = _seconds(
            "dead_retention", dead_retention, given.get("dead_retention"))
        rest = urlencode([(k, v) for k, v in query if k not in _OWN_OPTIONS])
        # Built by hand: urlunsplit drops the '//' of 'unix:///path' that redis-py requires.
        server_url = f"{parts.scheme}://{parts.netloc}{parts.path}" + (f"?{rest}" if rest else "")
        self.url = redact(url)
        self.clock = clock
        self.prefix = prefix
        self.settings = settings or ConnectionSettings()
        # One blocking call never outlasts a firewall's idle limit nor the socket timeout.
        self.wait_block_seconds = max(0.1, min(float(wait_block_seconds), 10.0))
        kwargs = self.settings.redis_kwargs()
        if parts.scheme == "unix":  # no TCP on a local socket: nothing to keep alive
            kwargs.pop("socket_keepalive")
            kwargs.pop("socket_keepalive_options")
        self._pool = redis.ConnectionPool.from_url(server_url, **kwargs)
        blocking = dict(kwargs, socket_timeout=max(
            float(kwargs["socket_timeout"]), self.wait_block_seconds + 10.0))
        self._blocking_pool = redis.ConnectionPool.from_url(server_url, **blocking)
        # Typed Any: redis-py's stubs cannot tell that replies are bytes (decode_responses off).
        self._r: Any = redis.Redis(connection_pool=self._pool)
        self._rb: Any = redis.Redis(connection_pool=self._blocking_pool)
        self._g = "{" + prefix + "}"
        self._etas: dict[str, float | None] = {}  # queue -> earliest eta its last claim saw
        self._closed = threading.Event()

    # -- keys -----------------------------------------------------------------------------

    def _base(self, queue: str) -> str:
        return "{" + self.prefix + ":" + queue + "}"

    def _call(self, script: str, queue: str, now: str, *args: Any) -> Call:
        base = self._base(queue)
        return Call(script, base + ":stats", (base, now, *args))

    def _run(self, calls: Sequence[Call]) -> list[Any]:
        return _SCRIPTS.run(self._r, calls)

    @staticmethod
    def _queue_of(lease: Lease) -> str | None:
        _, dot, queue = lease.token.partition(".")
        return queue if dot else None

    def _now(self) -> tuple[float, str]:
        now = float(self.clock())
        return now, t(now)

    def _queues(self) -> list[str]:
        return sorted(q.decode() for q in self._r.smembers(self._g + ":queues"))

    def _locate(self, ids: Sequence[str]) -> list[str | None]:
        """The queue of each message id, or None when unknown."""
        if not ids:
            return []
        found = self._r.hmget(self._g + ":idx", list(ids))
        return [None if q is None else q.decode() for q in found]

    # -- writes -----------------------------------------------------------------------------

    def enqueue(self, messages: Sequence[NewMessage], job: NewJob | None = None) -> list[str]:
        """Reserve and store each chunk of ``messages`` in one script call (store.lua)."""
        if not messages:
            return []
        _, now = self._now()
        ids, _ = self._resolve("store", messages, job, now)
        return ids

    def _reserve(
        self, messages: Sequence[NewMessage], job: NewJob | None, now: str
    ) -> tuple[list[str], list[NewMessage]]:
        """Enqueue's first step alone (reserve.lua): each message's resolved id, and what to store.

        With ``_enqueue_calls`` for the second step, these are the two calls enqueue made
        before store.lua; the tests stop between them to leave what a producer that died
        there leaves, which enqueue must still complete.
        """
        return self._resolve("reserve", messages, job, now)

    def _resolve(
        self, script: str, messages: Sequence[NewMessage], job: NewJob | None, now: str
    ) -> tuple[list[str], list[NewMessage]]:
        """Run ``script`` (reserve or store) over ``messages``: resolved ids, and what is kept.

        A message whose id or key was reserved first by another, not yet stored, is stored
        under that reservation's id and queue (see reserve.lua). A batch longer than one
        script call goes a chunk at a time, each call told which ids an earlier chunk
        reserved, so that a later message with the same id or key resolves to that earlier one.
        """
        named = ["", "", ""] if job is None else [
            job.id, job.name, t(job.created_at) if job.created_at else ""]
        ids: list[str] = []
        keep: list[NewMessage] = []
        reserved: set[str] = set()
        holders: dict[str, str] = {}  # idempotency key -> the id this batch resolved it to
        for chunk in _chunks(messages, _BATCH):
            pending: set[str] = set()
            for m in chunk:
                if m.id in reserved:
                    pending.add(m.id)
                if m.idempotency_key is not None and m.idempotency_key in holders:
                    pending.add(holders[m.idempotency_key])
            head = [self._g, now, *named, str(len(pending)), *pending]
            [flat] = self._run([self._reserve_call(script, head, chunk)])
            for m, answer in zip(chunk, flat, strict=True):
                if answer != 1:  # [resolved id, flag, queue]: see reserve.lua
                    rid, flag = answer[0].decode(), answer[1]
                    ids.append(rid)
                    if not flag:
                        continue
                    key = m.idempotency_key if flag == 1 else None
                    m = replace(m, id=rid, queue=answer[2].decode(), idempotency_key=key)
                else:
                    ids.append(m.id)
                keep.append(m)
                reserved.add(m.id)
                if m.idempotency_key is not None:
                    holders[m.idempotency_key] = m.id
        return ids, keep

    def _reserve_call(self, script: str, head: list[Any], chunk: Sequence[NewMessage]) -> Call:
        """One reserve.lua or store.lua call over ``chunk``.

        store.lua takes each message's content too, and writes in the slot of each queue the
        chunk names: those queues' keys are declared beside the store-wide one.
        """
        args = list(head)
        if script == "reserve":
            for m in chunk:
                args += _reservation(m)
            return Call("reserve", self._g + ":idx", args)
        for m in chunk:
            args += [*_reservation(m), *_content(m), t(m.created_at)]
        queues = [self._base(q) + ":stats" for q in dict.fromkeys(m.queue for m in chunk)]
        return Call("store", self._g + ":idx", args, queues)

    def _enqueue_calls(self, messages: Sequence[NewMessage], now: str) -> list[Call]:
        """Enqueue's second step alone (enqueue.lua, per queue): see ``_reserve``."""
        calls = []
        for queue, group in _by_queue(messages, lambda m: m.queue).items():
            for chunk in _chunks(group, _BATCH):
                args: list[Any] = [queue]
                for m in chunk:
                    args += [m.id, *_content(m), opt(m.job_id), opt(m.idempotency_key),
                             t(m.created_at)]
                calls.append(self._call("enqueue", queue, now, *args))
        return calls

    def claim(
        self, queues: Sequence[str], limit: int, lease_seconds: float, worker_id: str
    ) -> list[Delivery]:
        names = list(dict.fromkeys(queues))
        if limit <= 0 or not names:
            return []
        now, nowt = self._now()
        expires = now + lease_seconds
        shares: dict[str, int]
        if len(names) == 1:
            shares = {names[0]: limit}
        else:
            heads = self._run([self._call("heads", q, nowt, str(limit)) for q in names])
            candidates = sorted(
                (float(flat[i + 1]), flat[i].decode(), q)
                for q, flat in zip(names, heads, strict=True)
                for i in range(0, len(flat), 2)
            )
            shares = dict(Counter(q for _, _, q in candidates[:limit]))
        calls = [self._claim_call(q, n, nowt, expires, worker_id) for q, n in shares.items()]
        out = []
        for q, reply in zip(shares, self._run(calls), strict=True):
            out += self._deliveries(q, reply, expires)
        out.sort(key=lambda d: (-d.priority, d.lease.message_id))
        return out

    def _claim_call(self, queue: str, n: int, nowt: str, expires: float, worker_id: str) -> Call:
        return self._call("claim", queue, nowt, str(n), t(expires), worker_id,
                          secrets.token_hex(12), "." + queue)

    def _deliveries(self, queue: str, reply: list[Any], expires: float) -> list[Delivery]:
        """A claim's deliveries; the earliest eta it saw is kept for the next wait's bound."""
        rows, eta = reply
        self._etas[queue] = float(eta) if eta else None
        return [
            Delivery(Lease(mid.decode(), token.decode()), task.decode(), queue, body, int(prio),
                     int(n), int(retries), int(maxd), job.decode() or None, expires)
            for mid, task, body, prio, n, retries, maxd, job, token in rows
        ]

    def extend(self, leases: Sequence[Lease], lease_seconds: float) -> list[Lease]:
        now, nowt = self._now()
        expires = t(now + lease_seconds)
        held = [False] * len(leases)
        groups = _by_queue(range(len(leases)), lambda i: self._queue_of(leases[i]))
        groups.pop(None, None)
        calls, order = [], []
        for q, idx in groups.items():
            args = [expires]
            for i in idx:
                args += [leases[i].message_id, leases[i].token]
            calls.append(self._call("extend", q, nowt, *args))
            order.append(idx)
        for idx, reply in zip(order, self._run(calls), strict=True):
            for i, ok in zip(idx, reply, strict=True):
                held[i] = bool(ok)
        return [lease for lease, ok in zip(leases, held, strict=True) if not ok]

    def settle(self, outcomes: Sequence[Outcome]) -> list[bool]:
        now, nowt = self._now()
        calls, order = self._settle_calls(outcomes, now, nowt)
        return _applied(len(outcomes), order, self._run(calls))

    def _settle_calls(self, outcomes: Sequence[Outcome], now: float, nowt: str
                      ) -> tuple[list[Call], list[list[int]]]:
        """One settle call per queue, and which outcomes each carries."""
        groups = _by_queue(range(len(outcomes)), lambda i: self._queue_of(outcomes[i].lease))
        groups.pop(None, None)
        calls, order = [], []
        for q, idx in groups.items():
            args: list[Any] = []
            for i in idx:
                args += _outcome_args(outcomes[i], now)
            calls.append(self._call("settle", q, nowt, *args))
            order.append(idx)
        return calls, order

    def progress(self, lease: Lease, done: float, total: float | None, note: str | None) -> bool:
        queue = self._queue_of(lease)
        if queue is None:
            return False
        now, nowt = self._now()
        doc = codec.progress_json(done, total, note, now)
        call = self._call("progress", queue, nowt, lease.message_id, lease.token, doc)
        return bool(self._run([call])[0])

    def recover_expired(self, limit: int = 1000) -> list[tuple[str, State]]:
        now, nowt = self._now()
        queues = self._queues()
        if not queues:
            return []
        if len(queues) == 1:
            shares = {queues[0]: max(limit, 0)}
        else:
            pipe = self._r.pipeline(transaction=False)
            for q in queues:
                pipe.zcount(self._base(q) + ":running", "-inf", "(" + nowt)
            shares, left = {}, max(limit, 0)
            for q, n in zip(queues, pipe.execute(), strict=True):
                shares[q] = min(int(n), left)
                left -= shares[q]
        cutoffs = [
            "" if keep is None else t(now - keep) for keep in (self.retention, self.dead_retention)
        ]
        calls = [self._call("recover", q, nowt, str(n), *cutoffs) for q, n in shares.items()]
        replies = self._run(calls)
        self._unindex({c.args[0]: pending for c, (_, pending) in zip(calls, replies, strict=True)})
        return [
            (flat[i].decode(), State(flat[i + 1].decode()))
            for flat, _ in replies for i in range(0, len(flat), 2)
        ]

    def cancel(self, ids: Sequence[str]) -> list[str]:
        _, nowt = self._now()
        where = self._locate(ids)
        groups = _by_queue(range(len(ids)), lambda i: where[i])
        groups.pop(None, None)
        done = [False] * len(ids)
        calls = [self._call("cancel", q, nowt, *(ids[i] for i in idx)) for q, idx in groups.items()]
        for idx, reply in zip(groups.values(), self._run(calls), strict=True):
            for i, ok in zip(idx, reply, strict=True):
                done[i] = bool(ok)
        return [mid for mid, ok in zip(ids, done, strict=True) if ok]

    def requeue_dead(self, ids: Sequence[str] | None = None, queue: str | None = None) -> int:
        return sum(int(r) for _, r in self._dead_batches("requeue", ids, queue))

    def purge_dead(self, ids: Sequence[str] | None = None, queue: str | None = None) -> int:
        count, tombstones = 0, {}
        for call, (n, pending) in self._dead_batches("purge", ids, queue):
            count += int(n)
            tombstones[call.args[0]] = pending
        self._unindex(tombstones)
        return count

    def _unindex(self, tombstones: dict[str, list[bytes]]) -> None:
        """Drop deleted messages from the store-wide indexes, then their tombstones.

        ``tombstones`` maps a queue's key base to the entries its script reported pending.
        """
        entries = [e for pending in tombstones.values() for e in pending]
        if not entries:
            return
        self._run([Call("unindex", self._g + ":idx", [self._g, *entries])])
        pipe = self._r.pipeline(transaction=False)
        for base, pending in tombstones.items():
            for e in pending:
                pipe.lrem(base + ":purged", 1, e)
        pipe.execute()

    def _dead_batches(
        self, script: str, ids: Sequence[str] | None, queue: str | None
    ) -> list[tuple[Call, Any]]:
        """(call, reply) of ``script`` over the chosen dead messages, a bounded batch per call."""
        _, nowt = self._now()
        if ids is not None:
            unique = list(dict.fromkeys(ids))
            where = self._locate(unique)
            groups = _by_queue(range(len(unique)), lambda i: where[i])
            groups.pop(None, None)
            calls = [
                self._call(script, q, nowt, "ids", *(unique[i] for i in chunk))
                for q, idx in groups.items() if queue is None or q == queue
                for chunk in _chunks(idx, _BATCH)
            ]
            return list(zip(calls, self._run(calls), strict=True))
        pending = [queue] if queue is not None else self._queues()
        out: list[tuple[Call, Any]] = []
        while pending:
            calls = [self._call(script, q, nowt, "all", str(_BATCH)) for q in pending]
            replies = self._run(calls)
            out += zip(calls, replies, strict=True)
            size = (lambda r: r) if script == "requeue" else (lambda r: r[0])
            pending = [q for q, r in zip(pending, replies, strict=True) if size(r) >= _BATCH]
        return out

    def exchange(
        self, outcomes: Sequence[Outcome], queues: Sequence[str], limit: int,
        lease_seconds: float, worker_id: str, wait: float = 0.0,
    ) -> tuple[list[bool], list[Delivery]]:
        """Settle, wait (a blocking pop) and claim in one pipeline: one round trip.

        The server runs the claim the moment the pop returns, so a worker woken by an enqueue
        has its deliveries without asking again. The claim's clock is read when it is sent;
        its lease runs from the end of the longest possible block, so it is never shorter
        than ``lease_seconds``. Several queues, or an eta due within the wait, take the
        stepwise path.
        """
        names = list(dict.fromkeys(queues))
        if len(names) != 1 or limit <= 0:
            return BackendBase.exchange(self, outcomes, names, limit, lease_seconds, worker_id,
                                        wait)
        (queue,) = names
        base = self._base(queue)
        block = min(max(wait, 0.0), self.wait_block_seconds)
        if block > 0:
            # The earliest eta as the last claim here saw it (an earlier one enqueued since
            # pushes an 's' wake token), else asked for now.
            if queue in self._etas:
                eta = self._etas[queue]
            else:
                [head] = self._r.zrange(base + ":sched", 0, 0, withscores=True) or [None]
                eta = None if head is None else head[1]
            if eta is not None and eta - self.clock() <= block:
                # A due eta ends this wait: the claim after it must read the clock then,
                # so it goes step by step (the stepwise wait wakes at the eta).
                return BackendBase.exchange(self, outcomes, names, limit, lease_seconds,
                                            worker_id, wait)
        now, nowt = self._now()
        settle_calls, order = self._settle_calls(outcomes, now, nowt)
        expires = now + max(block, 0.0) + lease_seconds
        calls = [*settle_calls, self._claim_call(queue, limit, nowt, expires, worker_id)]
        pop = (base + ":wake", max(block, 0.01)) if block > 0 else None
        replies = _SCRIPTS.run(self._rb if pop else self._r, calls, pop)
        applied = _applied(len(outcomes), order, replies[:-1])
        return applied, self._deliveries(queue, replies[-1], expires)

    def wait(self, queues: Sequence[str], timeout: float) -> bool:
        """Block on the queues' wake lists, at most ``wait_block_seconds`` per call.

        Returns True when woken by new work or when the earliest scheduled eta is due.
        """
        names = list(dict.fromkeys(queues))
        deadline = time.monotonic() + max(timeout, 0.0)
        wake_keys = [self._base(q) + ":wake" for q in names]
        if not names:
            time.sleep(max(timeout, 0.0))
            return False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            pipe = self._r.pipeline(transaction=False)
            for q in names:
                pipe.zrange(self._base(q) + ":sched", 0, 0, withscores=True)
            etas = [s for head in pipe.execute() for _, s in head]
            due_in = min(etas) - self.clock() if etas else None
            if due_in is not None and due_in <= 0:
                return True
            block = min(remaining, self.wait_block_seconds)
            if due_in is not None:
                block = min(block, due_in)
            popped = self._rb.blpop(wake_keys, timeout=max(block, 0.01))
            if popped is not None and popped[1] == b"r":
                return True
            # 's' (the earliest eta changed) or a timeout: look at the etas again.

    # -- reads -------------------------------------------------------------------------------

    def message(self, message_id: str) -> MessageInfo | None:
        queue = self._locate([message_id])[0]
        if queue is None:
            return None
        return self._read([(message_id, queue)])[0]

    def _read(self, refs: Sequence[tuple[str, str]]) -> list[MessageInfo | None]:
        pipe = self._r.pipeline(transaction=False)
        for mid, q in refs:
            base = self._base(q)
            pipe.hgetall(f"{base}:m:{mid}")
            pipe.lrange(f"{base}:a:{mid}", 0, -1)
        replies = pipe.execute()
        return [
            codec.message_from(h, a) if h else None
            for h, a in zip(replies[0::2], replies[1::2], strict=True)
        ]

    def messages(
        self, *, queue: str | None = None, state: State | None = None, limit: int = 100
    ) -> list[MessageInfo]:
        if limit <= 0:
            return []
        queues = [queue] if queue is not None else self._queues()
        states = [state] if state is not None else list(_STATES)
        pipe = self._r.pipeline(transaction=False)
        pairs = [(q, s) for q in queues for s in states]
        for q, s in pairs:
            pipe.zrange(f"{self._base(q)}:s:{s.value}", 0, limit - 1)
        refs = sorted(
            (mid.decode(), q) for (q, _), ids in zip(pairs, pipe.execute(), strict=True)
            for mid in ids
        )[:limit]
        return [info for info in self._read(refs) if info is not None]

    def queue_stats(self) -> list[QueueStats]:
        queues = self._queues()
        pipe = self._r.pipeline(transaction=False)
        for q in queues:
            pipe.hgetall(self._base(q) + ":stats")
        return [QueueStats(q, _counts([h])) for q, h in zip(queues, pipe.execute(), strict=True)]

    def job(self, job_id: str) -> JobInfo | None:
        pipe = self._r.pipeline(transaction=False)
        pipe.hget(self._g + ":jobs", job_id)
        pipe.smembers(f"{self._g}:jq:{job_id}")
        meta, members = pipe.execute()
        if meta is None:
            return None
        doc = json.loads(meta)
        queues = sorted(q.decode() for q in members)
        pipe = self._r.pipeline(transaction=False)
        for q in queues:
            pipe.hgetall(f"{self._base(q)}:j:{job_id}")
            pipe.smembers(f"{self._base(q)}:jp:{job_id}")
        replies = pipe.execute()
        counts = _counts(replies[0::2])
        refs = sorted((mid.decode(), q) for q, ids in zip(queues, replies[1::2], strict=True)
                      for mid in ids)
        progress: list[tuple[str, Progress]] = []
        if refs:
            pipe = self._r.pipeline(transaction=False)
            for mid, q in refs:
                pipe.hmget(f"{self._base(q)}:m:{mid}", "state", "progress")
            for (mid, _), (st, doc_p) in zip(refs, pipe.execute(), strict=True):
                p = codec.progress_from(doc_p)
                if st == b"running" and p is not None:
                    progress.append((mid, p))
        state = job_state(counts.accepted, counts.succeeded, counts.dead, counts.cancelled)
        return JobInfo(job_id, doc["name"], float(doc["created_at"]), counts, state,
                       tuple(progress))

    def jobs(self, limit: int = 50) -> list[JobInfo]:
        if limit <= 0:
            return []
        newest = self._r.zrevrange(self._g + ":jobs_t", 0, limit - 1)
        return [info for j in newest if (info := self.job(j.decode())) is not None]

    # -- worker registry ----------------------------------------------------------------------

    def register_worker(self, info: WorkerInfo, ttl: float) -> None:
        now, nowt = self._now()
        doc = asdict(info)
        doc["last_seen"] = now
        args = [self._g, nowt, info.id, json.dumps(doc), t(now + ttl)]
        self._run([Call("register", self._g + ":workers", args)])

    def unregister_worker(self, worker_id: str) -> None:
        pipe = self._r.pipeline(transaction=False)
        pipe.hdel(self._g + ":workers", worker_id)
        pipe.zrem(self._g + ":workers_t", worker_id)
        pipe.execute()

    def workers(self) -> list[WorkerInfo]:
        _, nowt = self._now()
        ids = self._r.zrangebyscore(self._g + ":workers_t", nowt, "+inf")
        if not ids:
            return []
        docs = self._r.hmget(self._g + ":workers", ids)
        out = []
        for doc in docs:
            if doc is not None:
                d = json.loads(doc)
                d["queues"] = tuple(d["queues"])
                out.append(WorkerInfo(**d))
        return out

    # -- connections ---------------------------------------------------------------------------

    def connections(self) -> list[SocketKeepalive]:
        """Keepalive as the kernel reports it for every socket the pools hold now."""
        out = []
        for pool in (self._pool, self._blocking_pool):
            with pool._lock:
                conns = [*pool._available_connections, *pool._in_use_connections]
            for conn in conns:
                sock = getattr(conn, "_sock", None)
                if sock is not None and sock.fileno() >= 0:
                    out.append(read_keepalive(sock))
        return out

    def server_info(self) -> dict[str, Any]:
        """Durability settings, version and clock of the server, for ``doctor``.

        ``clock_skew`` is this host's clock minus the server's, in seconds.
        """
        out: dict[str, Any] = {}
        try:
            config = self._r.config_get("appendonly", "appendfsync", "save", "maxmemory-policy")
        except redis.ResponseError:  # CONFIG is often disabled on managed services
            config = {}
        persistence = self._r.info("persistence")
        for name in ("appendonly", "appendfsync", "save", "maxmemory-policy"):
            value = config.get(name)
            if value is None and name == "appendonly" and "aof_enabled" in persistence:
                value = "yes" if persistence["aof_enabled"] else "no"
            out[name] = value
        before = time.time()
        secs, usecs = self._r.time()
        after = time.time()
        server_time = secs + usecs / 1e6
        out["time"] = server_time
        out["clock_skew"] = (before + after) / 2 - server_time
        out["version"] = self._r.info("server").get("redis_version")
        return out

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._r.close()
        self._rb.close()
        self._pool.disconnect()
        self._blocking_pool.disconnect()


# -- helpers ----------------------------------------------------------------------------------


def _seconds(name: str, given: float | None, text: str | None) -> float | None:
    """A duration option from the constructor or the URL; None keeps rows for ever."""
    value: Any = given if given is not None else text
    if value is None or value == "":
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        raise ConfigurationError(f"Redis option {name}={value!r} must be seconds (>= 0)")
    return seconds


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _by_queue(items: Iterable[Any], queue_of: Any) -> dict[Any, list[Any]]:
    """Items grouped by queue, in first-seen order of queue and original order within."""
    groups: dict[Any, list[Any]] = defaultdict(list)
    for item in items:
        groups[queue_of(item)].append(item)
    return dict(groups)


def _applied(n: int, order: Sequence[Sequence[int]], replies: Sequence[Any]) -> list[bool]:
    """Each of ``n`` outcomes' answer from its queue's settle reply (False: unknown queue)."""
    applied = [False] * n
    for idx, reply in zip(order, replies, strict=True):
        for i, ok in zip(idx, reply, strict=True):
            applied[i] = bool(ok)
    return applied


def _reservation(m: NewMessage) -> list[Any]:
    """Id, queue, idempotency key and job, as reserve.lua takes them."""
    return [m.id, m.queue, opt(m.idempotency_key), opt(m.job_id)]


def _content(m: NewMessage) -> list[Any]:
    """Task, body, priority, eta ('' for none) and max_deliveries, as the scripts take them."""
    return [m.task, m.body, str(int(m.priority)), "" if m.eta is None else t(m.eta),
            str(int(m.max_deliveries))]


def _outcome_args(o: Outcome, now: float) -> list[Any]:
    lease = o.lease
    if isinstance(o, Complete):
        expiry = "" if o.result_ttl is None else t(now + o.result_ttl)
        has = "1" if o.result is not None else "0"
        return ["complete", lease.message_id, lease.token, has, o.result or "", expiry]
    if isinstance(o, Reschedule):
        return ["reschedule", lease.message_id, lease.token, t(o.at), codec.error_json(o.error), ""]
    if isinstance(o, Bury):
        return ["bury", lease.message_id, lease.token, "", codec.error_json(o.error), ""]
    if isinstance(o, Release):
        err = o.error or ErrorInfo("worker-lost")
        started = "1" if o.started else "0"
        return ["release", lease.message_id, lease.token, started, codec.error_json(err),
                err.reason]
    raise TypeError(f"unknown outcome {o!r}; settle takes Complete, Reschedule, Bury, Release")


def _counts(hashes: Iterable[dict[bytes, bytes]]) -> Counts:
    total: Counter[str] = Counter()
    for h in hashes:
        for k, v in h.items():
            total[k.decode()] += int(v)
    return Counts(
        accepted=total["accepted"], queued=total["queued"], scheduled=total["scheduled"],
        running=total["running"], succeeded=total["succeeded"], dead=total["dead"],
        cancelled=total["cancelled"],
    )
