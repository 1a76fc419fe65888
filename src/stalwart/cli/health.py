"""``stalwart health APP --worker ID``: exit 0 only when that worker is registered and healthy.

For liveness probes that can run a command: a worker missing from the registry (its
heartbeat stopped) or reporting itself unhealthy (its consume loop stalled) exits 1.
"""

from __future__ import annotations

import sys

import click

from .common import APP_ARGUMENT, JSON_OPTION, emit_json, load_app


@click.command("health")
@APP_ARGUMENT
@click.option("--worker", "worker_id", required=True, help="The worker id (see stalwart status).")
@JSON_OPTION
def command(app_spec: str, worker_id: str, as_json: bool) -> None:
    """Check one worker's registry entry: exit 0 healthy, 1 missing or unhealthy."""
    app = load_app(app_spec)
    backend = app.backend
    try:
        found = next((w for w in backend.workers() if w.id == worker_id), None)
    finally:
        app.close()
    if found is None:
        if as_json:
            emit_json({"worker": worker_id, "health": "missing"})
        else:
            click.echo(f"worker {worker_id} is not registered (stopped, or its heartbeat is "
                       "late); see stalwart status for the live workers", err=True)
        sys.exit(1)
    health = str(found.meta.get("health", "unknown"))
    if as_json:
        emit_json({"worker": worker_id, "health": health, "last_seen": found.last_seen,
                   "meta": found.meta})
    else:
        click.echo(f"worker {worker_id}: {health}")
    sys.exit(0 if health == "ok" else 1)
