"""``stalwart enqueue APP TASK --args JSON --kwargs JSON``: send one message from a shell.

The arguments are checked before anything is stored: bad JSON, args that are not a list or
kwargs that are not an object stop the command with nothing enqueued. A task name the App's
registry does not know is sent anyway (it may be defined only where the workers run), with a
warning, because a typo would otherwise end in the dead-letter store as ``unknown-task``.
"""

from __future__ import annotations

import json
from typing import Any

import click

from ..errors import StalwartError
from .common import APP_ARGUMENT, JSON_OPTION, emit_json, load_app
from .render import user_errors


def _parse(text: str, option: str, kind: type, kind_name: str) -> Any:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON ({exc}): {text!r}",
                                 param_hint=option) from exc
    if not isinstance(value, kind):
        raise click.BadParameter(
            f"must be a JSON {kind_name}, got {type(value).__name__}: {text!r}",
            param_hint=option,
        )
    return value


@click.command("enqueue")
@APP_ARGUMENT
@click.argument("task_name", metavar="TASK")
@click.option("--args", "args_json", default="[]", show_default=True,
              help='Positional arguments as a JSON list, e.g. \'[42, "x"]\'.')
@click.option("--kwargs", "kwargs_json", default="{}", show_default=True,
              help='Keyword arguments as a JSON object, e.g. \'{"size": 128}\'.')
@click.option("--queue", "-Q", help="Queue (default: the task's own, or the App's default).")
@click.option("--countdown", type=click.FloatRange(min=0), help="Run no sooner than S seconds.")
@click.option("--priority", type=click.IntRange(0, 9), help="0..9, higher first.")
@click.option("--idempotency-key", help="Enqueue at most once per key.")
@JSON_OPTION
@user_errors
def command(app_spec: str, task_name: str, args_json: str, kwargs_json: str,
            queue: str | None, countdown: float | None, priority: int | None,
            idempotency_key: str | None, as_json: bool) -> None:
    """Enqueue one message for TASK and print its id."""
    args = _parse(args_json, "--args", list, "list")
    kwargs = _parse(kwargs_json, "--kwargs", dict, "object")
    app = load_app(app_spec)
    known = task_name in app.tasks
    if not known:
        click.secho(
            f"warning: the App's registry does not know a task named {task_name!r}; sending "
            "it anyway (it may be defined only on the workers). If no worker knows it either, "
            "it ends in the dead-letter store as unknown-task.", fg="yellow", err=True,
        )
    sig = app.signature(task_name, *args, **kwargs).set(
        queue=queue, countdown=countdown, priority=priority, idempotency_key=idempotency_key,
    )
    try:
        handle = sig.apply_async()
    except StalwartError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        info = app.backend.message(handle.id)
        emit_json({
            "id": handle.id, "task": task_name, "known_task": known,
            "queue": info.queue if info else queue, "state": str(info.state) if info else None,
        })
    else:
        click.echo(handle.id)
