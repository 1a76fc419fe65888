"""Where stalwart's worker spends its time while draining no-op tasks (py-spy, sampled).

    python bench/profile_worker.py [--backend redis|sqlite|postgres] [--seconds 8]

Enqueues no-op tasks, starts ``stalwart worker -c 2 --pool process`` on them, records every
process of the worker with py-spy for a few seconds, and prints the functions with the most
samples on top of the stack (self) and anywhere on it (inclusive), per process role. The raw
collapsed stacks are kept in ``bench/out/profile-<backend>.txt`` for a flame graph.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if sys.path and Path(sys.path[0]).resolve() == BENCH:
    sys.path[0] = str(ROOT)

from bench.venvs import VENVS  # noqa: E402


def summarize(collapsed: Path, top: int) -> str:
    """Self and inclusive sample shares per function, supervisor and children apart."""
    self_counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    incl_counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    totals: collections.Counter[str] = collections.Counter()
    for line in collapsed.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        # The first frame names the process; a child's stack goes through child_main.
        frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
        if not frames:
            continue
        role = "child" if any(f.startswith("child_main ") for f in frames) else "supervisor"
        count = int(n)
        totals[role] += count
        self_counts[role][_name(frames[-1])] += count
        for name in {_name(f) for f in frames}:
            incl_counts[role][name] += count
    out = []
    for role in sorted(totals):
        out.append(f"== {role} processes: {totals[role]} samples")
        out.append("  self:")
        out += [f"    {c / totals[role]:6.1%}  {name}"
                for name, c in self_counts[role].most_common(top)]
        out.append("  inclusive (stalwart frames):")
        out += [f"    {c / totals[role]:6.1%}  {name}"
                for name, c in incl_counts[role].most_common(top * 4)
                if "stalwart" in name and c < totals[role]][:top]
    return "\n".join(out)


def _name(frame: str) -> str:
    # py-spy raw frames look like "function (path/to/file.py:123)"; drop the line number.
    func, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0]
    short = path.split("site-packages/")[-1].split("/src/")[-1]
    return f"{func} ({short})" if where else func


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=("redis", "sqlite", "postgres"), default="redis")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--tasks", type=int, default=40_000)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--gil", action="store_true",
                   help="sample only threads holding the GIL: CPU spent in Python, not waits")
    a = p.parse_args(argv)
    python = VENVS["main"].ensure()
    if Path(sys.prefix).resolve() != VENVS["main"].path.resolve():
        os.execv(str(python), [str(python), str(Path(__file__)), *(argv or sys.argv[1:])])

    from bench.adapters import base
    from bench.run import RedisServer

    out = BENCH / "out" / f"profile-{a.backend}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    with RedisServer() as server:
        os.environ["BENCH_REDIS_URL"] = server.url
        from bench.adapters import stalwart

        adapter = stalwart.Adapter(a.backend, server.url)
        ns = f"profile-{int(time.time())}"
        adapter.open(ns)
        for start in range(0, a.tasks, 5000):
            adapter.enqueue([base.Call("noop")] * min(5000, a.tasks - start), True)
        group = base.WorkerGroup(adapter.worker_commands(2),
                                 {"BENCH_NS": ns, **adapter.worker_env()}, f"{ns}-worker")
        try:
            import redis

            r = redis.Redis.from_url(server.url)
            while not int(r.get(base.keys(ns)["count"]) or 0):
                time.sleep(0.01)
            time.sleep(0.3)  # the children are forked and busy
            subprocess.run([str(python.parent / "py-spy"), "record", "--pid", str(group.pgid),
                            "--subprocesses", "--format", "raw", "--rate", "200",
                            "--duration", str(int(a.seconds)), "--nonblocking",
                            *(["--gil"] if a.gil else []), "--output", str(out)],
                           check=True, capture_output=True)
            done = int(r.get(base.keys(ns)["count"]) or 0)
        finally:
            group.stop()
            adapter.close()
    print(f"{done} tasks run; collapsed stacks in {out}")
    print(summarize(out, a.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
