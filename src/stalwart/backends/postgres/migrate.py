"""Schema migrations: numbered ``.sql`` files applied in order, recorded in a version table.

Each backend owns one schema. ``schema_version`` holds one row per applied migration. All
of it runs in one transaction under an advisory lock, so that many processes starting at
once against an empty database create the schema exactly once, and a failed upgrade leaves
nothing half done.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from ...errors import SchemaError
from ..base import Clock

_FILE = re.compile(r"^(\d{4})_(\w+)\.sql$")
# First key of the advisory lock taken around migrations (the second is the schema's hash).
_LOCK_CLASS = 0x5354  # "ST"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """Every migration shipped with this version of stalwart, oldest first."""
    folder = resources.files(__package__).joinpath("migrations")
    found = []
    for entry in folder.iterdir():
        match = _FILE.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text("utf-8")))
    return sorted(found, key=lambda m: m.version)


LATEST = migrations()[-1].version


def current_version(conn: psycopg.Connection, schema: str) -> int:
    """The newest applied migration in ``schema``; 0 when the schema is not there yet."""
    row = conn.execute(
        "SELECT to_regclass(format('%%I.schema_version', %s::text)) IS NOT NULL", (schema,)
    ).fetchone()
    if not row or not row[0]:
        return 0
    quoted = f'"{schema}"'
    found = conn.execute(f"SELECT coalesce(max(version), 0) FROM {quoted}.schema_version")
    version = found.fetchone()
    return int(version[0]) if version else 0


def too_new(schema: str, version: int) -> SchemaError:
    return SchemaError(
        f"PostgreSQL schema {schema!r} is at version {version}, newer than this stalwart "
        f"understands (up to {LATEST}); upgrade stalwart on this host, or point it at "
        "another schema with ?schema=NAME in the URL"
    )


def migrate(conn: psycopg.Connection, schema: str, clock: Clock) -> tuple[int, int]:
    """Create or upgrade ``schema`` to the latest version; return (before, after).

    ``conn`` must be an autocommit connection. Raises SchemaError when the stored schema is
    newer than this code.
    """
    # A session lock taken before BEGIN: the transaction then starts after the previous
    # holder committed, so its catalog caches see the schema that holder created.
    key = (_LOCK_CLASS, schema)
    conn.execute("SELECT pg_advisory_lock(%s, hashtext(%s))", key)
    try:
        return _apply(conn, schema, clock)
    finally:
        if not conn.closed:
            conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", key)


def _apply(conn: psycopg.Connection, schema: str, clock: Clock) -> tuple[int, int]:
    quoted = f'"{schema}"'
    with conn.transaction():
        before = current_version(conn, schema)
        if before > LATEST:
            raise too_new(schema, before)
        if before == LATEST:
            return before, before
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {quoted}.schema_version ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at double precision NOT NULL)"
        )
        conn.execute(f"SET LOCAL search_path TO {quoted}")
        for m in migrations():
            if m.version > before:
                conn.execute(m.sql.encode("utf-8"), prepare=False)
                conn.execute(
                    f"INSERT INTO {quoted}.schema_version (version, name, applied_at)"
                    " VALUES (%s, %s, %s)",
                    (m.version, m.name, clock()),
                )
    return before, LATEST
