"""How fast ``stalwart worker`` drains no-op tasks on SQLite, and how fast it recovers.

Not a test: run it by hand and read the figures.

    .venv/bin/python bench/worker_throughput.py [--tasks 3000] [--lease 3]

1. throughput: N no-op tasks enqueued first, then drained by one worker with 1 and with 2
   process children (tasks/s, measured from the first settled task to the last);
2. recovery: time from SIGKILL of a child mid-task until the task runs again (the
   supervisor notices at once), and from SIGKILL of the whole worker (supervisor and
   children) until a fresh worker runs the task again (bounded by the lease).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
APP_SPEC = "tests.worker.apps.tasks:app"


def start_worker(broker: str, ledger: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "STALWART_BROKER": broker, "WORKER_LEDGER": str(ledger),
           "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "stalwart", "worker", APP_SPEC, "--log-level", "warning", *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def client(broker: str):  # type: ignore[no-untyped-def]
    from tests.worker.apps import tasks

    from stalwart import App

    app = App("bench", broker=broker)
    app.tasks.update(tasks.app.tasks)
    return app, tasks


def succeeded(app) -> int:  # type: ignore[no-untyped-def]
    return sum(s.counts.succeeded for s in app.backend.queue_stats())


def throughput(workdir: Path, tasks_n: int, children: int, extra: list[str]) -> float:
    broker = f"sqlite:///{workdir / f'tp{children}.db'}"
    app, tasks = client(broker)
    for start in range(0, tasks_n, 500):
        app.send([tasks.noop.s() for _ in range(min(500, tasks_n - start))])
    proc = start_worker(broker, workdir / "ledger", "-c", str(children), *extra)
    try:
        while succeeded(app) == 0:
            time.sleep(0.005)
        first_at, first_n = time.monotonic(), succeeded(app)
        while (n := succeeded(app)) < tasks_n:
            time.sleep(0.02)
        rate = (n - first_n) / (time.monotonic() - first_at)
    finally:
        stop(proc)
        app.close()
    return rate


def starts(ledger: Path, key: str) -> list[tuple[int, float]]:
    if not ledger.exists():
        return []
    out = []
    for line in ledger.read_text().splitlines():
        event, k, pid, at, _ = line.split(" ", 4)
        if event == "start" and k == key:
            out.append((int(pid), float(at)))
    return out


def wait_for(predicate, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the worker did not get there in time")
        time.sleep(0.002)


def child_recovery(workdir: Path) -> float:
    broker = f"sqlite:///{workdir / 'child.db'}"
    ledger = workdir / "child.ledger"
    app, tasks = client(broker)
    app.send([tasks.work.s("victim", 5.0)])
    proc = start_worker(broker, ledger, "-c", "1")
    try:
        wait_for(lambda: starts(ledger, "victim"))
        killed_at = time.time()
        os.kill(starts(ledger, "victim")[0][0], signal.SIGKILL)
        wait_for(lambda: len(starts(ledger, "victim")) >= 2)
        return starts(ledger, "victim")[1][1] - killed_at
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        app.close()


def worker_recovery(workdir: Path, lease: float) -> float:
    broker = f"sqlite:///{workdir / 'whole.db'}"
    ledger = workdir / "whole.ledger"
    app, tasks = client(broker)
    app.send([tasks.work.s("victim", 5.0)])
    flags = ("-c", "1", "--lease-seconds", str(lease), "--heartbeat-seconds", str(lease / 3))
    first = start_worker(broker, ledger, *flags)
    wait_for(lambda: starts(ledger, "victim"))
    os.killpg(first.pid, signal.SIGKILL)
    killed_at = time.time()
    first.wait()
    second = start_worker(broker, ledger, *flags)
    try:
        wait_for(lambda: len(starts(ledger, "victim")) >= 2)
        return starts(ledger, "victim")[1][1] - killed_at
    finally:
        os.killpg(second.pid, signal.SIGKILL)
        second.wait()
        app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=3000)
    parser.add_argument("--lease", type=float, default=3.0)
    parser.add_argument("--prefetch", type=int, default=None,
                        help="passed to the worker (default: the worker's own)")
    parser.add_argument("--skip-recovery", action="store_true")
    args = parser.parse_args()
    extra = [] if args.prefetch is None else ["--prefetch", str(args.prefetch)]
    with tempfile.TemporaryDirectory(prefix="stalwart-bench-") as tmp:
        workdir = Path(tmp)
        for children in (1, 2):
            rate = throughput(workdir, args.tasks, children, extra)
            print(f"no-op tasks, SQLite, 1 worker x {children} process child(ren): "
                  f"{rate:,.0f} tasks/s ({args.tasks} tasks{', prefetch ' if extra else ''}"
                  f"{extra[1] if extra else ''})")
        if args.skip_recovery:
            return
        print(f"SIGKILL of a child -> task running again: {child_recovery(workdir):.3f} s")
        took = worker_recovery(workdir, args.lease)
        print(f"SIGKILL of the whole worker -> running again on a new worker: {took:.3f} s "
              f"(lease {args.lease:g} s, heartbeat {args.lease / 3:g} s)")


if __name__ == "__main__":
    main()
