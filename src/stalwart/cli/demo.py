"""``stalwart demo``: the whole story on the embedded default, in under a minute.

It enqueues a job of a few hundred image tasks into a fresh SQLite file, starts a real
worker process, and lets everything go wrong that goes wrong in production: flaky storage
(retried with backoff), a corrupt upload (dead at once), a file that never loads (retries
exhausted), a task past its soft time limit (it cleans up), a poison message that kills its
own process (dead after max_deliveries, reason worker-lost), and a worker child the demo
kills with SIGKILL mid-task (delivered again, and finished). Then it stops the worker with
SIGTERM and counts: every accepted task is in exactly one final state, and lost is 0.

The closing numbers come from the backend's counters and from the tasks' own record of
their executions, never from what the demo expected. It exits 0 only when nothing is lost.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ..backends.base import Backend, MessageInfo, WorkerInfo
from ..states import FINAL_STATES, State
from .render import console as make_console

DEMO_APP = "stalwart.demo_app:app"
LEASE_SECONDS = 4.0
HEARTBEAT_SECONDS = 1.0
SHUTDOWN_TIMEOUT = 5.0


# --- the worker's process tree --------------------------------------------------------------


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces: split after the last ')'.
    fields = stat[stat.rfind(")") + 2:].split()
    return int(fields[1]) if len(fields) > 1 else None


def descendants(root: int) -> list[int]:
    """Every live process below ``root``, read from /proc (no third-party package needed)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            parent = _ppid(int(entry))
            if parent is not None:
                parents[int(entry)] = parent
    found, frontier = [], [root]
    while frontier:
        current = frontier.pop()
        kids = [p for p, parent in parents.items() if parent == current]
        found.extend(kids)
        frontier.extend(kids)
    return sorted(found)


# --- the execution record the demo tasks write -----------------------------------------------


