"""``stalwart worker`` as a real process: results, Celery-style retries, bad messages, progress."""

from __future__ import annotations

import json

import pytest

from stalwart import State, TaskError
from stalwart.backends.base import NewMessage
from stalwart.ids import new_id
from stalwart.testing.workers import wait_until

from .conftest import all_final

pytestmark = pytest.mark.faults


def test_process_pool_runs_tasks_and_stores_results(client, start_worker, ledger):
    from tests.worker.apps.tasks import coro, work

    handles = [work.s(f"k{i}") for i in range(30)] + [coro.s("c")]
    sent = client.send(handles)
    worker = start_worker("-c", "2", "--log-format", "json")
    assert [h.result(timeout=20) for h in sent] == [f"k{i}" for i in range(30)] + ["C"]
    assert ledger().lost([f"k{i}" for i in range(30)]) == []
    assert worker.terminate() == 0
    lines = [json.loads(line) for line in worker.output().splitlines() if line.startswith("{")]
    done = [d for d in lines if d.get("action") == "succeeded"]
    assert len(done) == 31 and {"task", "id", "queue", "delivery", "duration"} <= done[0].keys()


def test_bind_retry_and_autoretry_behave_as_in_celery(client, start_worker, ledger):
    from tests.worker.apps import tasks

    flaky, capped, auto, other, failed = client.send([
        tasks.flaky.s("flaky", 2),  # self.retry twice, then succeeds
        tasks.flaky.s("capped", 5).set(max_retries=1),  # a per-call limit
        tasks.auto.s("auto"),  # autoretry_for=ValueError, max_retries=2
        tasks.not_covered.s("other"),  # KeyError is not in autoretry_for
        tasks.fails_hard.s("fail"),
    ])
    start_worker("-c", "2")
    assert flaky.result(timeout=20) == 2
    for handle, reason, exc_type, runs in [
        (capped, "retries-exhausted", "OSError", 2),
        (auto, "retries-exhausted", "ValueError", 3),
        (other, "exception", "KeyError", 1),
        (failed, "fail", "stalwart.errors.Fail", 1),
    ]:
        with pytest.raises(TaskError) as err:
            handle.result(timeout=20)
        assert (err.value.reason, err.value.exc_type) == (reason, exc_type)
        assert "Traceback" in (err.value.traceback or "")
        key = json.loads(handle.info().body)["args"][0]
        assert len(ledger().starts(key)) == runs, key
    assert [d for _, _, d in ledger().starts("flaky")] == ["0", "1", "2"]  # request.retries


def test_bad_messages_are_dead_lettered_never_run_or_dropped(client, start_worker):
    backend = client.backend
    garbage = new_id()
    backend.enqueue([NewMessage(id=garbage, task="x", body=b"\xff not json")])
    (nope,) = client.send([client.signature("tests.worker.apps.tasks.does_not_exist", 1)])
    start_worker("-c", "1")
    assert wait_until(lambda: all_final(client, [garbage, nope.id]), 15)
    assert backend.message(garbage).error.reason == "undecodable"
    info = backend.message(nope.id)
    assert (info.state, info.error.reason) == (State.DEAD, "unknown-task")


def test_unserialisable_result_is_dead_with_a_reason(client, start_worker):
    from tests.worker.apps.tasks import returns_object

    (h,) = client.send([returns_object.s("obj")])
    start_worker("-c", "1")
    with pytest.raises(TaskError) as err:
        h.result(timeout=15)
    assert err.value.reason == "exception" and "cannot be stored" in str(err.value)


def test_progress_is_written_while_the_task_runs(client, start_worker):
    from tests.worker.apps.tasks import chatty

    (h,) = client.send([chatty.s("chatty", 4, 0.6)])
    start_worker("-c", "1")
    seen = []

    def progressed():
        p = client.backend.message(h.id).progress
        if p is not None and (not seen or seen[-1] != p.done):
            seen.append(p.done)
        return len(seen) >= 2

    assert wait_until(progressed, 15)
    assert h.result(timeout=15) == 4
    assert seen == sorted(seen) and seen[-1] <= 4
