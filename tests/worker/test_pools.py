"""The thread and async pools, and ``async def`` tasks in process children, as real workers."""

from __future__ import annotations

import signal
import time

import pytest
from tests.worker.apps.tasks import chatty, coro, coro_soft, hard, work

from stalwart import State, TaskError
from stalwart.testing.workers import wait_until

from .conftest import all_final

pytestmark = pytest.mark.faults


def test_thread_pool_runs_tasks_progress_and_hard_limits(client, start_worker, ledger):
    sent = client.send([work.s(f"t{i}", 0.05) for i in range(20)])
    (progress,) = client.send([chatty.s("chatty", 2, 0.2)])
    (limited,) = client.send([hard.s("hard")])
    worker = start_worker("-c", "4", "--pool", "thread")
    assert [h.result(timeout=20) for h in sent] == [f"t{i}" for i in range(20)]
    assert progress.result(timeout=10) == 2
    with pytest.raises(TaskError) as err:
        limited.result(timeout=20)
    assert err.value.exc_type == "stalwart.errors.TimeLimitExceeded"
    assert len(ledger().starts("hard")) == 2
    assert worker.terminate() == 0


def test_async_pool_runs_coroutines_concurrently(client, start_worker, ledger):
    keys = [f"a{i}" for i in range(20)]
    sent = client.send([coro.s(k, 1.0) for k in keys])
    (plain,) = client.send([work.s("sync")])  # a plain function goes to a thread
    (soft,) = client.send([coro_soft.s("soft")])
    began = time.monotonic()
    worker = start_worker("-c", "25", "--pool", "async")
    assert wait_until(lambda: all_final(client, [h.id for h in sent]), 20)
    took = time.monotonic() - began
    assert [h.result() for h in sent] == [k.upper() for k in keys]
    assert took < 8, f"20 one-second coroutines took {took:.1f}s: not concurrent"
    assert plain.result(timeout=10) == "sync"
    assert soft.result(timeout=10) == "cleaned up"
    assert worker.terminate() == 0


def test_async_def_task_soft_limit_in_a_process_child(client, start_worker, ledger):
    (h,) = client.send([coro_soft.s("soft")])
    start_worker("-c", "1")
    assert h.result(timeout=15) == "cleaned up"
    assert ledger().count("soft")["soft"] == 1


@pytest.mark.parametrize("pool", ["thread", "async"])
def test_shutdown_timeout_releases_stuck_tasks_and_exits(pool, client, start_worker, ledger):
    sent = client.send([work.s("stuck-sync", 30), coro.s("stuck-coro", 30)])
    worker = start_worker("-c", "2", "--pool", pool, "--shutdown-timeout", "0.5")
    assert wait_until(lambda: len(ledger().count("start")) == 2, 15)
    stopped_at = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(timeout=10) == 0
    assert time.monotonic() - stopped_at < 5, "a stuck thread kept the worker from exiting"
    for h in sent:
        info = h.info()
        assert info.state == State.QUEUED and info.attempts[-1].error.reason == "shutdown"
