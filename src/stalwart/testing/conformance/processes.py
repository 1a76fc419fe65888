"""Many processes on one store: every message completed exactly once, job counters exact.

Each child is a fresh interpreter (``spawn``) that opens the backend by its URL with the
real clock, as separate worker processes do.
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_mod
import time
from collections import Counter
from contextlib import closing
from typing import Any

import pytest

from ...backends import open_backend
from ...backends.base import Bury, Complete, Counts, ErrorInfo, NewJob, Outcome
from ...states import JobState, State
from ..services import SHARED_KINDS
from .checks import assert_conserved, new_message

PROCESSES = 4
CHILD_DEADLINE = 60.0  # seconds; a child that needs longer reports what it has


def _drain(url: str, queues: list[str], batch: int, total: int, name: str, barrier: Any,
           results: Any, work_seconds: float) -> None:
    """Claim and settle until every message of the test is final; report what was done."""
    report: dict[str, Any] = {"worker": name, "completed": [], "claimed": 0, "refused": 0,
                              "error": None}
    try:
        backend = open_backend(url)
        try:
            barrier.wait(timeout=60)
            report["start"] = time.time()
            end = time.monotonic() + CHILD_DEADLINE
            rounds = 0
            while time.monotonic() < end:
                rounds += 1
                if rounds % 10 == 0:  # as every worker does; no lease here is expired
                    recovered = backend.recover_expired()
                    assert recovered == [], f"recovered leases still held: {recovered}"
                got = backend.claim(queues, batch, 60.0, name)
                if not got:
                    final = sum(s.counts.succeeded + s.counts.dead
                                for s in backend.queue_stats())
                    if final >= total:
                        break
                    time.sleep(0.005)
                    continue
                report["claimed"] += len(got)
                time.sleep(work_seconds)  # the "task": lets the other processes interleave
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


def run_workers(url: str, queues: list[str], total: int, batch: int = 10,
                processes: int = PROCESSES, work_seconds: float = 0.001) -> list[dict[str, Any]]:
    """Start ``processes`` children draining ``queues`` together; return their reports."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    children = [
        ctx.Process(target=_drain, name=f"stress-{n}",
                    args=(url, queues, batch, total, f"proc-{n}-{os.getpid()}", barrier, results,
                          work_seconds))
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


def _require_shared(kind: str) -> None:
    if kind not in SHARED_KINDS:
        pytest.skip(f"{kind}:// lives in one process; nothing to share between processes")


class TestManyProcesses:
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
            reports = run_workers(backend_url, ["jobs"], total, batch=10)
            job = parent.job("big")
            assert job is not None
            assert job.counts == Counts(accepted=total, succeeded=total - len(failing),
                                        dead=len(failing))
            assert job.state == JobState.FINISHED_WITH_FAILURES
            for m in parent.messages(queue="jobs", limit=total + 1):
                assert m.state == (State.DEAD if m.id in failing else State.SUCCEEDED), m.id
            assert_conserved(parent)
        settled = Counter(mid for r in reports for mid in r["completed"])
        assert set(settled) == {m.id for m in members}
        assert max(settled.values()) == 1

    def test_stress_every_message_completed_exactly_once(
        self, backend_kind: str, backend_url: str
    ) -> None:
        _require_shared(backend_kind)
        total = 2000
        batch = [new_message("stress-a" if n % 2 else "stress-b", priority=n % 3)
                 for n in range(total)]
        with closing(open_backend(backend_url)) as parent:
            parent.enqueue(batch)
            reports = run_workers(backend_url, ["stress-a", "stress-b"], total, batch=10)
            counts = {s.queue: s.counts for s in parent.queue_stats()}
            assert_conserved(parent)
        settled = Counter(mid for r in reports for mid in r["completed"])
        expected = {m.id for m in batch}
        lost = len(expected - set(settled))
        double = sum(1 for n in settled.values() if n > 1)
        claimed = sum(r["claimed"] for r in reports)
        seconds = max(r["end"] for r in reports) - min(r["start"] for r in reports)
        per_process = ",".join(str(len(r["completed"])) for r in reports)
        print(f"\nstress[{backend_kind}]: messages={total} processes={len(reports)} lost={lost} "
              f"double={double} claimed={claimed} seconds={seconds:.2f} "
              f"per_process={per_process}")
        assert lost == 0 and double == 0
        assert claimed == total, "a message was delivered twice while its lease was held"
        assert set(settled) == expected
        assert counts == {"stress-a": Counts(accepted=total // 2, succeeded=total // 2),
                          "stress-b": Counts(accepted=total // 2, succeeded=total // 2)}
