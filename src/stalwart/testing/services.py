"""Real services for tests: is one reachable, and a fresh isolated backend URL per test.

Each backend kind gets its own namespace per test (a temp file, a Redis key prefix, a
PostgreSQL schema) and is cleaned up afterwards, so tests never flush shared state and can
run beside other people's tests on the same servers. A kind takes part only when its module
is in the tree, so a backend joins the suite as soon as it is committed.

Environment:

* ``CI=true``: a missing service fails the test instead of skipping it.
* ``STALWART_TEST_BACKENDS=memory,sqlite``: restrict the kinds (default: every available one).
* ``STALWART_TEST_REDIS=host:port``, ``STALWART_TEST_POSTGRES=user@host:port/dbname``.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

KINDS = ("memory", "sqlite", "redis", "postgres")

_MODULES = {
    "memory": "stalwart.testing.model",
    "sqlite": "stalwart.backends.sqlite",
    "redis": "stalwart.backends.redis",
    "postgres": "stalwart.backends.postgres",
}

# Kinds whose store outlives the backend object, so other processes can open it by URL.
SHARED_KINDS = frozenset({"sqlite", "redis", "postgres"})


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require(service_name: str, host: str, port: int, timeout: float = 1.0) -> None:
    """Skip the test, loudly, when ``host:port`` does not accept TCP; fail instead in CI."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as exc:
        reason = (
            f"SERVICE UNAVAILABLE: {service_name} at {host}:{port} is not reachable ({exc}); "
            f"start it to run this test"
        )
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing service is a failure)", pytrace=False)
    pytest.skip(reason)


def available_kinds() -> list[str]:
    """Backend kinds whose module exists in the tree, optionally narrowed by the env."""
    wanted = os.environ.get("STALWART_TEST_BACKENDS")
    kinds = [k.strip() for k in wanted.split(",") if k.strip()] if wanted else list(KINDS)
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"STALWART_TEST_BACKENDS names unknown kinds {unknown}; use {KINDS}")
    return [k for k in kinds if _module_exists(_MODULES[k])]


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def random_namespace() -> str:
    """A name no other test uses: ``t_`` and 12 hex digits (valid as a schema and key prefix)."""
    return "t_" + secrets.token_hex(6)


def _hostport(env: str, default_host: str, default_port: int) -> tuple[str, int]:
    value = os.environ.get(env)
    if not value:
        return default_host, default_port
    host, _, port = value.rpartition(":")
    return host or default_host, int(port)


def redis_address() -> tuple[str, int]:
    return _hostport("STALWART_TEST_REDIS", "127.0.0.1", 6379)


def postgres_address() -> tuple[str, str, int, str]:
    """(user, host, port, database) of the test PostgreSQL server."""
    value = os.environ.get("STALWART_TEST_POSTGRES", "postgres@127.0.0.1:5432/test")
    user, _, rest = value.rpartition("@")
    hostport, _, dbname = rest.partition("/")
    host, _, port = hostport.rpartition(":")
    return user or "postgres", host, int(port), dbname or "test"


# --- one isolated store per test ------------------------------------------------------------


@contextmanager
def memory_url(workdir: Path | None = None) -> Iterator[str]:
    """``memory://``: every ``open_backend`` of it is a new empty store, in this process only."""
    yield "memory://"


@contextmanager
def sqlite_url(workdir: Path | None = None) -> Iterator[str]:
    """A fresh database file in ``workdir`` (or a temp dir), removed with its WAL afterwards."""
    with tempfile.TemporaryDirectory(dir=workdir, prefix="stalwart-") as tmp:
        yield f"sqlite:///{Path(tmp) / 'queue.db'}"


@contextmanager
def redis_url(workdir: Path | None = None) -> Iterator[str]:
    """The shared Redis with a key prefix of its own; its keys are deleted afterwards."""
    host, port = redis_address()
    require("Redis", host, port)
    prefix = random_namespace()
    try:
        yield f"redis://{host}:{port}/0?prefix={prefix}"
    finally:
        delete_redis_keys(host, port, prefix)


def delete_redis_keys(host: str, port: int, prefix: str) -> int:
    """Delete every key containing ``prefix`` (hash tags may wrap it), by SCAN, never FLUSH."""
    import redis

    client = redis.Redis(host=host, port=port, db=0, socket_connect_timeout=5, socket_timeout=30)
    try:
        deleted, batch = 0, []
        for key in client.scan_iter(match=f"*{prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 500:
                deleted += client.delete(*batch)
                batch.clear()
        if batch:
            deleted += client.delete(*batch)
        return deleted
    finally:
        client.close()


@contextmanager
def postgres_url(workdir: Path | None = None) -> Iterator[str]:
    """The shared test database with a schema of its own, dropped (CASCADE) afterwards."""
    user, host, port, dbname = postgres_address()
    require("PostgreSQL", host, port)
    schema = random_namespace()
    try:
        yield f"postgresql://{user}@{host}:{port}/{dbname}?schema={schema}"
    finally:
        drop_postgres_schema(f"postgresql://{user}@{host}:{port}/{dbname}", schema)


def drop_postgres_schema(dsn: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute("SET lock_timeout = '10s'")
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


_FACTORIES = {
    "memory": memory_url,
    "sqlite": sqlite_url,
    "redis": redis_url,
    "postgres": postgres_url,
}


@contextmanager
def isolated_url(kind: str, workdir: Path | None = None) -> Iterator[str]:
    """A URL to a new empty store of ``kind``, cleaned up when the block ends."""
    try:
        factory = _FACTORIES[kind]
    except KeyError:
        raise ValueError(f"unknown backend kind {kind!r}; use one of {KINDS}") from None
    with factory(workdir) as url:
        yield url
