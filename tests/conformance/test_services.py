"""The test services themselves: a missing service skips (fails in CI), stores are cleaned up."""

import socket
from pathlib import Path

import pytest

from stalwart.backends import open_backend
from stalwart.testing.conformance.checks import new_message
from stalwart.testing.conformance.fixtures import EPOCH, FakeClock
from stalwart.testing.services import (
    available_kinds,
    isolated_url,
    postgres_address,
    redis_address,
    require,
)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_service_skips_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    port = _closed_port()
    with pytest.raises(pytest.skip.Exception, match=f"SERVICE UNAVAILABLE: Thing at 127.0.0.1:{port}"):
        require("Thing", "127.0.0.1", port)


def test_unreachable_service_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require("Thing", "127.0.0.1", _closed_port())


def test_kinds_follow_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STALWART_TEST_BACKENDS", "memory")
    assert available_kinds() == ["memory"]
    monkeypatch.setenv("STALWART_TEST_BACKENDS", "memory,nosuch")
    with pytest.raises(ValueError, match="nosuch"):
        available_kinds()


def test_fake_clock_moves_only_forward() -> None:
    clock = FakeClock()
    assert clock() == EPOCH
    assert clock.advance(2.5) == EPOCH + 2.5 == clock()
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_isolated_store_is_empty_and_removed_afterwards(
    backend_kind: str, tmp_path: Path
) -> None:
    with isolated_url(backend_kind, tmp_path) as url:
        b = open_backend(url)
        try:
            assert b.queue_stats() == []
            b.enqueue([new_message()])
            assert len(b.queue_stats()) == 1
        finally:
            b.close()
    if backend_kind == "sqlite":
        assert list(tmp_path.iterdir()) == []
    elif backend_kind == "redis":
        import redis

        prefix = url.rsplit("prefix=", 1)[1]
        host, port = redis_address()
        client = redis.Redis(host=host, port=port)
        try:
            assert list(client.scan_iter(match=f"*{prefix}*")) == []
        finally:
            client.close()
    elif backend_kind == "postgres":
        import psycopg

        schema = url.rsplit("schema=", 1)[1]
        user, host, port, dbname = postgres_address()
        with psycopg.connect(f"postgresql://{user}@{host}:{port}/{dbname}") as conn:
            row = conn.execute(
                "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s",
                (schema,),
            ).fetchone()
            assert row == (0,)
