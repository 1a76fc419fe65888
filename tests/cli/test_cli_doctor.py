"""``stalwart doctor`` and ``stalwart migrate`` against real stores."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest

from stalwart.backends.base import Backend, WorkerInfo
from stalwart.testing.faults import redis_server
from stalwart.testing.services import available_kinds, in_ci, postgres_url, redis_url

from .conftest import APP, run_cli


def _doctor(broker: str, app: str = APP) -> tuple[int, dict[str, Any], str]:
    r = run_cli("doctor", app, "--json", broker=broker)
    assert r.stdout, r.stderr
    return r.returncode, json.loads(r.stdout), r.stderr


def _need(kind: str) -> None:
    if kind not in available_kinds():
        pytest.skip(f"the {kind} backend is not in this tree (or excluded by "
                    "STALWART_TEST_BACKENDS)")


@pytest.fixture
def redis_broker() -> Iterator[str]:
    _need("redis")
    with redis_url() as url:
        yield url


@pytest.fixture
def postgres_broker() -> Iterator[str]:
    _need("postgres")
    with postgres_url() as url:
        yield url


def test_sqlite_durability_is_read_back_and_passes(broker: str) -> None:
    status, data, _ = _doctor(broker)
    assert status == 0 and data["status"] == 0 and data["warnings"] == []
    facts = data["sections"]["durability"]["facts"]
    assert facts["journal_mode"] == "wal" and facts["synchronous"] == "FULL"
    human = run_cli("doctor", APP, broker=broker)
    assert human.returncode == 0 and "no warnings" in human.stdout


def _register(store: Backend, wid: str, keepalive: bool) -> None:
    conn = {"fd": 7, "local": "10.0.0.5:40000", "peer": "10.0.0.9:6379",
            "keepalive": keepalive, "idle": 60 if keepalive else 7200, "interval": 10,
            "count": 9}
    store.register_worker(WorkerInfo(id=wid, hostname="host-b", pid=99, queues=("images",),
                                     started_at=time.time(), meta={"connections": [conn]}),
                          ttl=60)


def test_a_worker_reporting_a_connection_without_keepalive_fails_the_check(
    broker: str, cli_store: Backend
) -> None:
    _register(cli_store, "w-good", keepalive=True)
    status, data, _ = _doctor(broker)
    assert status == 0, data["warnings"]
    (worker,) = data["sections"]["workers"]["workers"]
    assert worker["connections"][0]["peer"] == "10.0.0.9:6379"

    _register(cli_store, "w-bad", keepalive=False)
    status, data, _ = _doctor(broker)
    assert status == 1
    (warning,) = data["warnings"]
    assert "w-bad" in warning and "10.0.0.9:6379" in warning and "SO_KEEPALIVE off" in warning
    human = run_cli("doctor", APP, broker=broker)
    assert human.returncode == 1 and "SO_KEEPALIVE off" in human.stdout


def test_unreachable_backend_exits_2() -> None:
    _need("redis")
    r = run_cli("doctor", APP, "--json", broker="redis://127.0.0.1:1/0?prefix=t_none")
    data = json.loads(r.stdout)
    assert r.returncode == 2 and data["status"] == 2
    assert any("cannot" in w for w in data["warnings"])


def test_redis_connections_have_keepalive_and_durability_is_reported(redis_broker: str) -> None:
    status, data, _ = _doctor(redis_broker)
    conns = data["sections"]["connections"]["connections"]
    assert conns, "doctor must list the connection it used"
    assert all(c["keepalive"] and c["idle"] == 60 and c["interval"] == 10 and c["count"] == 9
               for c in conns)
    assert not any("SO_KEEPALIVE" in w for w in data["warnings"])
    facts = data["sections"]["durability"]["facts"]
    assert {"appendonly", "appendfsync", "maxmemory-policy"} <= set(facts)
    # The warnings that stand are durability ones only, and they set the exit status.
    assert all(w.startswith("durability:") for w in data["warnings"])
    assert status == (1 if data["warnings"] else 0)
    assert "skew_seconds" in data["sections"]["clock"]["facts"]


def test_redis_connection_without_keepalive_fails(redis_broker: str) -> None:
    broker = redis_broker.replace("redis://", "redis+nokeepalive://", 1)
    status, data, stderr = _doctor(broker, "cli.nokeepalive:app")
    assert status == 1, stderr
    conns = data["sections"]["connections"]["connections"]
    assert conns and not any(c["keepalive"] for c in conns)
    assert any(w.startswith("connections:") and "SO_KEEPALIVE off" in w
               for w in data["warnings"])


def test_postgres_durability_and_connections(postgres_broker: str) -> None:
    status, data, _ = _doctor(postgres_broker)
    facts = data["sections"]["durability"]["facts"]
    assert facts["synchronous_commit"] in ("on", "remote_apply", "remote_write", "local", "off")
    conns = data["sections"]["connections"]["connections"]
    assert conns and all(c["keepalive"] for c in conns)
    assert "skew_seconds" in data["sections"]["clock"]["facts"]
    assert status == (1 if data["warnings"] else 0)


def test_migrate_sqlite_has_nothing_to_do(broker: str) -> None:
    r = run_cli("migrate", APP, broker=broker)
    assert r.returncode == 0, r.stderr
    assert "nothing to migrate for this backend" in r.stdout


def test_migrate_postgres_creates_then_keeps_the_schema(postgres_broker: str) -> None:
    first = run_cli("migrate", APP, "--json", broker=postgres_broker)
    assert first.returncode == 0, first.stderr
    before, after = json.loads(first.stdout)["result"]
    assert before == 0 and after >= 1
    second = run_cli("migrate", APP, "--json", broker=postgres_broker)
    assert json.loads(second.stdout)["result"] == [after, after]


def test_redis_durability_warnings_follow_the_server_settings() -> None:
    """A redis-server of this test's own: durable and noeviction passes; each lapse warns."""
    _need("redis")
    if shutil.which("redis-server") is None:
        reason = "SERVICE UNAVAILABLE: redis-server binary not installed (apt-get install " \
                 "redis-server)"
        if in_ci():
            pytest.fail(reason)
        pytest.skip(reason)
    import redis

    with redis_server(appendonly=True, appendfsync="everysec") as server:
        url = f"{server.url}?prefix=t_doctor"
        status, data, _ = _doctor(url)
        facts = data["sections"]["durability"]["facts"]
        assert (facts["appendonly"], facts["appendfsync"], facts["maxmemory-policy"]) == (
            "yes", "everysec", "noeviction")
        assert status == 0, data["warnings"]

        client = redis.Redis(port=server.port)
        client.config_set("maxmemory-policy", "allkeys-lru")
        client.config_set("appendonly", "no")
        client.close()
        status, data, _ = _doctor(url)
        assert status == 1
        text = " ".join(data["warnings"])
        assert "maxmemory-policy is allkeys-lru" in text
        assert "appendonly is no" in text
