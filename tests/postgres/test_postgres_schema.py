"""The backend's own schema: created on first use, versioned, refused when too new."""

from __future__ import annotations

import threading

import psycopg
import pytest

from stalwart.backends import open_backend
from stalwart.backends.base import NewMessage
from stalwart.backends.postgres import PostgresBackend
from stalwart.backends.postgres.migrate import LATEST
from stalwart.errors import ConfigurationError, SchemaError
from stalwart.ids import new_id


def _versions(dsn: str, schema: str) -> list[int]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(f'SELECT version FROM "{schema}".schema_version ORDER BY 1')
        return [r[0] for r in rows]


def test_first_use_creates_the_schema_and_records_its_version(
    pg_url: str, dsn: str, schema: str
) -> None:
    with PostgresBackend(pg_url) as b:
        b.enqueue([NewMessage(new_id(), "t")])
        assert b.schema_version() == LATEST
        assert b.server_info()["schema_version"] == LATEST
    assert _versions(dsn, schema) == list(range(1, LATEST + 1))


def test_a_schema_newer_than_the_code_is_refused(pg_url: str, dsn: str, schema: str) -> None:
    with PostgresBackend(pg_url) as b:
        b.migrate()
    with psycopg.connect(dsn) as conn:
        conn.execute(
            f'INSERT INTO "{schema}".schema_version (version, name, applied_at)'
            " VALUES (%s, 'from_the_future', 0)", (LATEST + 1,))
    with PostgresBackend(pg_url) as b:
        with pytest.raises(SchemaError, match=rf"version {LATEST + 1}.*upgrade stalwart"):
            b.enqueue([NewMessage(new_id(), "t")])
        with pytest.raises(SchemaError, match="newer than this stalwart"):
            b.migrate()
    assert _versions(dsn, schema)[-1] == LATEST + 1


def test_without_auto_migrate_a_missing_schema_says_how_to_create_it(pg_url: str) -> None:
    with open_backend(pg_url + "&auto_migrate=false") as b:
        with pytest.raises(SchemaError, match="stalwart migrate"):
            b.claim(["default"], 1, 30, "w")
        assert b.migrate() == (0, LATEST)  # type: ignore[attr-defined]
        assert b.claim(["default"], 1, 30, "w") == []
        assert b.migrate() == (LATEST, LATEST)  # type: ignore[attr-defined]


def test_many_first_uses_at_once_create_the_schema_once(
    pg_url: str, dsn: str, schema: str
) -> None:
    backends = [PostgresBackend(pg_url) for _ in range(6)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(backends))

    def first_use(b: PostgresBackend) -> None:
        try:
            start.wait()
            b.enqueue([NewMessage(new_id(), "t")])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=first_use, args=(b,)) for b in backends]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for b in backends:
        b.close()
    assert errors == []
    assert _versions(dsn, schema) == list(range(1, LATEST + 1))
    with PostgresBackend(pg_url) as b:
        [stats] = b.queue_stats()
        assert stats.counts.accepted == len(backends)


def test_url_options_and_defaults(pg_url: str) -> None:
    bare = pg_url.replace("postgresql://postgres@", "postgres://")
    with open_backend(bare) as b:
        assert b.enqueue([NewMessage(new_id(), "t")])
        assert b.url == bare
    secret = pg_url.replace("postgres@", "postgres:hunter2@")
    with open_backend(secret) as b:
        assert "hunter2" not in b.url and "***" in b.url
    with pytest.raises(ConfigurationError, match="schema"):
        open_backend(pg_url.rpartition("?")[0] + "?schema=bad-name;drop")
    with pytest.raises(ConfigurationError, match="unknown option"):
        open_backend(pg_url, prefix="x")


def test_a_schema_dropped_under_a_running_backend_comes_back_on_next_use(
    pg_url: str, dsn: str, schema: str
) -> None:
    with PostgresBackend(pg_url) as b:
        b.enqueue([NewMessage(new_id(), "t")])
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
        with pytest.raises(psycopg.errors.UndefinedTable):
            b.claim(["default"], 1, 30, "w")
        assert b.claim(["default"], 1, 30, "w") == []
        assert b.schema_version() == LATEST
