"""The supervisor in this process, on the in-memory model with the thread pool.

For what a real process cannot show cheaply: a consume loop hung inside a backend call, a
lease recovered under a running task, signed messages.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from tests.worker.apps import tasks

from stalwart import App, State
from stalwart.errors import BackendError
from stalwart.testing.model import ModelBackend
from stalwart.testing.workers import wait_until
from stalwart.worker import Supervisor


@pytest.fixture
def memory(ledger_path, monkeypatch) -> tuple[App, ModelBackend]:
    monkeypatch.setenv("WORKER_LEDGER", str(ledger_path))
    client = App("worker-tests-client", broker="memory://")
    client.tasks.update(tasks.app.tasks)
    return client, client.backend.inner  # type: ignore[attr-defined]


@contextmanager
def running(sup: Supervisor) -> Iterator[Supervisor]:
    thread = threading.Thread(target=sup.run, daemon=True)
    thread.start()
    try:
        yield sup
    finally:
        sup.request_stop()
        thread.join(15)
        assert not thread.is_alive()


class HangingBackend:
    """A connection whose claim hangs until it is closed, like a socket to a dead peer."""

    def __init__(self, inner: ModelBackend, hang: bool) -> None:
        self.inner = inner
        self.hang = hang
        self.closed = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def claim(self, *args: Any, **kwargs: Any) -> Any:
        if self.hang:
            self.closed.wait(30)
            raise BackendError("connection closed while a call was in flight")
        return self.inner.claim(*args, **kwargs)

    def exchange(self, outcomes: Any, queues: Any, *claim_args: Any, wait: float = 0.0) -> Any:
        applied = self.inner.settle(outcomes) if outcomes else []
        return applied, self.claim(queues, *claim_args[:3])  # every claim goes the same way

    def close(self) -> None:
        self.closed.set()


def test_a_hung_consume_loop_is_reopened_by_the_watchdog(memory, caplog):
    client, model = memory
    opened: list[HangingBackend] = []

    def factory() -> HangingBackend:
        opened.append(HangingBackend(model, hang=not opened))  # only the first one hangs
        return opened[-1]

    (h,) = client.send([tasks.work.s("after-stall")])
    sup = Supervisor(tasks.app, ["default"], concurrency=1, pool="thread", lease_seconds=3,
                     heartbeat_seconds=0.2, install_signals=False, backend_factory=factory,
                     health_port=0)
    seen, codes = set(), set()

    def probe() -> bool:
        seen.add(sup.health())
        if sup.health_port:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{sup.health_port}/", timeout=2):
                    codes.add(200)
            except urllib.error.HTTPError as e:
                codes.add(e.code)
        return model.message(h.id).state == State.SUCCEEDED

    with caplog.at_level(logging.INFO, logger="stalwart"), running(sup):
        assert wait_until(probe, 10)
        assert wait_until(lambda: sup.health() == "ok", 5)
        assert wait_until(lambda: probe() and 200 in codes, 5)
    assert "stalled" in seen and codes == {200, 503}
    assert opened[0].closed.is_set() and len(opened) >= 3  # loop, heartbeat, reopened loop
    text = caplog.text
    assert "consume loop stalled" in text and "backend reopened" in text


class BrokenBackend(HangingBackend):
    """A connection left in a bad state: every claim fails, and retrying it will not help."""

    def claim(self, *args: Any, **kwargs: Any) -> Any:
        if self.hang:
            raise BackendError("protocol error: connection out of sync")
        return self.inner.claim(*args, **kwargs)


def test_a_backend_failing_every_call_is_reopened(memory, caplog):
    client, model = memory
    opened: list[BrokenBackend] = []

    def factory() -> BrokenBackend:
        opened.append(BrokenBackend(model, hang=not opened))
        return opened[-1]

    (h,) = client.send([tasks.work.s("after-errors")])
    sup = Supervisor(tasks.app, ["default"], concurrency=1, pool="thread",
                     install_signals=False, backend_factory=factory)
    seen = set()
    with caplog.at_level(logging.INFO, logger="stalwart"), running(sup):
        assert wait_until(lambda: seen.add(sup.health()) or model.message(h.id).state
                          == State.SUCCEEDED, 10)
    assert "backend-failing" in seen and "backend reopened" in caplog.text


def test_a_lease_lost_under_a_running_task_is_not_settled_as_ours(memory, caplog):
    client, model = memory
    now = [time.time()]
    model.clock = lambda: now[0]
    (h,) = client.send([tasks.work.s("overtaken", 1.0)])
    sup = Supervisor(tasks.app, ["default"], concurrency=1, pool="thread", lease_seconds=3,
                     heartbeat_seconds=0.2, prefetch=0, install_signals=False,
                     backend_factory=lambda: model)
    with caplog.at_level(logging.INFO, logger="stalwart"), running(sup):
        assert wait_until(lambda: model.message(h.id).state == State.RUNNING, 5)
        now[0] += 100  # the lease runs out while the task still runs
        assert model.recover_expired() == [(h.id, State.QUEUED)]
        assert wait_until(lambda: model.message(h.id).state == State.SUCCEEDED, 10)
    info = model.message(h.id)
    assert info.deliveries == 2
    assert [a.outcome for a in info.attempts] == ["lease-expired", "succeeded"]
    assert "lease lost" in caplog.text and "outcome dropped" in caplog.text


def test_unsigned_and_forged_messages_are_dead_lettered(memory):
    client, model = memory
    worker_app = App("signed-worker", broker="memory://", signing_keys=["current", "old"])
    worker_app.tasks.update(tasks.app.tasks)
    forger = App("forger", broker="memory://", signing_keys=["guess"])
    good = App("producer", broker="memory://", signing_keys=["old"])
    for app in (forger, good):
        app.tasks.update(tasks.app.tasks)
        app._backend = client.backend  # type: ignore[assignment]
        app._backend_pid = client._backend_pid
    (unsigned,) = client.send([tasks.work.s("unsigned")])
    (forged,) = forger.send([tasks.work.s("forged")])
    (signed,) = good.send([tasks.work.s("signed")])
    sup = Supervisor(worker_app, ["default"], concurrency=1, pool="thread",
                     install_signals=False, backend_factory=lambda: model)
    with running(sup):
        assert wait_until(lambda: model.message(signed.id).state == State.SUCCEEDED, 10)
        assert wait_until(lambda: model.message(forged.id).state == State.DEAD, 5)
    assert model.message(unsigned.id).error.reason == "unsigned"
    assert model.message(forged.id).error.reason == "unsigned"


def test_progress_reports_are_throttled(memory):
    client, model = memory
    (h,) = client.send([tasks.chatty.s("chatty", 50, 0.02)])
    writes = []
    real = model.progress

    def counting(*args: Any) -> bool:
        writes.append(args[1])
        return real(*args)

    model.progress = counting  # type: ignore[method-assign]
    sup = Supervisor(tasks.app, ["default"], concurrency=1, pool="thread",
                     install_signals=False, backend_factory=lambda: model)
    with running(sup):
        assert wait_until(lambda: model.message(h.id).state == State.SUCCEEDED, 10)
    assert 1 <= len(writes) < 10, writes  # 50 reports in ~1 s: about one write per second
