"""Every TCP socket a running worker holds has keepalive on, read back from the kernel.

The sockets are duplicated out of the worker's processes (pidfd_getfd) and inspected with
getsockopt: the test trusts nothing the worker says about itself.
"""

from __future__ import annotations

import importlib.util
import os

import pytest

from stalwart import App
from stalwart.testing.services import random_namespace, require
from stalwart.testing.sockets import established_tcp_sockets, process_tree
from stalwart.testing.workers import wait_until

from . import ledger as ledger_mod

pytestmark = pytest.mark.faults

KINDS = [
    pytest.param("redis", f"redis://127.0.0.1:6379/0?prefix={random_namespace()}", 6379, id="redis"),
    pytest.param("postgres", f"postgresql://127.0.0.1:5432/test?schema={random_namespace()}", 5432,
                 id="postgres"),
]


@pytest.mark.parametrize(("kind", "url", "port"), KINDS)
def test_every_worker_socket_has_keepalive(kind, url, port, start_worker, ledger):
    if importlib.util.find_spec(f"stalwart.backends.{kind}") is None:
        pytest.skip(f"the {kind} backend is not in this tree")
    require(kind, "127.0.0.1", port)
    if os.geteuid() != 0:
        pytest.skip("reading another process's sockets needs ptrace rights (run as root)")
    from .apps import record

    app = App("faults", broker=url)
    app.tasks.update({record.name: record})
    worker = start_worker(url, "-Q", "default", "-c", "2", "--heartbeat-seconds", "1")
    accepted = [h.id for h in app.send([record.s(i) for i in range(20)])]
    assert wait_until(lambda: not ledger_mod.read(ledger).lost(accepted), timeout=60), \
        worker.output()[-3000:]
    try:
        sockets = [s for pid in process_tree(worker.proc.pid)
                   for s in established_tcp_sockets(pid)]
        assert sockets, "the worker holds no established TCP socket to its broker"
        for s in sockets:
            ka = s.keepalive
            print(f"{kind} pid={s.pid} fd={s.fd} {ka.local}->{ka.peer} keepalive={ka.keepalive} "
                  f"idle={ka.idle} intvl={ka.interval} cnt={ka.count}")
            assert ka.keepalive, f"socket {ka.local}->{ka.peer} of pid {s.pid} has no SO_KEEPALIVE"
            assert (ka.idle, ka.interval, ka.count) == (60, 10, 9)
    finally:
        assert worker.terminate() == 0
        app.close()
