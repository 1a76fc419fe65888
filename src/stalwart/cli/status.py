"""``stalwart status APP``: queues with every counter, live workers, jobs, and what is stuck.

The table shows the conservation law per queue (``unaccounted`` must be 0, so a reader sees
at a glance that nothing vanished), and flags loudly every queue with waiting messages that
no live worker consumes: the silent failure this command exists to expose.
"""

from __future__ import annotations

import time
from typing import Any

import click
from rich.console import Group
from rich.markup import escape
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ..backends.base import Backend, JobInfo
from ..states import JobState, State
from .common import APP_ARGUMENT, JSON_OPTION, emit_json, load_app
from .render import COUNT_FIELDS, ago, console, counts_dict, user_errors, when

DEAD_SCAN_LIMIT = 10_000  # the dead-letter store is counted by listing it, up to this many


def collect(backend: Backend, job_limit: int = 20) -> dict[str, Any]:
    """Everything the status page shows, as plain data (the ``--json`` form)."""
    now = time.time()
    stats = backend.queue_stats()
    workers = backend.workers()
    jobs = backend.jobs(limit=job_limit)
    dead = backend.messages(state=State.DEAD, limit=DEAD_SCAN_LIMIT)
    consumed = {q for w in workers for q in w.queues}
    queues = []
    for qs in stats:
        counts = counts_dict(qs.counts)
        waiting = counts["queued"] + counts["scheduled"]
        queues.append({
            "queue": qs.queue,
            **counts,
            "consumers": sum(1 for w in workers if qs.queue in w.queues),
            "unconsumed": waiting > 0 and qs.queue not in consumed,
        })
    return {
        "backend": backend.url,
        "time": now,
        "queues": queues,
        "unconsumed_queues": [q["queue"] for q in queues if q["unconsumed"]],
        "unaccounted_total": sum(q["unaccounted"] for q in queues),
        "workers": [
            {
                "id": w.id, "hostname": w.hostname, "pid": w.pid, "queues": list(w.queues),
                "pool": w.pool, "concurrency": w.concurrency, "started_at": w.started_at,
                "last_seen": w.last_seen,
            }
            for w in workers
        ],
        "jobs": [_job_dict(j) for j in jobs],
        "dead_letters": {
            "stored": len(dead),
            "truncated": len(dead) >= DEAD_SCAN_LIMIT,
            "by_queue": _tally(m.queue for m in dead),
            "by_reason": _tally((m.error.reason if m.error else "unknown") for m in dead),
        },
    }


