"""Redis under real network faults: resets mid-run, a crash and AOF restart, an unreachable server.

Each test runs a real worker process against a redis-server of its own (through a loopback
proxy that injects the fault), counts every execution in a ledger, and asserts lost == 0.
"""

from __future__ import annotations

import shutil
import time

import pytest

from stalwart import App, BrokerUnavailable, JobState, State
from stalwart.testing.faults import RedisServer, TcpProxy
from stalwart.testing.services import in_ci
from stalwart.testing.workers import wait_until

from . import ledger as ledger_mod

pytestmark = pytest.mark.faults
redis = pytest.importorskip("redis")
WORKER_ARGS = ["-Q", "default", "-c", "2", "--lease-seconds", "5", "--heartbeat-seconds", "1"]


@pytest.fixture
def redis_server():
    if shutil.which("redis-server") is None:
        reason = "SERVICE UNAVAILABLE: redis-server binary not installed (apt-get install redis-server)"
        if in_ci():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    with RedisServer(appendonly=True, appendfsync="always") as server:
        yield server


def producer(url: str, **kw) -> App:
    from . import apps

    app = App("faults", broker=url, **kw)
    app.tasks.update(apps.app.tasks)  # same task names as the worker's App
    return app


def test_connection_resets_mid_job_fail_nothing(redis_server, start_worker, ledger):
    with TcpProxy(redis_server.port) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        app = producer(redis_server.url)
        from .apps import record

        job = app.job("reset-run", [record.s(i, 0.01) for i in range(500)])
        worker = start_worker(url, *WORKER_ARGS)
        resets = 0
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            info = job.progress()
            if info.state != JobState.RUNNING:
                break
            if 0 < info.counts.succeeded < 450 and resets < 8:
                resets += proxy.reset()  # RST both ends of every open connection
            time.sleep(0.25)
        info = job.wait(timeout=60)
        tally = ledger_mod.read(ledger)
        print(f"redis reset: resets={resets} {tally.summary(job.ids)} counts={info.counts}")
        assert worker.terminate() == 0, worker.output()[-3000:]
    assert resets >= 3, "the run ended before the proxy could reset connections mid-job"
    assert info.state == JobState.SUCCEEDED, info.counts
    assert info.counts.dead == 0 and info.counts.unaccounted == 0
    assert tally.lost(job.ids) == []
    assert app.backend.messages(state=State.DEAD) == []  # nothing dead-lettered by a reset


def test_redis_killed_and_restarted_with_aof_loses_nothing(redis_server, start_worker, ledger):
    app = producer(redis_server.url)
    from .apps import record

    handles = app.send([record.s(i, 0.02) for i in range(300)])
    accepted = [h.id for h in handles]
    worker = start_worker(redis_server.url, *WORKER_ARGS)
    assert wait_until(lambda: len(ledger_mod.read(ledger).ended) >= 50, timeout=60)
    redis_server.restart()  # SIGKILL the server, start it again on the same port and AOF
    restarted_at = time.monotonic()
    assert wait_until(lambda: not ledger_mod.read(ledger).lost(accepted), timeout=90)
    tally = ledger_mod.read(ledger)
    print(f"redis restart: recovered in {time.monotonic() - restarted_at:.1f}s "
          f"{tally.summary(accepted)}")
    assert worker.terminate() == 0, worker.output()[-3000:]
    assert tally.lost(accepted) == []
    stats = {s.queue: s.counts for s in app.backend.queue_stats()}
    assert stats["default"].succeeded == 300 and stats["default"].unaccounted == 0


def test_unreachable_redis_at_enqueue_raises_within_deadline(redis_server):
    with TcpProxy(redis_server.port) as proxy:
        proxy.refuse(True)
        app = producer(f"redis://user:hunter2@127.0.0.1:{proxy.port}/0", broker_deadline=2.0)
        from .apps import record

        started = time.monotonic()
        with pytest.raises(BrokerUnavailable) as err:
            app.send([record.s(1)])
        elapsed = time.monotonic() - started
        assert 1.5 <= elapsed < 8, elapsed
        assert "hunter2" not in str(err.value) and "127.0.0.1" in str(err.value)
        proxy.refuse(False)
    direct = producer(redis_server.url)
    assert sum(s.counts.accepted for s in direct.backend.queue_stats()) == 0  # nothing half-written
