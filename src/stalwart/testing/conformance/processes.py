"""Many processes on one store: every message completed exactly once, job counters exact.

Each child is a fresh interpreter (``spawn``) that opens the backend by its URL with the
real clock, as separate worker processes do.
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_mod
import random
import time
from collections import Counter
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import pytest

from ...backends import open_backend
from ...backends.base import Bury, Complete, Counts, ErrorInfo, NewJob, Outcome
from ...states import JobState, State
from ..services import SHARED_KINDS
from .checks import assert_conserved, new_message

PROCESSES = 4
CHILD_DEADLINE = 60.0  # seconds; a child that needs longer reports what it has


@dataclass(frozen=True)
class Plan:
    """What each worker process does: claim in batches, "work", settle, recover now and then.

    Every ``slow_every``-th batch the work takes ``slow_seconds``; past ``lease_seconds``
    the lease may be recovered and the message claimed by another process meanwhile.
    """

    queues: tuple[str, ...]
    total: int  # messages in the test: a worker stops once that many are final
    batch: int = 10
    lease_seconds: float = 60.0
    work_seconds: float = 0.001  # lets the other processes interleave
    slow_every: int = 0
    slow_seconds: float = 0.0
    recover_every: int = 10
    leases_outlive_work: bool = True  # then nothing may ever be recovered


def _drain(url: str, plan: Plan, name: str, barrier: Any, results: Any) -> None:
    """Claim and settle until every message of the test is final; report what was done."""
    report: dict[str, Any] = {"worker": name, "completed": [], "claimed": 0, "refused": 0,
                              "recovered": 0, "error": None}
    try:
        backend = open_backend(url)
        try:
            barrier.wait(timeout=60)
            report["start"] = time.time()
            end = time.monotonic() + CHILD_DEADLINE
            rounds = 0
            while time.monotonic() < end:
                rounds += 1
                if rounds % plan.recover_every == 0:  # as every worker does
                    recovered = backend.recover_expired()
                    report["recovered"] += len(recovered)
                    if plan.leases_outlive_work:
                        assert recovered == [], f"recovered leases still held: {recovered}"
                got = backend.claim(list(plan.queues), plan.batch, plan.lease_seconds, name)
                if not got:
                    final = sum(s.counts.succeeded + s.counts.dead
                                for s in backend.queue_stats())
                    if final >= plan.total:
                        break
                    time.sleep(0.005)
                    continue
                report["claimed"] += len(got)
                slow = plan.slow_every and rounds % plan.slow_every == 0
                time.sleep(plan.slow_seconds if slow else plan.work_seconds)
                outcomes: list[Outcome] = [
                    Bury(d.lease, ErrorInfo("fail", message="planned failure"))
                    if b'"fail": true' in d.body else Complete(d.lease, '"ok"')
                    for d in got
                ]
                for d, ok in zip(got, backend.settle(outcomes), strict=True):
                    if ok:
                        report["completed"].append(d.lease.message_id)
                    else:
                        report["refused"] += 1
            report["end"] = time.time()
        finally:
            backend.close()
    except BaseException as exc:  # the parent shows it; a child must always report
        report["error"] = f"{type(exc).__name__}: {exc}"
    results.put(report)


def run_workers(url: str, plan: Plan, processes: int = PROCESSES) -> list[dict[str, Any]]:
    """Start ``processes`` children working through ``plan`` together; return their reports."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    children = [
        ctx.Process(target=_drain, name=f"stress-{n}",
                    args=(url, plan, f"proc-{n}-{os.getpid()}", barrier, results))
        for n in range(processes)
    ]
    for child in children:
        child.start()
    reports = []
    try:
        for _ in children:
            reports.append(results.get(timeout=CHILD_DEADLINE + 60))
    except queue_mod.Empty:
        pytest.fail(f"only {len(reports)} of {processes} worker processes reported")
    finally:
        for child in children:
            child.join(10)
            if child.is_alive():
                child.kill()
                child.join()
    errors = [r["error"] for r in reports if r["error"]]
    assert not errors, f"worker processes failed: {errors}"
    return reports


