"""``stalwart dead APP list|show|requeue|purge``: the dead-letter store, for operators.

Dead messages keep their arguments, reason, traceback and attempt history until purged.
Requeue gives them a full retry and delivery budget again; purge deletes them (the queue
counters keep counting them as dead, so the conservation law still holds).
"""

from __future__ import annotations

from typing import Any

import click
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..app import App
from ..backends.base import MessageInfo
from ..states import State
from .common import APP_ARGUMENT, JSON_OPTION, emit_json, load_app
from .render import ago, console, error_dict, plain, user_errors, when

SCAN_LIMIT = 100_000  # --all works through the dead-letter store up to this many at once


def _summary(m: MessageInfo) -> dict[str, Any]:
    err = m.error
    return {
        "id": m.id, "task": m.task, "queue": m.queue, "reason": err.reason if err else None,
        "error_type": err.exc_type if err else None, "error": err.message if err else None,
        "deliveries": m.deliveries, "retries": m.retries, "job_id": m.job_id,
        "created_at": m.created_at, "died_at": m.updated_at,
    }


def _detail(m: MessageInfo) -> dict[str, Any]:
    return {
        **_summary(m),
        "state": str(m.state),
        "max_deliveries": m.max_deliveries,
        "priority": m.priority,
        "idempotency_key": m.idempotency_key,
        "body": m.body.decode("utf-8", "replace"),
        "traceback": m.error.traceback if m.error else None,
        "attempts": [
            {"delivery": a.delivery, "worker": a.worker_id, "started_at": a.started_at,
             "ended_at": a.ended_at, "outcome": a.outcome, "error": error_dict(a.error)}
            for a in m.attempts
        ],
    }


@click.group("dead")
@APP_ARGUMENT
@click.pass_context
def command(ctx: click.Context, app_spec: str) -> None:
    """The dead-letter store: list, show, requeue or purge dead messages."""
    ctx.obj = load_app(app_spec)


@command.command("list")
@click.option("--queue", "-Q", help="Only this queue.")
@click.option("--limit", "-n", default=50, show_default=True, help="At most this many.")
@JSON_OPTION
@click.pass_obj
@user_errors
def list_(app: App, queue: str | None, limit: int, as_json: bool) -> None:
    """Dead messages, oldest first: id, task, queue, reason, error, deliveries, when."""
    rows = app.backend.messages(queue=queue, state=State.DEAD, limit=limit)
    if as_json:
        emit_json([_summary(m) for m in rows])
        return
    table = Table(title=f"dead messages{f' in {queue!r}' if queue else ''}", title_justify="left")
    for column in ("id", "task", "queue", "reason", "error", "deliveries", "died"):
        table.add_column(column, overflow="fold")
    for m in rows:
        s = _summary(m)
        error = ": ".join(x for x in (s["error_type"], s["error"]) if x) or "-"
        table.add_row(m.id, Text(m.task), Text(m.queue), Text(s["reason"] or "?", style="yellow"),
                      Text(error), f"{m.deliveries}/{m.max_deliveries}", ago(m.updated_at))
    out = console()
    out.print(table)
    if not rows:
        out.print("[green]the dead-letter store is empty[/]")
    elif len(rows) >= limit:
        out.print(f"showing the first {limit}; raise --limit to see more")


