"""What every adapter shares: the bench keys its tasks write, and its worker's process group.

Each task writes to the benchmark's own Redis server, never to the broker's keys, so that
completion can be counted from outside the system under test:

* ``noop``: one INCR of ``bench:{ns}:count``.
* ``stamp(enqueued_at)``: reads the clock first, then INCR and RPUSH of the enqueue-to-start
  delay to ``bench:{ns}:lat`` (one pipelined round trip).
* ``slow(i, seconds)``: INCR ``bench:{ns}:started``, sleeps, then SADD ``i`` to
  ``bench:{ns}:done`` and INCR: the recovery test sees which of its tasks ran to the end.

``ns`` (``$BENCH_NS``) changes for every phase, so phases never see each other's counts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "bench" / "out"
LOGS = OUT / "logs"


@dataclass(frozen=True)
class Call:
    """One task invocation the driver asks for: ``noop``, ``stamp`` or ``slow``."""

    task: str
    args: tuple[Any, ...] = ()


def namespace() -> str:
    return os.environ.get("BENCH_NS", "bench")


def redis_url() -> str:
    return os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")


def keys(ns: str | None = None) -> dict[str, str]:
    ns = ns or namespace()
    return {k: f"bench:{ns}:{k}" for k in ("count", "lat", "started", "done")}


# --- the task bodies, sync and async, shared by every adapter --------------------------------

_sync_client: Any = None
_sync_pid = 0


def _client() -> Any:
    global _sync_client, _sync_pid
    if _sync_client is None or _sync_pid != os.getpid():
        import redis

        _sync_client = redis.Redis.from_url(redis_url())
        _sync_pid = os.getpid()
    return _sync_client


def noop_body() -> None:
    _client().incr(keys()["count"])


def stamp_body(enqueued_at: float) -> None:
    started = time.time()
    k = keys()
    pipe = _client().pipeline(transaction=False)
    pipe.incr(k["count"])
    pipe.rpush(k["lat"], repr(started - enqueued_at))
    pipe.execute()


def slow_body(i: int, seconds: float) -> None:
    k = keys()
    _client().incr(k["started"])
    time.sleep(seconds)
    pipe = _client().pipeline(transaction=False)
    pipe.sadd(k["done"], i)
    pipe.incr(k["count"])
    pipe.execute()


_async_clients: dict[int, Any] = {}


def _aclient() -> Any:
    import asyncio

    import redis.asyncio as aredis

    loop_id = id(asyncio.get_running_loop())
    client = _async_clients.get(loop_id)
    if client is None:
        client = _async_clients[loop_id] = aredis.Redis.from_url(redis_url())
    return client


async def anoop_body() -> None:
    await _aclient().incr(keys()["count"])


async def astamp_body(enqueued_at: float) -> None:
    started = time.time()
    k = keys()
    async with _aclient().pipeline(transaction=False) as pipe:
        pipe.incr(k["count"])
        pipe.rpush(k["lat"], repr(started - enqueued_at))
        await pipe.execute()


async def aslow_body(i: int, seconds: float) -> None:
    import asyncio

    k = keys()
    await _aclient().incr(k["started"])
    await asyncio.sleep(seconds)
    async with _aclient().pipeline(transaction=False) as pipe:
        pipe.sadd(k["done"], i)
        pipe.incr(k["count"])
        await pipe.execute()


# --- the worker: one process group, so it can be killed whole --------------------------------


class WorkerGroup:
    """Worker processes started in a new process group of their own."""

    def __init__(self, commands: list[list[str]], env: dict[str, str], log_name: str) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        self.log_path = LOGS / f"{log_name}.log"
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in wait()
        full_env = {**os.environ, **env, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        self.procs: list[subprocess.Popen[bytes]] = []
        for i, cmd in enumerate(commands):
            self.procs.append(subprocess.Popen(
                cmd, cwd=ROOT, env=full_env, stdout=self.log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, process_group=self.procs[0].pid if i else 0,
            ))
        self.pgid = self.procs[0].pid

    def pids(self) -> list[int]:
        """The worker's process tree: its group, and descendants that left it (RQ's horse)."""
        return tree_pids([p.pid for p in self.procs], self.pgid)

    def _signal(self, sig: int) -> None:
        targets = self.pids() if sig == signal.SIGKILL else []
        try:
            os.killpg(self.pgid, sig)
        except ProcessLookupError:
            pass
        for pid in targets:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 3.0) -> None:
        """SIGTERM to the group, then SIGKILL whatever is left (a slow shutdown is not measured)."""
        self._signal(signal.SIGTERM)
        if not self.wait(timeout):
            self.kill()

    def kill(self) -> None:
        """SIGKILL the whole process tree at once, as a crashed host or container would."""
        self._signal(signal.SIGKILL)
        self.wait(10.0)

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        for p in self.procs:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return False
        # Children that outlived their parents still belong to the tree.
        while time.monotonic() < deadline and self.pids():
            time.sleep(0.05)
        if self.pids():
            self._signal(signal.SIGKILL)
            time.sleep(0.2)
        self.log.close()
        return True

    def alive(self) -> bool:
        return any(p.poll() is None for p in self.procs)

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def tree_pids(roots: list[int], pgid: int) -> list[int]:
    """Live processes in group ``pgid`` or descended from ``roots`` (one scan of /proc)."""
    parent: dict[int, int] = {}
    members = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if fields[0] == b"Z":
            continue
        pid = int(entry)
        parent[pid] = int(fields[1])
        if int(fields[2]) == pgid:
            members.add(pid)
    members |= {r for r in roots if r in parent}
    changed = True
    while changed:
        grown = {pid for pid, ppid in parent.items() if ppid in members} - members
        changed = bool(grown)
        members |= grown
    return sorted(members)


def rss_bytes(pids: list[int]) -> int:
    """Sum of resident set sizes (shared pages of forked children are counted in each)."""
    total = 0
    page = os.sysconf("SC_PAGE_SIZE")
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                total += int(f.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
    return total


def python_bin() -> str:
    """The interpreter of this venv, for worker commands."""
    return sys.executable


def venv_bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)