def _enqueue_all(url: str, ids: list[str], keys: list[str], seed: int, barrier: Any,
                 results: Any) -> None:
    """Enqueue the shared ids and, under fresh ids of this process, the shared keys."""
    report: dict[str, Any] = {"by_key": {}, "error": None}
    try:
        rng = random.Random(seed)
        items = [("id", i) for i in ids] + [("key", k) for k in keys]
        rng.shuffle(items)
        backend = open_backend(url)
        try:
            barrier.wait(timeout=60)
            for start in range(0, len(items), 10):
                chunk = items[start:start + 10]
                batch = [new_message("race", id=v) if kind == "id" else new_message("race", key=v)
                         for kind, v in chunk]
                got = backend.enqueue(batch)
                for (kind, v), mid in zip(chunk, got, strict=True):
                    if kind == "key":
                        report["by_key"][v] = mid
                    else:
                        assert mid == v, f"enqueue of id {v} answered {mid}"
        finally:
            backend.close()
    except BaseException as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
    results.put(report)


def _race_enqueue(url: str, ids: list[str], keys: list[str]) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    children = [ctx.Process(target=_enqueue_all, args=(url, ids, keys, n, barrier, results))
                for n in range(PROCESSES)]
    for child in children:
        child.start()
    try:
        reports = [results.get(timeout=CHILD_DEADLINE + 60) for _ in children]
    finally:
        for child in children:
            child.join(10)
            if child.is_alive():
                child.kill()
                child.join()
    errors = [r["error"] for r in reports if r["error"]]
    assert not errors, f"producer processes failed: {errors}"
    return reports


def figures(reports: list[dict[str, Any]], expected: set[str]) -> dict[str, Any]:
    """lost, double (settled True more than once), claimed, seconds, per process."""
    settled = Counter(mid for r in reports for mid in r["completed"])
    return {
        "lost": len(expected - set(settled)),
        "double": sum(1 for n in settled.values() if n > 1),
        "unexpected": len(set(settled) - expected),
        "claimed": sum(r["claimed"] for r in reports),
        "refused": sum(r["refused"] for r in reports),
        "recovered": sum(r["recovered"] for r in reports),
        "seconds": max(r["end"] for r in reports) - min(r["start"] for r in reports),
        "per_process": ",".join(str(len(r["completed"])) for r in reports),
    }


def _require_shared(kind: str) -> None:
    if kind not in SHARED_KINDS:
        pytest.skip(f"{kind}:// lives in one process; nothing to share between processes")


