"""CPU time per task of each process that drains stalwart's queue on Redis: where cycles go.

    python bench/cpu_per_task.py [--tasks 20000] [--concurrency 2]

Starts a private ``redis-server``, enqueues no-op tasks (each one INCR, as in ``run.py``),
starts ``stalwart worker -c N`` on them and, from the first completed task to the last,
reads the CPU seconds of the supervisor and its children (``/proc/<pid>/stat``) and of the
server (``INFO cpu``). On a machine with few cores the sum, not the wall time, is the limit.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if sys.path and Path(sys.path[0]).resolve() == BENCH:
    sys.path[0] = str(ROOT)

from bench.run import RedisServer  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of one process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=2)
    a = p.parse_args(argv)
    with RedisServer() as server:
        import redis

        tag = secrets.token_hex(4)
        os.environ.update(BENCH_REDIS_URL=server.url, BENCH_NS=f"cpu{tag}",
                          BENCH_BROKER=f"{server.url}?prefix=cpu_{tag}")
        from bench.adapters import stalwart as adapter

        adapter.app.broker_url = os.environ["BENCH_BROKER"]
        adapter.app.close()
        ns, r = os.environ["BENCH_NS"], redis.Redis.from_url(server.url)
        for start in range(0, a.tasks, 1000):
            n = min(1000, a.tasks - start)
            adapter.app.send([adapter.noop.s().set(queue=ns) for _ in range(n)])
        worker = subprocess.Popen(
            [sys.executable, "-m", "stalwart", "worker", "bench.adapters.stalwart:app", "-Q", ns,
             "-c", str(a.concurrency), "--log-level", "warning"], cwd=ROOT)
        count = f"bench:{ns}:count"

        def server_cpu() -> float:
            info = r.info("cpu")
            return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

        try:
            while not int(r.get(count) or 0):
                time.sleep(0.002)
            kids = children(worker.pid)
            began, first = time.perf_counter(), int(r.get(count) or 0)
            sup0, kids0 = cpu_seconds(worker.pid), sum(map(cpu_seconds, kids))
            server0 = server_cpu()
            while int(r.get(count) or 0) < a.tasks:
                time.sleep(0.005)
            wall = time.perf_counter() - began
            sup, kid = cpu_seconds(worker.pid) - sup0, sum(map(cpu_seconds, kids)) - kids0
            srv = server_cpu() - server0
        finally:
            worker.terminate()
            worker.wait(30)
    done = a.tasks - first

    def per_task(seconds: float) -> str:
        return f"{seconds / done * 1e6:.0f} us"

    print(f"{done} tasks at {done / wall:,.0f}/s; CPU per task: supervisor {per_task(sup)}, "
          f"children {per_task(kid)}, redis-server {per_task(srv)} "
          f"(wall per task {per_task(wall)}, {os.cpu_count()} cores)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
