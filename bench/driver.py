"""Measure one row (system and variant) and write its figures as JSON.

Run by ``bench/run.py`` inside the row's venv: ``python -m bench.driver --row SLUG ...``.
Each phase gets a namespace of its own (queue names and bench keys), so phases of the same
run never see each other's messages or counts. Every figure is the median over ``--runs``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import statistics
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import redis
from bench.adapters import ROWS, Row, slug
from bench.adapters.base import Call, WorkerGroup, keys, rss_bytes

POLL = 0.01


class Settings:
    """Sizes and time caps; ``--quick`` makes every one small."""

    def __init__(self, quick: bool, runs: int | None) -> None:
        self.quick = quick
        self.n = 300 if quick else 20_000
        self.runs = runs or (1 if quick else 3)
        self.latency_n = 100 if quick else 500
        self.latency_rate = 100.0
        self.recovery_n = 20
        self.recovery_task_s = 0.5
        self.recovery_window_s = 15.0
        # A slow system measured over a bounded time instead of all n tasks (said in output).
        self.enqueue_cap_s = 1.0
        self.drain_cap_s = 2.0
        self.start_timeout_s = 60.0

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items()}


class Measure:
    """Phases against one adapter: enqueue, drain, latency, recovery."""

    def __init__(self, row: Row, adapter: Any, bench: redis.Redis, s: Settings) -> None:
        self.row, self.adapter, self.r, self.s = row, adapter, bench, s
        self.phase = 0

    def ns(self, what: str) -> str:
        self.phase += 1
        return f"{slug(self.row)}-{self.phase}-{what}-{int(time.time() * 1000) % 100_000}"

    def count(self, ns: str) -> int:
        return int(self.r.get(keys(ns)["count"]) or 0)

    @contextlib.contextmanager
    def worker(self, ns: str, processes: int) -> Iterator[WorkerGroup]:
        env = {"BENCH_NS": ns, **self.adapter.worker_env()}
        group = WorkerGroup(self.adapter.worker_commands(processes), env, f"{ns}-c{processes}")
        try:
            yield group
        finally:
            group.stop()

    # -- enqueue ------------------------------------------------------------------------

    def enqueue(self, ns: str, batched: bool) -> dict[str, Any]:
        """Enqueue up to n no-op tasks (in chunks, so a slow system stops at the cap)."""
        self.adapter.open(ns)
        chunk = 1000 if batched else 200
        sent, t0 = 0, time.perf_counter()
        while sent < self.s.n:
            k = min(chunk, self.s.n - sent)
            calls = [Call("noop")] * k
            if batched:
                self.adapter.enqueue(calls, True)
            else:
                for c in calls:
                    self.adapter.enqueue([c], False)
            sent += k
            if time.perf_counter() - t0 > self.s.enqueue_cap_s:
                break
        elapsed = time.perf_counter() - t0
        return {"n": sent, "seconds": elapsed, "rate": sent / elapsed,
                "capped": sent < self.s.n}

    # -- drain --------------------------------------------------------------------------

    def drain(self, ns: str, queued: int, processes: int,
              then: Callable[[str, WorkerGroup], dict[str, Any]] | None = None) -> dict[str, Any]:
        """Rate from the first completed task until all ``queued`` are done (or the cap).

        ``then`` runs on the same worker once it has drained everything (saving a start).
        """
        after: dict[str, Any] | None = None
        with self.worker(ns, processes) as group:
            peak = [0]
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    peak[0] = max(peak[0], rss_bytes(group.pids()))
                    stop.wait(0.1)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            try:
                first_c, first_t = self.wait_first(ns, group)
                deadline = first_t + self.s.drain_cap_s
                c, t = first_c, first_t
                while c < queued and t < deadline:
                    time.sleep(POLL)
                    c, t = self.count(ns), time.perf_counter()
            finally:
                stop.set()
                sampler.join()
            if then is not None and c >= queued:
                try:
                    after = then(ns, group)
                except Exception as exc:  # reported; the drain figure stands
                    after = {"error": str(exc)}
        done = c - first_c
        elapsed = t - first_t
        return {"n": done, "queued": queued, "seconds": elapsed,
                "rate": done / elapsed if elapsed > 0 else None,
                "capped": c < queued, "peak_rss_mb": peak[0] / 2**20, "then": after}

    def wait_first(self, ns: str, group: WorkerGroup) -> tuple[int, float]:
        deadline = time.perf_counter() + self.s.start_timeout_s
        while time.perf_counter() < deadline:
            c = self.count(ns)
            if c:
                return c, time.perf_counter()
            if not group.alive():
                raise RuntimeError(f"worker exited before running a task:\n{group.tail()}")
            time.sleep(POLL)
        raise RuntimeError(f"no task ran within {self.s.start_timeout_s:.0f} s:\n{group.tail()}")

    def warm_up(self, ns: str, group: WorkerGroup) -> None:
        """Run one task, so the worker is known to be up and idle afterwards."""
        self.adapter.enqueue([Call("noop")], False)
        self.wait_first(ns, group)
        time.sleep(0.5)

    # -- latency ------------------------------------------------------------------------

    def latency(self, ns: str, processes: int) -> dict[str, Any]:
        """Latency on a worker of its own (when the drain's worker could not finish)."""
        self.adapter.open(ns)
        with self.worker(ns, processes) as group:
            self.warm_up(ns, group)
            return self.latency_on(ns, group)

    def latency_on(self, ns: str, group: WorkerGroup) -> dict[str, Any]:
        """Tasks sent one at a time at ~100/s to an idle worker: enqueue-to-start delays."""
        time.sleep(0.5)
        n, gap = self.s.latency_n, 1.0 / self.s.latency_rate
        lat_key = keys(ns)["lat"]
        t0 = time.perf_counter()
        for i in range(n):
            pause = t0 + i * gap - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            self.adapter.enqueue([Call("stamp", (time.time(),))], False)
        deadline = time.perf_counter() + 30.0
        while self.r.llen(lat_key) < n and time.perf_counter() < deadline:
            time.sleep(0.05)
        values = sorted(float(v) * 1000 for v in self.r.lrange(lat_key, 0, -1))
        if not values:
            raise RuntimeError(f"none of {n} latency tasks ran within 30 s:\n{group.tail()}")
        return {"n": len(values), "missing": n - len(values), "p50_ms": pct(values, 50),
                "p95_ms": pct(values, 95), "p99_ms": pct(values, 99), "max_ms": values[-1]}

    # -- recovery -----------------------------------------------------------------------

    def recovery(self, ns: str, processes: int) -> dict[str, Any]:
        """SIGKILL the worker's process tree with slow tasks in flight; time their rerun."""
        self.adapter.open(ns)
        k = keys(ns)
        n = self.s.recovery_n
        group = WorkerGroup(self.adapter.worker_commands(processes),
                            {"BENCH_NS": ns, **self.adapter.worker_env()}, f"{ns}-first")
        try:
            self.warm_up(ns, group)
            batched = self.adapter.batch_api is not None
            calls = [Call("slow", (i, self.s.recovery_task_s)) for i in range(n)]
            if batched:
                self.adapter.enqueue(calls, True)
            else:
                for c in calls:
                    self.adapter.enqueue([c], False)
            deadline = time.perf_counter() + self.s.start_timeout_s
            while int(self.r.get(k["started"]) or 0) < 1:
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"no slow task started:\n{group.tail()}")
                time.sleep(POLL)
            time.sleep(0.2)
            before = {int(x) for x in self.r.smembers(k["done"])}
            started_before = int(self.r.get(k["started"]) or 0)
        finally:
            group.kill()
        t_kill = time.perf_counter()
        expected = set(range(n)) - before
        with self.worker(ns, processes):
            deadline = t_kill + self.s.recovery_window_s
            done: set[int] = set()
            while time.perf_counter() < deadline:
                done = {int(x) for x in self.r.smembers(k["done"])}
                if expected <= done:
                    break
                time.sleep(0.05)
            elapsed = time.perf_counter() - t_kill
        missing = len(expected - done)
        return {"in_flight": len(expected), "started_before_kill": started_before,
                "done_before_kill": len(before), "seconds": None if missing else elapsed,
                "not_rerun": missing, "window_s": self.s.recovery_window_s}