class RecordReader:
    """Reads the JSON lines the tasks append, as they arrive."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.events: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1  # a line still being written is read next time
        self.offset += end
        new = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
        self.events.extend(new)
        return new


# --- the run ---------------------------------------------------------------------------------


@dataclass
class Story:
    """What happened, as the demo saw it (the closing numbers come from the backend)."""

    killed: list[tuple[int, str]] = field(default_factory=list)  # (pid, message id)
    worker_exit: int | None = None
    timed_out: bool = False
    elapsed: float = 0.0


def _worker_command(concurrency: int) -> list[str]:
    return [
        sys.executable, "-m", "stalwart", "worker", DEMO_APP, "-Q", "images",
        "-c", str(concurrency), "--pool", "process", "--lease-seconds", str(LEASE_SECONDS),
        "--heartbeat-seconds", str(HEARTBEAT_SECONDS),
        "--shutdown-timeout", str(SHUTDOWN_TIMEOUT),
    ]


def _narrate(out: Console, event: dict[str, Any], seen: Counter[str]) -> None:
    """One line for the first few events of each kind, so the story reads as it happens."""
    task, delivery = event.get("task", ""), event.get("delivery")
    kind = event["event"]
    key = f"{kind}:{task}"
    seen[key] += 1
    if kind == "error" and seen[key] <= 3:
        out.log(f"[yellow]{task}[/] attempt {delivery} raised; a retry is scheduled with "
                f"backoff (retries so far: {event.get('retries')})")
    elif kind == "fail":
        out.log(f"[red]{task}[/] raised Fail: dead at once, no retries")
    elif kind == "soft-limit":
        out.log(f"[magenta]{task}[/] hit its soft time limit after {event.get('tiles')} tiles, "
                "caught SoftTimeLimitExceeded and saved a partial result")
    elif kind == "crash":
        out.log(f"[red]{task}[/] delivery {delivery} kills its own process (pid "
                f"{event['pid']}): a poison message")
    elif kind == "start" and task == "demo.video_preview" and (delivery or 0) > 1:
        out.log(f"[green]{task}[/] delivered again (delivery {delivery}) after its process died")


def _kill_render(out: Console, worker_pid: int, reader: RecordReader, story: Story) -> None:
    """SIGKILL the child running the first delivery of the long render, once it is underway."""
    if story.killed:
        return
    now = time.time()
    for event in reader.events:
        if (event["event"] == "start" and event.get("task") == "demo.video_preview"
                and event.get("delivery") == 1 and now - event["t"] > 0.5):
            pid = int(event["pid"])
            tree = descendants(worker_pid)
            if pid not in tree:
                out.log(f"[yellow]pid {pid} is not below the worker ({worker_pid}); not killed")
                story.killed.append((0, event["id"]))
                return
            os.kill(pid, signal.SIGKILL)
            story.killed.append((pid, event["id"]))
            out.log(f"[bold red]demo: SIGKILL to worker child {pid}[/] (worker {worker_pid}, "
                    f"children {tree}) while it runs {event['task']} {event['id']}")
            return


def _watch(out: Console, backend: Backend, job_id: str, total: int, worker: subprocess.Popen,
           reader: RecordReader, story: Story, deadline: float) -> None:
    columns = (TextColumn("{task.description:<22}"), BarColumn(bar_width=40),
               MofNCompleteColumn(), TextColumn("{task.fields[note]}"), TimeElapsedColumn())
    seen: Counter[str] = Counter()
    with Progress(*columns, console=out, refresh_per_second=8) as bars:
        done = bars.add_task("finished", total=total, note="")
        ok = bars.add_task("  succeeded", total=total, note="")
        dead = bars.add_task("  dead-lettered", total=total, note="")
        retried = bars.add_task("  failed attempts", total=None, note="")
        while True:
            for event in reader.poll():
                _narrate(bars.console, event, seen)
            _kill_render(bars.console, worker.pid, reader, story)
            info = backend.job(job_id)
            if info is None:
                raise click.ClickException(f"the job {job_id} vanished from the backend")
            c = info.counts
            errors = sum(1 for e in reader.events if e["event"] == "error")
            bars.update(done, completed=c.succeeded + c.dead + c.cancelled,
                        note=f"queued {c.queued}  scheduled {c.scheduled}  running {c.running}")
            bars.update(ok, completed=c.succeeded)
            bars.update(dead, completed=c.dead)
            bars.update(retried, completed=errors,
                        note=f"{errors} raised: retried with backoff while retries remain")
            if c.succeeded + c.dead + c.cancelled >= total and story.killed:
                return
            if worker.poll() is not None:
                bars.console.log(f"[bold red]the worker exited early (status {worker.returncode})")
                return
            if time.monotonic() > deadline:
                story.timed_out = True
                return
            time.sleep(0.15)


def _stop_worker(out: Console, worker: subprocess.Popen, story: Story) -> None:
    if worker.poll() is None:
        out.log(f"demo: SIGTERM to the worker ({worker.pid}): it stops claiming, finishes or "
                "gives back what it holds, and exits")
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=SHUTDOWN_TIMEOUT + 10)
        except subprocess.TimeoutExpired:
            out.log("[red]the worker did not stop in time; killing it")
            worker.kill()
            worker.wait()
    story.worker_exit = worker.returncode


def _wait_registered(backend: Backend, worker: subprocess.Popen, deadline: float
                     ) -> WorkerInfo | None:
    """The worker's registry entry, once it is up (None if it exits or takes too long)."""
    while time.monotonic() < deadline and worker.poll() is None:
        for w in backend.workers():
            if w.pid == worker.pid:
                return w
        time.sleep(0.1)
    return None


# --- the closing numbers ---------------------------------------------------------------------


