"""Crashes, kills, time limits and shutdown with real processes: nothing is ever lost.

Each task appends its start and end to a ledger; a test counts executions that never
ended (lost) and ones that ended twice (duplicated), and checks the final states.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest
from tests.worker.apps.tasks import hard, poison, soft, suicidal_once, work

from stalwart import State, TaskError
from stalwart.testing.workers import wait_until

from .conftest import all_final

pytestmark = pytest.mark.faults

SHORT_LEASE = ("--lease-seconds", "3", "--heartbeat-seconds", "1")


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(p) for p in path.read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def kill_children_until_done(client, workers, ids, seed: int, pause: tuple[float, float],
                             timeout: float) -> int:
    """SIGKILL a random child of ``workers`` every ``pause`` seconds until ``ids`` are final."""
    rng = random.Random(seed)
    kills = 0
    deadline = time.monotonic() + timeout
    while not all_final(client, ids) and time.monotonic() < deadline:
        time.sleep(rng.uniform(*pause))
        pids = [c for w in workers for c in children(w.pid)]
        if pids:
            try:
                os.kill(rng.choice(pids), signal.SIGKILL)
                kills += 1
            except ProcessLookupError:
                pass
    return kills


def test_child_killed_mid_task_is_redelivered_at_once(client, start_worker, ledger):
    (h,) = client.send([work.s("victim", 2.0)])
    start_worker("-c", "1")
    assert wait_until(lambda: ledger().starts("victim"), 15)
    pid = ledger().starts("victim")[0][0]
    killed_at = time.time()
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: len(ledger().starts("victim")) == 2, 5)
    pid2, again_at, _ = ledger().starts("victim")[1]
    print(f"child SIGKILL -> running again in {again_at - killed_at:.3f}s")
    assert pid2 != pid and again_at - killed_at < 1.0
    assert h.result(timeout=10) == "victim"
    info = h.info()
    assert info.deliveries == 2 and info.attempts[0].error.reason == "worker-lost"
    assert ledger().count("end")["victim"] == 1


def test_child_exiting_by_itself_is_noticed_and_replaced(client, start_worker):
    (h,) = client.send([suicidal_once.s("quitter")])
    start_worker("-c", "1")
    assert h.result(timeout=15) == 2
    assert "exit code 3" in (h.info().attempts[0].error.message or "")


def test_whole_worker_killed_then_new_worker_recovers_within_the_lease(
        client, start_worker, ledger):
    keys = [f"w{i}" for i in range(6)]
    sent = client.send([work.s(k, 1.5) for k in keys])
    first = start_worker("-c", "2", *SHORT_LEASE)
    assert wait_until(lambda: sum(ledger().count("start").values()) >= 2, 15)
    first.kill_all()
    killed_at = time.time()
    interrupted = [k for k in keys if ledger().count("start")[k] and not ledger().count("end")[k]]
    start_worker("-c", "2", *SHORT_LEASE)
    assert wait_until(lambda: all_final(client, [h.id for h in sent]), 30)
    book = ledger()
    again = min(book.starts(k)[1][1] for k in interrupted)
    print(f"worker SIGKILL (lease 3s) -> running again in {again - killed_at:.3f}s")
    assert again - killed_at < 3 + 2.0
    assert book.lost(keys) == [] and book.doubled() == []
    assert {h.state() for h in sent} == {State.SUCCEEDED}


def test_task_running_three_leases_long_runs_exactly_once(client, start_worker, ledger):
    (h,) = client.send([work.s("long", 6.0)])
    lease = ("--lease-seconds", "2", "--heartbeat-seconds", "0.5")
    start_worker("-c", "1", *lease)
    start_worker("-c", "1", *lease)  # a second worker that would steal an expired lease
    assert h.result(timeout=20) == "long"
    assert len(ledger().starts("long")) == 1
    assert h.info().deliveries == 1


def test_soft_time_limit_is_raised_inside_the_task(client, start_worker, ledger):
    (h,) = client.send([soft.s("soft")])
    start_worker("-c", "1")
    assert h.result(timeout=15) == "cleaned up"
    assert ledger().count("soft")["soft"] == 1


def test_hard_time_limit_kills_replaces_and_retries(client, start_worker, ledger):
    (h,) = client.send([hard.s("hard")])
    start_worker("-c", "1")
    with pytest.raises(TaskError) as err:
        h.result(timeout=20)
    assert (err.value.reason, err.value.exc_type) == (
        "retries-exhausted", "stalwart.errors.TimeLimitExceeded")
    runs = ledger().starts("hard")
    assert len(runs) == 2 and runs[0][0] != runs[1][0]  # a new child after the kill
    attempts = h.info().attempts
    assert [a.error.reason for a in attempts] == ["time-limit", "retries-exhausted"]
    (after,) = client.send([work.s("after")])
    assert after.result(timeout=10) == "after"


def test_poison_task_ends_dead_after_max_deliveries(client, start_worker, ledger):
    (h,) = client.send([poison.s("poison")])
    start_worker("-c", "1")
    with pytest.raises(TaskError) as err:
        h.result(timeout=20)
    assert err.value.reason == "worker-lost"
    assert len(ledger().starts("poison")) == 3 == h.info().deliveries


def test_sigterm_waits_for_running_tasks_and_gives_back_the_rest(client, start_worker, ledger):
    keys = [f"t{i}" for i in range(8)]
    sent = client.send([work.s(k, 1.5) for k in keys])
    worker = start_worker("-c", "2", "--prefetch", "2")
    assert wait_until(lambda: sum(ledger().count("start").values()) == 2, 15)
    running = [k for k in keys if ledger().count("start")[k]]
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(timeout=20) == 0
    book = ledger()
    assert all(book.count("end")[k] == 1 for k in running)  # waited for them
    states = {h.id: h.info() for h in sent}
    assert sum(i.state == State.SUCCEEDED for i in states.values()) == 2
    queued = [i for i in states.values() if i.state == State.QUEUED]
    assert len(queued) == 6 and all(i.deliveries == 0 for i in queued)  # prefetch undone
    assert client.backend.workers() == []
    start_worker("-c", "2")
    assert wait_until(lambda: all_final(client, [h.id for h in sent]), 20)
    assert ledger().lost(keys) == [] and ledger().doubled() == []


def test_shutdown_timeout_releases_the_interrupted_task(client, start_worker, ledger):
    (h,) = client.send([work.s("slow", 20)])
    worker = start_worker("-c", "1", "--shutdown-timeout", "0.5")
    assert wait_until(lambda: ledger().starts("slow"), 15)
    worker.proc.send_signal(signal.SIGTERM)
    assert worker.proc.wait(timeout=10) == 0
    info = h.info()
    assert info.state == State.QUEUED and info.attempts[-1].error.reason == "shutdown"


def test_second_signal_stops_at_once_and_releases(client, start_worker, ledger):
    (h,) = client.send([work.s("slow", 20)])
    worker = start_worker("-c", "1")
    assert wait_until(lambda: ledger().starts("slow"), 15)
    worker.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    worker.proc.send_signal(signal.SIGINT)
    assert worker.proc.wait(timeout=5) == 0
    assert h.info().state == State.QUEUED


def test_thousand_tasks_with_random_child_kills_lose_nothing(client, start_worker, ledger):
    keys = [f"m{i}" for i in range(1000)]
    sent = client.send([work.s(k, 0.02) for k in keys])
    ids = [h.id for h in sent]
    workers = [start_worker("-c", "2") for _ in range(2)]
    kills = kill_children_until_done(client, workers, ids, 7, (0.05, 0.2), 120)
    book = ledger()
    lost, doubled = book.lost(keys), book.doubled()
    interrupted = sum(book.count("start").values()) - sum(book.count("end").values())
    print(f"1000 tasks, {kills} child kills, {interrupted} runs interrupted: "
          f"lost={len(lost)} duplicated={len(doubled)}")
    assert kills >= 10 and interrupted >= 5  # the kills did hit running tasks
    assert lost == []
    assert {h.state() for h in sent} == {State.SUCCEEDED}
    stats = {s.queue: s.counts for s in client.backend.queue_stats()}
    assert stats["default"].succeeded == 1000 and stats["default"].unaccounted == 0
    for w in workers:
        assert w.terminate() == 0


def test_short_tasks_queued_in_a_killed_child_run_elsewhere_uncounted(
        client, start_worker, ledger):
    """Short tasks wait in a busy child's pipe; a kill must not lose or count the waiting ones."""
    keys = [f"q{i}" for i in range(600)]
    sent = client.send([work.s(k, 0.002) for k in keys])
    worker = start_worker("-c", "2")
    kills = kill_children_until_done(client, [worker], [h.id for h in sent], 11, (0.03, 0.08), 90)
    book = ledger()
    returned = worker.output().count("returned")
    print(f"600 short tasks, {kills} child kills, {returned} queued jobs returned: "
          f"lost={len(book.lost(keys))}")
    # Each kill took one or more jobs waiting behind the one it interrupted.
    assert kills >= 5 and returned > kills
    assert book.lost(keys) == []
    assert {h.state() for h in sent} == {State.SUCCEEDED}
    starts = book.count("start")
    extra = [h.info().deliveries - starts[k] for h, k in zip(sent, keys, strict=True)]
    # A kill counts the delivery it interrupted, even one killed before its first line ran;
    # the returned jobs add none. Counted, they would exceed the kills.
    assert min(extra) >= 0 and sum(extra) <= kills
    assert worker.terminate() == 0


def test_children_die_with_their_supervisor(client, start_worker, ledger):
    (h,) = client.send([work.s("orphan", 20)])
    worker = start_worker("-c", "1")
    assert wait_until(lambda: ledger().starts("orphan"), 15)
    child = ledger().starts("orphan")[0][0]
    os.kill(worker.pid, signal.SIGKILL)  # the supervisor alone
    worker.proc.wait()
    assert wait_until(lambda: not Path(f"/proc/{child}").exists(), 3), \
        "an orphaned child kept running its task after the supervisor died"


def test_per_call_time_limits_override_the_task(client, start_worker, ledger):
    hard_call, soft_call = client.send([
        work.s("call-hard", 10).set(time_limit=0.5, max_retries=0),
        soft.s("call-soft").set(soft_time_limit=0.2),
    ])
    began = time.monotonic()
    start_worker("-c", "2")
    with pytest.raises(TaskError) as err:
        hard_call.result(timeout=15)
    assert err.value.exc_type == "stalwart.errors.TimeLimitExceeded"
    assert soft_call.result(timeout=15) == "cleaned up"
    assert time.monotonic() - began < 8
