"""Core throughput of the SQLite backend on a temporary file: enqueue, claim and settle.

Run: python bench/sqlite_core.py [--messages 20000] [--single 20000] [--processes 4]

Every write is a durable commit (WAL, synchronous=FULL), so the one-by-one enqueue rate is
bounded by the disk's fsync latency; batches share one commit.
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from stalwart.backends.base import Complete, NewMessage
from stalwart.backends.sqlite import SQLiteBackend
from stalwart.ids import new_id

BODY = b'{"task":"bench","args":[1,2,3],"kwargs":{}}'


def _messages(n: int, queue: str) -> list[NewMessage]:
    return [NewMessage(new_id(), "bench", queue=queue, body=BODY) for _ in range(n)]


def _timed(fn: Callable[[], int]) -> tuple[int, float]:
    started = time.perf_counter()
    done = fn()
    return done, time.perf_counter() - started


def _drain(url: str, queue: str, limit: int, start: multiprocessing.synchronize.Event) -> None:
    backend = SQLiteBackend(url)
    start.wait()
    while got := backend.claim([queue], limit, 60.0, "bench"):
        backend.settle([Complete(d.lease, "1") for d in got])
    backend.close()


def _drain_in_processes(url: str, queue: str, limit: int, processes: int) -> float:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    procs = [ctx.Process(target=_drain, args=(url, queue, limit, start)) for _ in range(processes)]
    for p in procs:
        p.start()
    time.sleep(1.0)  # let every interpreter start and open the file
    started = time.perf_counter()
    start.set()
    for p in procs:
        p.join()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000, help="for the batched runs")
    parser.add_argument("--single", type=int, default=20_000, help="for the one-by-one runs")
    parser.add_argument("--batch", type=int, default=500, help="enqueue batch size")
    parser.add_argument("--claim", type=int, default=100, help="claim batch size")
    parser.add_argument("--processes", type=int, default=4, help="for the shared-file run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        backend = SQLiteBackend(url)
        rows: list[tuple[str, int, float]] = []

        batched = _messages(args.messages, "bulk")

        def enqueue_batched() -> int:
            for start in range(0, len(batched), args.batch):
                backend.enqueue(batched[start:start + args.batch])
            return len(batched)

        rows.append((f"enqueue, batches of {args.batch}", *_timed(enqueue_batched)))

        single = _messages(args.single, "single")

        def enqueue_single() -> int:
            for m in single:
                backend.enqueue([m])
            return len(single)

        rows.append(("enqueue, one by one", *_timed(enqueue_single)))

        def claim_and_complete() -> int:
            done = 0
            while got := backend.claim(["bulk"], args.claim, 60.0, "bench"):
                applied = backend.settle([Complete(d.lease, "1") for d in got])
                done += sum(applied)
            return done

        rows.append((f"claim {args.claim} + settle batch", *_timed(claim_and_complete)))

        def claim_and_complete_single() -> int:
            done = 0
            while got := backend.claim(["single"], 1, 60.0, "bench"):
                done += backend.complete(got[0].lease, "1")
            return done

        rows.append(("claim 1 + complete 1", *_timed(claim_and_complete_single)))

        for limit in (args.claim, 10):
            queue = f"shared-{limit}"
            shared = _messages(args.messages, queue)
            for start in range(0, len(shared), args.batch):
                backend.enqueue(shared[start:start + args.batch])
            seconds = _drain_in_processes(url, queue, limit, args.processes)
            rows.append((f"{args.processes} processes, claim {limit} + settle",
                         len(shared), seconds))

        def recover_idle() -> int:
            for _ in range(1000):
                backend.recover_expired()
            return 1000

        rows.append(("recover_expired, nothing due", *_timed(recover_idle)))

        stats = {s.queue: s.counts for s in backend.queue_stats()}
        assert all(c.unaccounted == 0 and c.succeeded == c.accepted for c in stats.values())
        backend.close()

    width = max(len(name) for name, _, _ in rows)
    print(f"{'operation':<{width}}  {'count':>7}  {'seconds':>8}  {'per second':>11}")
    for name, count, seconds in rows:
        print(f"{name:<{width}}  {count:>7}  {seconds:>8.2f}  {count / seconds:>11,.0f}")


if __name__ == "__main__":
    main()