def pct(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    i = max(0, min(len(sorted_values) - 1, int(round(p / 100 * len(sorted_values))) - 1))
    return sorted_values[i]


def attempt(errors: list[str], what: str, fn: Callable[..., dict[str, Any]],
            *args: Any) -> dict | None:
    try:
        return fn(*args)
    except Exception as exc:  # one failing phase must not lose the row's other figures
        errors.append(f"{what}: {exc}")
        traceback.print_exc()
        return None


def median_of(samples: list[dict | None], key: str) -> float | None:
    values = [s[key] for s in samples if s and s.get(key) is not None]
    return statistics.median(values) if values else None


def measure_row(row: Row, redis_url: str, s: Settings) -> dict[str, Any]:
    os.environ["BENCH_REDIS_URL"] = redis_url
    module = importlib.import_module(f"bench.adapters.{row.module}")
    adapter = module.Adapter(row.variant, redis_url)
    bench = redis.Redis.from_url(redis_url)
    m = Measure(row, adapter, bench, s)
    errors: list[str] = []
    raw: dict[str, list[dict | None]] = {k: [] for k in (
        "enqueue_single", "enqueue_batched", "drain_1", "drain_2", "latency", "recovery")}
    try:
        for _ in range(s.runs):
            ns = m.ns("a")
            single = attempt(errors, "enqueue one by one", m.enqueue, ns, False)
            raw["enqueue_single"].append(single)
            if single:
                raw["drain_1"].append(attempt(errors, "drain 1", m.drain, ns, single["n"], 1))
            ns = m.ns("b")
            batched = adapter.batch_api is not None
            fill = attempt(errors, "enqueue batched" if batched else "fill", m.enqueue, ns,
                           batched)
            if batched:
                raw["enqueue_batched"].append(fill)
            if fill:
                raw["drain_2"].append(attempt(errors, "drain 2", m.drain, ns, fill["n"], 2))
            # A worker of its own, for every system alike: a drained worker is still hot.
            lat = attempt(errors, "latency", m.latency, m.ns("l"), 2)
            raw["latency"].append(lat)
        for _ in range(s.runs):
            rec = attempt(errors, "recovery", m.recovery, m.ns("r"), 2)
            raw["recovery"].append(rec)
            if rec is None or rec["not_rerun"]:
                break  # a loss repeats every time; one run of it says enough
    finally:
        adapter.close()
    rec_runs = [r for r in raw["recovery"] if r]
    figures = {
        "enqueue_single_per_s": median_of(raw["enqueue_single"], "rate"),
        "enqueue_batched_per_s": median_of(raw["enqueue_batched"], "rate"),
        "drain_1_per_s": median_of(raw["drain_1"], "rate"),
        "drain_2_per_s": median_of(raw["drain_2"], "rate"),
        "latency_p50_ms": median_of(raw["latency"], "p50_ms"),
        "latency_p95_ms": median_of(raw["latency"], "p95_ms"),
        "latency_p99_ms": median_of(raw["latency"], "p99_ms"),
        "recovery_s": median_of(rec_runs, "seconds") if rec_runs and not any(
            r["not_rerun"] for r in rec_runs) else None,
        "recovery_not_rerun": max((r["not_rerun"] for r in rec_runs), default=None),
        "peak_rss_mb_1": max((d["peak_rss_mb"] for d in raw["drain_1"] if d), default=None),
        "peak_rss_mb_2": max((d["peak_rss_mb"] for d in raw["drain_2"] if d), default=None),
    }
    return {
        "row": row.name, "slug": slug(row), "system": row.package,
        "version": _version(row.package), "venv": row.venv,
        "batch_api": adapter.batch_api,
        "lease_seconds": getattr(adapter, "lease_seconds", None),
        "after_crash": adapter.after_crash,
        "settings": adapter.settings(),
        "workers": {"1": adapter.worker_desc(1), "2": adapter.worker_desc(2)},
        "figures": figures, "runs": raw, "errors": errors,
    }


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--row", required=True, help="row slug, e.g. celery-acks-late")
    p.add_argument("--redis-url", required=True)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--runs", type=int)
    a = p.parse_args(argv)
    row = next((r for r in ROWS if slug(r) == a.row), None)
    if row is None:
        raise SystemExit(f"unknown row {a.row!r}; known: {', '.join(slug(r) for r in ROWS)}")
    s = Settings(a.quick, a.runs)
    t0 = time.perf_counter()
    load_before = os.getloadavg()[0]
    try:
        result = measure_row(row, a.redis_url, s)
    except Exception as exc:
        traceback.print_exc()
        result = {"row": row.name, "slug": slug(row), "system": row.package,
                  "version": _version(row.package), "figures": {}, "errors": [f"setup: {exc}"]}
    result["wall_s"] = time.perf_counter() - t0
    # The machine may be shared: the load around the row says how much to trust its figures.
    result["load_1m"] = [load_before, os.getloadavg()[0]]
    a.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
