"""PostgreSQL sessions of a running worker terminated mid-job: the job still ends succeeded.

The worker's own sessions are found by the client ports of its sockets, so the test
terminates exactly those (``pg_terminate_backend``) and nobody else's.
"""

from __future__ import annotations

import importlib.util
import time

import pytest

from stalwart import App, JobState, State
from stalwart.testing.services import random_namespace, require
from stalwart.testing.sockets import process_tree, tcp_local_ports

from . import ledger as ledger_mod

pytestmark = pytest.mark.faults
if importlib.util.find_spec("stalwart.backends.postgres") is None:
    pytest.skip("the postgres backend is not in this tree", allow_module_level=True)
psycopg = pytest.importorskip("psycopg")


def terminate_sessions_of(admin, root_pid: int) -> int:
    ports = [p for pid in process_tree(root_pid) for p in tcp_local_ports(pid)]
    rows = admin.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE client_port = ANY(%s) AND pid <> pg_backend_pid()", (ports,)).fetchall()
    return sum(1 for (ok,) in rows if ok)


def test_terminated_sessions_mid_job_fail_nothing(start_worker, ledger):
    require("postgres", "127.0.0.1", 5432)
    schema = random_namespace()
    url = f"postgresql://127.0.0.1:5432/test?schema={schema}"
    from .apps import record

    app = App("faults", broker=url)
    app.tasks.update({record.name: record})
    admin = psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True)
    try:
        job = app.job("terminate-run", [record.s(i, 0.01) for i in range(500)])
        worker = start_worker(url, "-Q", "default", "-c", "2", "--lease-seconds", "5",
                              "--heartbeat-seconds", "1")
        killed = rounds = 0
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            info = job.progress()
            if info.state != JobState.RUNNING:
                break
            if 0 < info.counts.succeeded < 450 and rounds < 6:
                killed += terminate_sessions_of(admin, worker.proc.pid)
                rounds += 1
            time.sleep(0.3)
        info = job.wait(timeout=90)
        tally = ledger_mod.read(ledger)
        print(f"postgres terminate: sessions_killed={killed} rounds={rounds} "
              f"{tally.summary(job.ids)} counts={info.counts}")
        assert worker.terminate() == 0, worker.output()[-3000:]
        assert killed >= 3, "the run ended before the worker's sessions could be terminated"
        assert info.state == JobState.SUCCEEDED, info.counts
        assert info.counts.dead == 0 and info.counts.unaccounted == 0
        assert tally.lost(job.ids) == []
        assert app.backend.messages(state=State.DEAD) == []
    finally:
        app.close()
        admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.close()