class TestManyProcesses:
    def test_concurrent_enqueue_of_the_same_ids(self, backend_kind: str, backend_url: str) -> None:
        """Producers retrying one batch at once (lost replies): each message stored once."""
        _require_shared(backend_kind)
        ids = [new_message().id for _ in range(300)]
        _race_enqueue(backend_url, ids, [])
        with closing(open_backend(backend_url)) as parent:
            assert [m.id for m in parent.messages(queue="race", limit=1000)] == sorted(ids)
            assert {s.queue: s.counts for s in parent.queue_stats()} == {
                "race": Counts(accepted=len(ids), queued=len(ids))}

    def test_concurrent_enqueue_with_one_idempotency_key(
        self, backend_kind: str, backend_url: str
    ) -> None:
        """Producers racing with the same keys under their own ids: one message per key."""
        _require_shared(backend_kind)
        keys = [f"order-{n}" for n in range(300)]
        reports = _race_enqueue(backend_url, [], keys)
        with closing(open_backend(backend_url)) as parent:
            stored = parent.messages(queue="race", limit=1000)
            doubled = len(stored) - len(keys)
            split = [k for k in keys if len({r["by_key"][k] for r in reports}) > 1]
            print(f"\nkeys: keys={len(keys)} processes={len(reports)} stored={len(stored)} "
                  f"split_answers={len(split)} backend={backend_kind}")
            assert doubled == 0 and split == [], (
                f"{doubled} extra messages stored; keys answered with several ids: {split[:5]}")
            for key in keys:
                info = parent.message(reports[0]["by_key"][key])
                assert info is not None and info.idempotency_key == key
            assert {s.queue: s.counts for s in parent.queue_stats()} == {
                "race": Counts(accepted=len(keys), queued=len(keys))}

    def test_job_counters_under_concurrent_completion(
        self, backend_kind: str, backend_url: str
    ) -> None:
        _require_shared(backend_kind)
        total, fail_every = 400, 7
        members = [
            new_message("jobs", job_id="big", body=b'{"n": %d, "fail": %s}' % (
                n, b"true" if n % fail_every == 0 else b"false"))
            for n in range(total)
        ]
        failing = {m.id for n, m in enumerate(members) if n % fail_every == 0}
        with closing(open_backend(backend_url)) as parent:
            parent.enqueue(members, job=NewJob("big", "concurrent", time.time()))
            reports = run_workers(backend_url, Plan(("jobs",), total))
            job = parent.job("big")
            assert job is not None
            assert job.counts == Counts(accepted=total, succeeded=total - len(failing),
                                        dead=len(failing))
            assert job.state == JobState.FINISHED_WITH_FAILURES
            for m in parent.messages(queue="jobs", limit=total + 1):
                assert m.state == (State.DEAD if m.id in failing else State.SUCCEEDED), m.id
            assert_conserved(parent)
        f = figures(reports, {m.id for m in members})
        print(f"\njob: members={total} processes={len(reports)} succeeded={job.counts.succeeded} "
              f"dead={job.counts.dead} lost={f['lost']} double={f['double']} "
              f"seconds={f['seconds']:.2f} backend={backend_kind}")
        assert (f["lost"], f["double"], f["unexpected"]) == (0, 0, 0)

    def test_stress_every_message_completed_exactly_once(
        self, backend_kind: str, backend_url: str
    ) -> None:
        _require_shared(backend_kind)
        total = 2000
        batch = [new_message("stress-a" if n % 2 else "stress-b", priority=n % 3)
                 for n in range(total)]
        with closing(open_backend(backend_url)) as parent:
            parent.enqueue(batch)
            reports = run_workers(backend_url, Plan(("stress-a", "stress-b"), total))
            counts = {s.queue: s.counts for s in parent.queue_stats()}
            assert_conserved(parent)
        f = figures(reports, {m.id for m in batch})
        print(f"\nstress: messages={total} processes={len(reports)} lost={f['lost']} "
              f"double={f['double']} seconds={f['seconds']:.2f} backend={backend_kind} "
              f"claimed={f['claimed']} per_process={f['per_process']}")
        assert (f["lost"], f["double"], f["unexpected"]) == (0, 0, 0)
        assert f["claimed"] == total, "a message was delivered twice while its lease was held"
        assert counts == {"stress-a": Counts(accepted=total // 2, succeeded=total // 2),
                          "stress-b": Counts(accepted=total // 2, succeeded=total // 2)}

    def test_fenced_completion_while_leases_expire(
        self, backend_kind: str, backend_url: str
    ) -> None:
        """Slow batches outlive their lease, others recover and redo them: one success each."""
        _require_shared(backend_kind)
        total = 300
        batch = [new_message("race", max_deliveries=1000) for _ in range(total)]
        plan = Plan(("race",), total, batch=5, lease_seconds=0.25, slow_every=4,
                    slow_seconds=0.4, recover_every=1, leases_outlive_work=False)
        with closing(open_backend(backend_url)) as parent:
            parent.enqueue(batch)
            reports = run_workers(backend_url, plan)
            counts = {s.queue: s.counts for s in parent.queue_stats()}
            assert_conserved(parent)
            states = Counter(m.state for m in parent.messages(queue="race", limit=total + 1))
        f = figures(reports, {m.id for m in batch})
        print(f"\nrace: messages={total} processes={len(reports)} lost={f['lost']} "
              f"double={f['double']} claimed={f['claimed']} recovered={f['recovered']} "
              f"refused={f['refused']} seconds={f['seconds']:.2f} backend={backend_kind}")
        assert (f["lost"], f["double"], f["unexpected"]) == (0, 0, 0)
        assert states == {State.SUCCEEDED: total}
        assert counts == {"race": Counts(accepted=total, succeeded=total)}
        # Every delivery ends once: settled, refused (recovered meanwhile), never both.
        assert f["claimed"] == total + f["refused"]
