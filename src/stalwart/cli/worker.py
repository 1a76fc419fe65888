"""``stalwart worker APP -Q q1,q2 -c N --pool process|thread|async``: run tasks until stopped."""

from __future__ import annotations

import os
import sys

import click

from .common import APP_ARGUMENT, load_app


@click.command("worker")
@APP_ARGUMENT
@click.option("-Q", "--queues", default=None,
              help="Comma-separated queues to consume (default: the App's default queue).")
@click.option("-c", "--concurrency", type=click.IntRange(min=1), default=None,
              help="Tasks run at once (default: the number of CPUs).")
@click.option("--pool", type=click.Choice(["process", "thread", "async"]), default="process",
              show_default=True, help="process: forked children; thread: I/O-bound tasks; "
                                      "async: async def tasks on one event loop.")
@click.option("--lease-seconds", type=click.FloatRange(min=0.5), default=None,
              help="Lease per delivery (default: the App's, 30).")
@click.option("--heartbeat-seconds", type=click.FloatRange(min=0.1), default=None,
              help="Seconds between heartbeats (default: the App's, 10).")
@click.option("--prefetch", type=click.IntRange(min=0), default=None,
              help="Deliveries claimed beyond the free slots (default: 4 x concurrency).")
@click.option("--shutdown-timeout", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="On SIGTERM, how long running tasks may take to finish.")
@click.option("--recover-interval", type=click.FloatRange(min=0.1), default=None,
              help="Seconds between recoveries of expired leases (default: min(5, lease/10)).")
@click.option("--health-port", type=click.IntRange(min=0, max=65535), default=None,
              help="Serve 200 (healthy) / 503 on http://127.0.0.1:PORT/ for liveness probes.")
@click.option("--worker-id", default=None, help="This worker's id in the registry "
                                                "(default: host:pid:random).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True)
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def command(app_spec: str, queues: str | None, concurrency: int | None, pool: str,
            lease_seconds: float | None, heartbeat_seconds: float | None, prefetch: int | None,
            shutdown_timeout: float, recover_interval: float | None, health_port: int | None,
            worker_id: str | None, log_level: str, log_format: str) -> None:
    """Run APP's tasks from the given queues until SIGTERM or Ctrl-C.

    The first signal stops claiming, gives back prefetched work, and waits up to
    --shutdown-timeout for running tasks; a second signal stops them at once. Their
    deliveries are given back either way, never lost.
    """
    from ..worker.logging import configure
    from ..worker.supervisor import Supervisor

    configure(log_level, log_format)
    app = load_app(app_spec)
    names = [q.strip() for q in (queues or app.default_queue).split(",") if q.strip()]
    supervisor = Supervisor(
        app, names, concurrency=concurrency or os.cpu_count() or 1, pool=pool,
        lease_seconds=lease_seconds, heartbeat_seconds=heartbeat_seconds, prefetch=prefetch,
        shutdown_timeout=shutdown_timeout, recover_interval=recover_interval,
        worker_id=worker_id, health_port=health_port,
    )
    sys.exit(supervisor.run())
