"""The SQLite backend and the in-memory model, driven by the same random operations.

Both get the same fake clock and the same inputs; every answer and, after every step, the
whole observable state (messages with attempts, queue and job counters, workers) must be
equal. Lease tokens are random per backend, so each side keeps its own tokens, indexed by
claim, and outcomes name a claim rather than a token.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from stalwart.backends.base import (
    Bury,
    Complete,
    ErrorInfo,
    Lease,
    NewJob,
    NewMessage,
    Release,
    Reschedule,
    WorkerInfo,
)
from stalwart.backends.sqlite import SQLiteBackend
from stalwart.states import State
from stalwart.testing.model import ModelBackend

QUEUES = ("a", "b", "c")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _strip_tokens(value: Any) -> Any:
    """Deliveries without their tokens (which differ by construction)."""
    if isinstance(value, list):
        return [_strip_tokens(v) for v in value]
    if hasattr(value, "lease"):
        return replace(value, lease=Lease(value.lease.message_id, "-"))
    if isinstance(value, Lease):
        return Lease(value.message_id, "-")
    return value


class Pair:
    """Runs each operation on both backends and asserts the answers agree."""

    def __init__(self, path: Path, seed: int) -> None:
        self.clock = Clock()
        self.rng = random.Random(seed)
        self.model = ModelBackend(clock=self.clock)
        self.sqlite = SQLiteBackend(f"sqlite:///{path}", clock=self.clock)
        self.tokens: dict[str, tuple[list[str], list[str]]] = {}  # id -> (model, sqlite)
        self.next_id = 0
        self.keys: list[str] = []

    def both(self, name: str, *args: Any, **kwargs: Any) -> Any:
        expected = getattr(self.model, name)(*args, **kwargs)
        got = getattr(self.sqlite, name)(*args, **kwargs)
        assert _strip_tokens(got) == _strip_tokens(expected), name
        return expected, got

    def leases(self, mid: str, which: int) -> tuple[Lease, Lease]:
        mt, st = self.tokens[mid]
        return Lease(mid, mt[which]), Lease(mid, st[which])

    # -- operations ---------------------------------------------------------------------

    def enqueue(self) -> None:
        rng = self.rng
        batch = []
        job = None
        if rng.random() < 0.3:
            job_id = f"job{rng.randrange(4)}"
            job = NewJob(job_id, f"name-{job_id}", created_at=self.clock.now) \
                if rng.random() < 0.7 else None
        else:
            job_id = None
        for _ in range(rng.randrange(1, 6)):
            if self.next_id and rng.random() < 0.1:
                mid = f"m{rng.randrange(self.next_id):06d}"  # an id already stored
            else:
                mid = f"m{self.next_id:06d}"
                self.next_id += 1
            key = None
            if rng.random() < 0.2:
                key = rng.choice(self.keys) if self.keys and rng.random() < 0.5 \
                    else f"k{rng.randrange(10_000)}"
                self.keys.append(key)
            eta = None
            if rng.random() < 0.3:
                eta = self.clock.now + rng.choice([-5.0, 0.0, 3.0, 30.0])
            batch.append(NewMessage(
                id=mid, task="t", queue=rng.choice(QUEUES), body=mid.encode(),
                priority=rng.randrange(3), eta=eta, max_deliveries=rng.randrange(1, 4),
                job_id=job_id, idempotency_key=key, created_at=self.clock.now,
            ))
        self.both("enqueue", batch, job)

    def claim(self) -> None:
        queues = self.rng.sample(QUEUES, self.rng.randrange(1, 4))
        limit = self.rng.randrange(0, 5)
        expected, got = self.both("claim", queues, limit, self.rng.choice([5.0, 20.0]), "w1")
        for e, g in zip(expected, got, strict=True):
            mt, st = self.tokens.setdefault(e.lease.message_id, ([], []))
            mt.append(e.lease.token)
            st.append(g.lease.token)

    def _pick_claim(self) -> tuple[Lease, Lease] | None:
        if not self.tokens:
            return None
        running = [m.id for m in self.model.messages(state=State.RUNNING, limit=100_000)]
        if running and self.rng.random() < 0.75:
            mid = self.rng.choice(running)
        else:
            mid = self.rng.choice(sorted(self.tokens))
        n = len(self.tokens[mid][0])
        which = n - 1 if self.rng.random() < 0.8 else self.rng.randrange(n)
        return self.leases(mid, which)

    def settle(self) -> None:
        pairs = []
        for _ in range(self.rng.randrange(1, 4)):
            picked = self._pick_claim()
            if picked is not None:
                pairs.append(picked)
        if not pairs:
            return
        made_m, made_s = [], []
        for lm, ls in pairs:
            kind = self.rng.randrange(5)
            err = ErrorInfo(self.rng.choice(["exception", "fail", "time-limit"]), "E", "m", "tb")
            if kind == 0:
                ttl = self.rng.choice([None, 10.0, 1000.0])
                made = (Complete(lm, '"r"', ttl), Complete(ls, '"r"', ttl))
            elif kind == 1:
                at = self.clock.now + self.rng.choice([-1.0, 0.0, 7.0])
                made = (Reschedule(lm, at, err), Reschedule(ls, at, err))
            elif kind == 2:
                made = (Bury(lm, err), Bury(ls, err))
            elif kind == 3:
                made = (Release(lm, False), Release(ls, False))
            else:
                e = err if self.rng.random() < 0.5 else None
                made = (Release(lm, True, e), Release(ls, True, e))
            made_m.append(made[0])
            made_s.append(made[1])
        assert self.sqlite.settle(made_s) == self.model.settle(made_m)

    def extend(self) -> None:
        pairs = [p for p in (self._pick_claim() for _ in range(3)) if p is not None]
        lost_m = self.model.extend([m for m, _ in pairs], 15.0)
        lost_s = self.sqlite.extend([s for _, s in pairs], 15.0)
        assert _strip_tokens(lost_s) == _strip_tokens(lost_m)

    def progress(self) -> None:
        picked = self._pick_claim()
        if picked is not None:
            done = float(self.rng.randrange(10))
            assert self.sqlite.progress(picked[1], done, 10.0, "n") == \
                self.model.progress(picked[0], done, 10.0, "n")

    def cancel(self) -> None:
        ids = [f"m{self.rng.randrange(self.next_id + 1):06d}" for _ in range(3)]
        self.both("cancel", ids)

    def requeue_dead(self) -> None:
        if self.rng.random() < 0.5:
            self.both("requeue_dead", queue=self.rng.choice([None, *QUEUES]))
        else:
            ids = list(dict.fromkeys(
                f"m{self.rng.randrange(self.next_id + 1):06d}" for _ in range(3)))
            self.both("requeue_dead", ids)

    def purge_dead(self) -> None:
        ids = list(dict.fromkeys(f"m{self.rng.randrange(self.next_id + 1):06d}" for _ in range(2)))
        self.both("purge_dead", ids if self.rng.random() < 0.7 else None)

    def recover(self) -> None:
        self.both("recover_expired", self.rng.choice([1, 2, 1000]))

    def tick(self) -> None:
        self.clock.now += self.rng.choice([0.5, 2.0, 4.0, 12.0])

    def workers(self) -> None:
        wid = f"w{self.rng.randrange(3)}"
        if self.rng.random() < 0.7:
            info = WorkerInfo(wid, "host", 42, ("a", "b"), 2, "thread", 1.0, 0.0, {"v": 1})
            self.both("register_worker", info, self.rng.choice([5.0, 60.0]))
        else:
            self.both("unregister_worker", wid)

    def check_state(self) -> None:
        self.both("messages", limit=100_000)
        for q in QUEUES:
            self.both("messages", queue=q, limit=3)
        self.both("queue_stats")
        self.both("jobs")
        self.both("workers")
        for stats in self.sqlite.queue_stats():
            assert stats.counts.unaccounted == 0
        for job in self.sqlite.jobs():
            assert job.counts.unaccounted == 0


OPS = [
    ("enqueue", 6), ("claim", 6), ("settle", 6), ("extend", 2), ("progress", 2),
    ("cancel", 1), ("requeue_dead", 1), ("purge_dead", 1), ("recover", 3), ("tick", 4),
    ("workers", 1),
]


@pytest.mark.parametrize("seed", range(12))
def test_random_operations_match_the_model(tmp_path: Path, seed: int) -> None:
    pair = Pair(tmp_path / "eq.db", seed)
    names = [name for name, weight in OPS for _ in range(weight)]
    try:
        for step in range(250):
            op = pair.rng.choice(names)
            getattr(pair, op)()
            if step % 5 == 0:
                pair.check_state()
        pair.check_state()
    finally:
        pair.sqlite.close()