def _tally(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return dict(sorted(out.items()))


def _job_dict(job: JobInfo) -> dict[str, Any]:
    counts = counts_dict(job.counts)
    finished = counts["succeeded"] + counts["dead"] + counts["cancelled"]
    return {
        "id": job.id, "name": job.name, "created_at": job.created_at, "state": str(job.state),
        "total": job.total, "finished": finished, **counts,
        "progress": [
            {"message": mid, "done": p.done, "total": p.total, "note": p.note}
            for mid, p in job.progress
        ],
    }


def render(data: dict[str, Any]) -> Group:
    """The status page for people."""
    parts: list[Any] = [Text.from_markup(f"[bold]backend[/] {escape(data['backend'])}")]
    parts.append(_queues_table(data))
    for queue in data["unconsumed_queues"]:
        q = next(x for x in data["queues"] if x["queue"] == queue)
        parts.append(Panel(
            f"[bold]no worker consumes this queue[/]: {escape(repr(queue))} has "
            f"{q['queued'] + q['scheduled']} waiting message(s) and no live worker listens to "
            f"it.\nStart one: [bold]stalwart worker APP -Q {escape(queue)}[/]",
            title="[bold red]WAITING WITH NOBODY LISTENING", border_style="red", expand=False,
        ))
    if data["unaccounted_total"]:
        parts.append(Text(
            f"unaccounted is {data['unaccounted_total']}: accepted messages that are in no "
            "state. This is a bug in the backend; please report it with the output of "
            "`stalwart status --json`.", style="bold red",
        ))
    parts.append(_workers_table(data))
    parts.append(_jobs_table(data))
    dead = data["dead_letters"]
    if dead["stored"]:
        reasons = escape(", ".join(f"{r} {n}" for r, n in dead["by_reason"].items()))
        more = "+" if dead["truncated"] else ""
        parts.append(Text.from_markup(
            f"[bold yellow]dead-letter store:[/] {dead['stored']}{more} message(s) ({reasons}); "
            "see them with [bold]stalwart dead APP list[/]"
        ))
    else:
        parts.append(Text.from_markup("[green]dead-letter store: empty[/]"))
    return Group(*parts)


def _queues_table(data: dict[str, Any]) -> Table:
    table = Table(title="queues", title_justify="left")
    table.add_column("queue", style="bold")
    for name in COUNT_FIELDS:
        table.add_column(name, justify="right")
    table.add_column("unaccounted", justify="right")
    table.add_column("consumers", justify="right")
    for q in data["queues"]:
        unaccounted = Text(str(q["unaccounted"]),
                           style="bold white on red" if q["unaccounted"] else "green")
        consumers = Text(str(q["consumers"]), style="bold red" if q["unconsumed"] else "")
        dead = Text(str(q["dead"]), style="yellow" if q["dead"] else "")
        cells = [str(q[name]) for name in COUNT_FIELDS]
        cells[COUNT_FIELDS.index("dead")] = dead  # type: ignore[call-overload]
        table.add_row(Text(q["queue"]), *cells, unaccounted, consumers)
    if not data["queues"]:
        table.add_row("(no queue has accepted a message yet)", *[""] * (len(COUNT_FIELDS) + 2))
    return table


def _workers_table(data: dict[str, Any]) -> Table:
    table = Table(title="live workers", title_justify="left")
    for column in ("id", "host", "pid", "queues", "pool", "concurrency", "last seen"):
        table.add_column(column)
    for w in data["workers"]:
        table.add_row(Text(w["id"]), Text(w["hostname"]), str(w["pid"]),
                      Text(",".join(w["queues"])), Text(w["pool"]), str(w["concurrency"]),
                      ago(w["last_seen"], data["time"]))
    if not data["workers"]:
        table.add_row(Text("none", style="yellow"), *[""] * 6)
    return table


def _jobs_table(data: dict[str, Any]) -> Table:
    table = Table(title="jobs (newest first)", title_justify="left")
    for column in ("job", "name", "created", "progress", "done", "succeeded", "dead",
                   "cancelled", "state"):
        table.add_column(column)
    for j in data["jobs"]:
        total = max(j["total"], 1)
        style = {JobState.SUCCEEDED: "green", JobState.FINISHED_WITH_FAILURES: "yellow"}.get(
            JobState(j["state"]), "cyan")
        bar = ProgressBar(total=total, completed=j["finished"], width=24,
                          complete_style=style, finished_style=style)
        table.add_row(j["id"], Text(j["name"]), when(j["created_at"]), bar,
                      f"{j['finished']}/{j['total']}", str(j["succeeded"]), str(j["dead"]),
                      str(j["cancelled"]), Text(j["state"], style=style))
    if not data["jobs"]:
        table.add_row("none", *[""] * 8)
    return table


@click.command("status")
@APP_ARGUMENT
@JSON_OPTION
@click.option("--jobs", "job_limit", default=20, show_default=True,
              help="How many of the newest jobs to show.")
@user_errors
def command(app_spec: str, as_json: bool, job_limit: int) -> None:
    """Queues with every counter, live workers, jobs with progress, and the dead letters."""
    app = load_app(app_spec)
    data = collect(app.backend, job_limit)
    if as_json:
        emit_json(data)
    else:
        console().print(render(data))