@command.command("show")
@click.argument("message_id")
@JSON_OPTION
@click.pass_obj
@user_errors
def show(app: App, message_id: str, as_json: bool) -> None:
    """One message: its arguments, every attempt, and the traceback of the last error."""
    m = app.backend.message(message_id)
    if m is None:
        raise click.ClickException(f"no message {message_id} in {app.backend.url}")
    data = _detail(m)
    if as_json:
        emit_json(plain(data))
        return
    out = console()
    out.print(f"[bold]{m.id}[/]  {escape(m.task)}  queue={escape(m.queue)}  "
              f"state=[bold]{m.state}[/]")
    if m.state != State.DEAD:
        out.print(f"[yellow]note: this message is {m.state}, not dead[/]")
    out.print(f"body: {data['body']}", markup=False, highlight=False, soft_wrap=True)
    out.print(f"created {when(m.created_at)}, last change {when(m.updated_at)}, "
              f"deliveries {m.deliveries}/{m.max_deliveries}, retries {m.retries}")
    if m.error:
        detail = ": ".join(x for x in (m.error.exc_type, m.error.message) if x)
        out.print(f"reason: [yellow]{escape(m.error.reason)}[/]  {escape(detail)}")
    table = Table(title="attempts", title_justify="left")
    for column in ("#", "worker", "started", "ended", "outcome", "error"):
        table.add_column(column, overflow="fold")
    for a in m.attempts:
        err = a.error
        text = ": ".join(x for x in (err.exc_type, err.message) if x) if err else ""
        table.add_row(str(a.delivery), Text(a.worker_id), when(a.started_at), when(a.ended_at),
                      Text(a.outcome or "running"), Text(text))
    out.print(table)
    if m.error and m.error.traceback:
        out.print("[bold]traceback[/]")
        out.print(m.error.traceback, markup=False, highlight=False)


def _dead_ids(app: App, queue: str | None) -> list[str]:
    return [m.id for m in app.backend.messages(queue=queue, state=State.DEAD, limit=SCAN_LIMIT)]


def _not_dead(app: App, ids: tuple[str, ...]) -> list[str]:
    missing = []
    for mid in ids:
        m = app.backend.message(mid)
        if m is None or m.state != State.DEAD:
            missing.append(f"{mid} ({'unknown' if m is None else m.state})")
    return missing


def _check_selection(ids: tuple[str, ...], all_: bool, queue: str | None) -> None:
    if ids and all_:
        raise click.UsageError("give message ids or --all, not both")
    if not ids and not all_:
        raise click.UsageError("give the ids of dead messages, or --all (with --queue Q)")
    if queue and not all_:
        raise click.UsageError("--queue narrows --all; with explicit ids it is not needed")


@command.command("requeue")
@click.argument("ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every dead message (of --queue, if given).")
@click.option("--queue", "-Q", help="With --all: only this queue.")
@JSON_OPTION
@click.pass_obj
@user_errors
def requeue(app: App, ids: tuple[str, ...], all_: bool, queue: str | None,
            as_json: bool) -> None:
    """Put dead messages back in their queue with a full retry and delivery budget."""
    _check_selection(ids, all_, queue)
    skipped = _not_dead(app, ids) if ids else []
    n = app.backend.requeue_dead(list(ids) if ids else None, queue=queue)
    if as_json:
        emit_json({"requeued": n, "not_dead": skipped})
    else:
        click.echo(f"requeued {n} message(s)")
    if skipped:
        raise click.ClickException(f"not requeued, not dead: {', '.join(skipped)}")


@command.command("purge")
@click.argument("ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every dead message (of --queue, if given).")
@click.option("--queue", "-Q", help="With --all: only this queue.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@JSON_OPTION
@click.pass_obj
@user_errors
def purge(app: App, ids: tuple[str, ...], all_: bool, queue: str | None, yes: bool,
          as_json: bool) -> None:
    """Delete dead messages for good (the counters keep counting them as dead)."""
    _check_selection(ids, all_, queue)
    skipped = _not_dead(app, ids) if ids else []
    count = len(ids) - len(skipped) if ids else len(_dead_ids(app, queue))
    if count and not yes:
        scope = f"{count} dead message(s)" + (f" of queue {queue!r}" if queue else "")
        click.confirm(f"delete {scope} from {app.backend.url} for good?", abort=True)
    n = app.backend.purge_dead(list(ids) if ids else None, queue=queue) if count else 0
    if as_json:
        emit_json({"purged": n, "not_dead": skipped})
    else:
        click.echo(f"purged {n} message(s)")
    if skipped:
        raise click.ClickException(f"not purged, not dead: {', '.join(skipped)}")
