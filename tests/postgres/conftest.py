"""Fixtures for PostgreSQL-only tests: a fresh schema per test, dropped afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stalwart.backends.postgres import PostgresBackend
from stalwart.testing.conformance.fixtures import FakeClock
from stalwart.testing.services import isolated_url


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    """``postgresql://...?schema=t_<random>``; skipped loudly (failed in CI) without a server."""
    with isolated_url("postgres", tmp_path) as url:
        yield url


@pytest.fixture
def dsn(pg_url: str) -> str:
    """The same database as ``pg_url`` as a plain libpq URL (no stalwart options)."""
    return pg_url.partition("?")[0]


@pytest.fixture
def schema(pg_url: str) -> str:
    return pg_url.rpartition("schema=")[2]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def pg(pg_url: str, clock: FakeClock) -> Iterator[PostgresBackend]:
    b = PostgresBackend(pg_url, clock=clock)
    try:
        yield b
    finally:
        b.close()
