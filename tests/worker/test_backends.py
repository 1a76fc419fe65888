"""The same worker on every backend in the tree that other processes can reach.

The worker speaks only the Backend protocol, so each backend must carry it through the
same story: results, a child killed mid-task and redelivered at once, the registry.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from tests.worker.apps import tasks

from stalwart import App, State
from stalwart.testing.services import SHARED_KINDS, available_kinds, isolated_url
from stalwart.testing.workers import wait_until

from .conftest import all_final

pytestmark = pytest.mark.faults

KINDS = [k for k in available_kinds() if k in SHARED_KINDS]


@pytest.mark.parametrize("kind", KINDS)
def test_worker_on_each_backend(kind, tmp_path, start_worker, ledger, ledger_path,
                                monkeypatch):
    monkeypatch.setenv("WORKER_LEDGER", str(ledger_path))
    with isolated_url(kind, tmp_path) as url:
        client = App("worker-tests-client", broker=url)
        client.tasks.update(tasks.app.tasks)
        try:
            keys = [f"k{i}" for i in range(20)]
            sent = client.send([tasks.work.s(k) for k in keys])
            (victim,) = client.send([tasks.work.s("victim", 2.0)])
            worker = start_worker("-c", "2", "--worker-id", f"w-{kind}",
                                  "--heartbeat-seconds", "0.5", url=url)
            assert wait_until(lambda: ledger().starts("victim"), 20), worker.output()[-2000:]
            killed_at = time.time()
            os.kill(ledger().starts("victim")[0][0], signal.SIGKILL)
            assert wait_until(lambda: len(ledger().starts("victim")) == 2, 5)
            assert ledger().starts("victim")[1][1] - killed_at < 1.0
            ids = [h.id for h in sent] + [victim.id]
            assert wait_until(lambda: all_final(client, ids), 20), worker.output()[-2000:]
            assert {client.backend.message(i).state for i in ids} == {State.SUCCEEDED}
            assert ledger().lost([*keys, "victim"]) == [] and ledger().doubled() == []
            (info,) = client.backend.workers()
            assert info.id == f"w-{kind}" and info.meta["health"] == "ok"
            if kind != "sqlite":  # network sockets, each with keepalive as the kernel reports
                assert wait_until(lambda: client.backend.workers()[0].meta.get("connections"), 5)
                conns = client.backend.workers()[0].meta["connections"]
                assert all(c["keepalive"] and c["idle"] == 60 for c in conns), conns
            assert worker.terminate() == 0
            assert client.backend.workers() == []
        finally:
            client.close()