def tally(backend: Backend, ids: list[str], events: list[dict[str, Any]]) -> dict[str, Any]:
    """The closing numbers, from the backend's counters and the record of executions."""
    stats = {s.queue: s.counts for s in backend.queue_stats()}
    c = stats.get("images")
    infos: dict[str, MessageInfo | None] = {i: backend.message(i) for i in ids}
    ran_to_success = {e["id"] for e in events if e["event"] == "done"}
    missing = [i for i, m in infos.items() if m is None]
    present = [m for m in infos.values() if m is not None]
    final = [m for m in present if m.state in FINAL_STATES]
    unfinished = [m for m in present if m.state not in FINAL_STATES]
    # A success nobody ran, or a message the store no longer knows, is work lost.
    phantom = [m.id for m in present if m.state == State.SUCCEEDED and m.id not in ran_to_success]
    unaccounted = c.unaccounted if c else len(ids)
    accepted = c.accepted if c else 0
    recovered = [
        m.id for m in present
        if m.state == State.SUCCEEDED and any(
            a.outcome in ("worker-lost", "lease-expired") for a in m.attempts)
    ]
    dead = Counter((m.error.reason if m.error else "unknown") for m in present
                   if m.state == State.DEAD)
    starts = [e for e in events if e["event"] == "start"]
    # A vanished row shows both as missing and as unaccounted: count it once.
    lost = len(phantom) + max(len(missing), abs(unaccounted), len(ids) - accepted)
    return {
        "enqueued": len(ids),
        "accepted": accepted,
        "succeeded": c.succeeded if c else 0,
        "dead": c.dead if c else 0,
        "dead_reasons": dict(sorted(dead.items())),
        "cancelled": c.cancelled if c else 0,
        "in_flight": (c.queued + c.scheduled + c.running) if c else 0,
        "final": len(final),
        "unfinished": len(unfinished),
        "executions": len(starts),
        "retried_messages": sum(1 for m in present if m.retries > 0),
        "retries": sum(m.retries for m in present),
        "soft_limit_handled": sum(1 for e in events if e["event"] == "soft-limit"),
        "recovered_after_crash": len(recovered),
        "unaccounted": unaccounted,
        "missing": missing,
        "phantom_successes": phantom,
        "lost": lost,
    }


def _dead_table(dead: list[MessageInfo]) -> Table:
    table = Table(title="the dead-letter store (stalwart dead APP list): nothing dropped silently",
                  title_justify="left")
    for column in ("id", "task", "reason", "error", "deliveries"):
        table.add_column(column)
    for m in dead:
        err = m.error
        text = ": ".join(x for x in (err.exc_type, err.message) if x) if err else ""
        table.add_row(m.id, m.task, err.reason if err else "?", Text(text),
                      f"{m.deliveries}/{m.max_deliveries}")
    return table


