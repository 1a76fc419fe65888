"""Benchmark stalwart against peer task queues: ``python bench/run.py [--quick] [--systems a,b]``.

Installs the peers into bench venvs of their own (never into the project's dependencies),
starts a private ``redis-server`` on a free loopback port, measures every row (one driver
process per row, in the row's venv), and writes ``results.json``, ``RESULTS.md`` and
``results.png``: into ``bench/`` for a full run, into ``bench/out/`` for ``--quick``.

Exit status: 0 all rows measured, 1 some figure could not be measured (see the errors in the
output), 3 the bench venvs could not be installed (no network?).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if sys.path and Path(sys.path[0]).resolve() == BENCH:
    sys.path[0] = str(ROOT)  # import the bench package, never bench/*.py as top-level modules

from bench.adapters import Row, select, slug  # noqa: E402
from bench.venvs import VENVS, VenvError  # noqa: E402

EXIT_NO_VENV = 3
ROW_TIMEOUT_S = 600


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="a few hundred tasks, one run (outputs go to bench/out/)")
    p.add_argument("--systems", help="comma-separated: stalwart, celery, dramatiq, huey, rq, "
                   "arq, taskiq, saq, or one row such as celery-acks-late, stalwart-sqlite")
    p.add_argument("--runs", type=int, help="runs per figure (default 3, or 1 with --quick)")
    p.add_argument("--out", type=Path, help="where the results go")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    rows = select(args.systems)
    try:
        pythons = {name: VENVS[name].ensure() for name in {"main", *(r.venv for r in rows)}}
    except VenvError as exc:
        print(f"bench: CANNOT INSTALL THE BENCH VENV: {exc}", file=sys.stderr)
        return EXIT_NO_VENV
    if Path(sys.prefix).resolve() != VENVS["main"].path.resolve():
        # Go on inside the bench venv, where matplotlib is.
        argv_full = [str(pythons["main"]), str(BENCH / "run.py"), *(argv or sys.argv[1:])]
        os.execv(argv_full[0], argv_full)
    out = args.out or (BENCH / "out" if args.quick else BENCH)
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(BENCH / "out" / "logs", ignore_errors=True)  # the last run's logs only
    started = time.time()
    with RedisServer() as server:
        machine = describe_machine(server.version)
        results = []
        for row in rows:
            results.append(run_row(row, pythons[row.venv], server.url, args))
    machine["load_after"] = os.getloadavg()
    doc = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "wall_s": time.time() - started,
        "machine": machine,
        "redis_server": {"version": server.version, "options": server.options},
        "settings": settings_doc(args.quick, args.runs),
        "rows": results,
    }
    (out / "results.json").write_text(json.dumps(doc, indent=2) + "\n")
    from bench import report

    (out / "RESULTS.md").write_text(report.markdown(doc))
    report.chart(doc, out / "results.png")
    print(f"bench: {len(results)} rows in {doc['wall_s']:.0f} s -> {out}/RESULTS.md, "
          f"results.json, results.png")
    return 1 if any(r.get("errors") for r in results) else 0


def run_row(row: Row, python: Path, redis_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """One driver process in the row's venv; its JSON, or an error entry."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = Path(f.name)
    cmd = [str(python), "-m", "bench.driver", "--row", slug(row), "--redis-url", redis_url,
           "--out", str(out)]
    if args.quick:
        cmd.append("--quick")
    if args.runs:
        cmd += ["--runs", str(args.runs)]
    log = BENCH / "out" / "logs" / f"driver-{slug(row)}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    print(f"bench: {row.name} ...", end=" ", flush=True)
    try:
        with open(log, "wb") as lf:
            subprocess.run(cmd, cwd=ROOT, stdout=lf, stderr=subprocess.STDOUT,
                           timeout=ROW_TIMEOUT_S, check=False,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
        result = json.loads(out.read_text())
    except (subprocess.TimeoutExpired, OSError, ValueError) as exc:
        result = {"row": row.name, "slug": slug(row), "system": row.package, "figures": {},
                  "errors": [f"driver: {type(exc).__name__}: {exc} (log: {log})"]}
    finally:
        out.unlink(missing_ok=True)
    fig = result.get("figures", {})
    print(f"{time.time() - t0:.0f} s; drain 2p {_fmt(fig.get('drain_2_per_s'))}/s, "
          f"p99 {_fmt(fig.get('latency_p99_ms'))} ms"
          + (f"; ERRORS: {result['errors']}" if result.get("errors") else ""), flush=True)
    return result


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def settings_doc(quick: bool, runs: int | None) -> dict[str, Any]:
    from bench.driver import Settings

    return Settings(quick, runs).describe()


def describe_machine(redis_version: str) -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        pass
    return {
        "cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(mem_kb / 2**20, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(), "redis_server": redis_version,
        "load_before": os.getloadavg(),
    }


class RedisServer:
    """A private redis-server on a free loopback port, stopped by its pid at the end.

    No persistence (``--save "" --appendonly no``): the recovery test kills workers, never
    Redis, so what matters there is each system's acknowledgement scheme, not fsync.
    """

    options = ["--save", "", "--appendonly", "no"]

    def __enter__(self) -> RedisServer:
        exe = shutil.which("redis-server")
        if exe is None:
            raise SystemExit("bench: redis-server is not installed (apt-get install redis-server)")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.dir = tempfile.mkdtemp(prefix="bench-redis-")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--daemonize", "no", "--loglevel", "warning", *self.options],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.version = "?"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            info = self._command(b"INFO server\r\n")
            if info and b"redis_version:" in info:
                self.version = info.split(b"redis_version:")[1].split(b"\r\n")[0].decode()
                return self
            time.sleep(0.05)
        self.__exit__()
        raise SystemExit(f"bench: redis-server did not start on port {self.port}")

    def _command(self, raw: bytes) -> bytes | None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(raw)
                return s.recv(65536)
        except OSError:
            return None

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