def _closing_table(t: dict[str, Any], story: Story) -> Table:
    table = Table(title="what happened to every task", title_justify="left", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    table.add_column("")
    reasons = ", ".join(f"{r}: {n}" for r, n in t["dead_reasons"].items()) or "-"
    rows = [
        ("accepted", t["accepted"], f"{t['enqueued']} enqueued in one job"),
        ("succeeded", t["succeeded"],
         f"{t['soft_limit_handled']} of them after catching SoftTimeLimitExceeded"),
        ("retried", t["retried_messages"],
         f"messages retried with backoff ({t['retries']} retries in all)"),
        ("dead", t["dead"], f"dead-lettered with a reason: {reasons}"),
        ("recovered after crash", t["recovered_after_crash"],
         f"delivered again after their process died ({len(story.killed)} killed by the demo)"),
        ("cancelled", t["cancelled"], ""),
        ("still in flight", t["in_flight"], "queued, scheduled or running at the end"),
        ("executions", t["executions"], "task runs recorded by the tasks themselves"),
        ("unaccounted", t["unaccounted"], "accepted - (queued+scheduled+running+final)"),
    ]
    for name, value, note in rows:
        table.add_row(name, str(value), note)
    style = "bold green" if t["lost"] == 0 else "bold white on red"
    table.add_row(f"[{style}]lost[/]", f"[{style}]{t['lost']}[/]",
                  "accepted but in no final state, or 'succeeded' without having run")
    return table


@click.command("demo")
@click.option("--tasks", "count", default=240, show_default=True, type=click.IntRange(20, 5000),
              help="How many thumbnails the job holds (plus three special tasks).")
@click.option("-c", "--concurrency", default=2, show_default=True, type=click.IntRange(1, 16),
              help="Worker child processes.")
@click.option("--timeout", default=120.0, show_default=True,
              help="Give up waiting for the job after this many seconds.")
@click.option("--keep", is_flag=True, help="Keep the temporary directory (database, logs).")
def command(count: int, concurrency: int, timeout: float, keep: bool) -> None:
    """Run a job through a real worker while tasks fail, stall and crash; show nothing is lost."""
    out = make_console(log_path=False)  # the story's lines, not the demo's source lines
    tmp = tempfile.mkdtemp(prefix="stalwart-demo-")
    try:
        status = _run(out, Path(tmp), count, concurrency, timeout)
    finally:
        if keep:
            out.print(f"kept {tmp} (queue.db, worker.log, executions.jsonl)")
        else:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
    raise SystemExit(status)


def _run(out: Console, tmp: Path, count: int, concurrency: int, timeout: float) -> int:
    broker = f"sqlite:///{tmp / 'queue.db'}"
    record_path = tmp / "executions.jsonl"
    os.environ["STALWART_BROKER"] = broker
    os.environ["STALWART_DEMO_RECORD"] = str(record_path)
    from .. import demo_app

    app = demo_app.app
    app.close()
    app.broker_url = broker

    out.rule("[bold]stalwart demo")
    out.print("A job of image tasks goes through a real worker process while tasks fail, "
              "overrun their time limit and crash; at the end every accepted task must be in "
              "exactly one final state.", highlight=False)
    out.print(f"store: {broker} (SQLite, WAL, synchronous=FULL)")
    log_path = tmp / "worker.log"
    started = time.monotonic()
    with open(log_path, "wb") as log:
        worker = subprocess.Popen(_worker_command(concurrency), stdout=log,
                                  stderr=subprocess.STDOUT, env=os.environ.copy())
    out.print(f"started a worker: {' '.join(_worker_command(concurrency)[1:])}")
    registered = _wait_registered(app.backend, worker, time.monotonic() + 30)
    if registered is None:
        _stop_worker(out, worker, Story())
        out.print("[bold red]the worker did not register itself; its log:[/]")
        out.print(log_path.read_text(errors="replace")[-4000:], markup=False, highlight=False)
        return 1
    out.print(f"worker {registered.id} registered: queues {','.join(registered.queues)}, "
              f"{registered.pool} pool, child processes {descendants(worker.pid)}, "
              f"lease {LEASE_SECONDS:g}s renewed every {HEARTBEAT_SECONDS:g}s")

    sigs = [demo_app.thumbnail.s(i) for i in range(1, count + 1)]
    sigs += [demo_app.panorama.s(1), demo_app.decode_raw.s(2), demo_app.video_preview.s(3)]
    job = app.job("import-photos", sigs)
    out.print(f"enqueued job [bold]import-photos[/] with {len(job.ids)} tasks: {count} "
              "thumbnails (some flaky, one corrupt, one missing), a panorama past its soft "
              "time limit, a poison RAW file, and a long video render")
    story = Story()
    reader = RecordReader(record_path)
    try:
        _watch(out, app.backend, job.id, len(job.ids), worker, reader, story,
               time.monotonic() + timeout)
    finally:
        _stop_worker(out, worker, story)
    story.elapsed = time.monotonic() - started
    reader.poll()

    t = tally(app.backend, job.ids, reader.events)
    out.print(_dead_table(app.backend.messages(queue="images", state=State.DEAD, limit=20)))
    app.close()
    out.print(_closing_table(t, story))
    problems = []
    if story.timed_out:
        problems.append(f"the job did not finish within {timeout:g}s")
    if t["unfinished"]:
        problems.append(f"{t['unfinished']} task(s) still in flight")
    if story.worker_exit not in (0, None):
        problems.append(f"the worker exited with status {story.worker_exit}")
    if t["lost"]:
        problems.append(f"{t['lost']} task(s) lost: {t['missing'] + t['phantom_successes']}")
    out.print(f"lost = {t['lost']}", style="bold green" if t["lost"] == 0 else "bold red")
    if problems:
        out.print("[bold red]problems:[/] " + "; ".join(problems))
        out.print(f"last lines of the worker's log ({log_path}):")
        lines = log_path.read_text(errors="replace").splitlines()[-25:]
        out.print("\n".join(lines), markup=False, highlight=False)
        return 1
    out.print(f"[bold green]every accepted task ended in exactly one final state[/] in "
              f"{story.elapsed:.1f}s. Inspect a store like this with: stalwart status APP, "
              "stalwart dead APP list, stalwart doctor APP")
    return 0
