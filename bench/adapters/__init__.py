"""One adapter per system measured; each row of the results is (adapter module, variant).

An adapter module holds the system's three tasks (see ``base``) and a class ``Adapter`` with:

* ``batch_api``: the name of the call that stores many messages at once, or None;
* ``settings(processes)``: what was configured, in words, for the results;
* ``open(ns)``: point producers at phase ``ns`` (a new queue or store for each phase);
* ``enqueue(calls, batched)``: send ``calls`` one by one, or in one batch call;
* ``worker_commands(processes)``: the command lines of one worker with that many processes;
* ``close()``.

The module is imported in its own venv (``venv``: ``main`` or ``redis5``) by ``bench.driver``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    name: str
    module: str
    variant: str
    venv: str
    package: str


ROWS: tuple[Row, ...] = (
    Row("stalwart (Redis)", "stalwart", "redis", "main", "stalwart"),
    Row("stalwart (SQLite)", "stalwart", "sqlite", "main", "stalwart"),
    Row("stalwart (PostgreSQL)", "stalwart", "postgres", "main", "stalwart"),
    Row("Celery", "celery", "default", "main", "celery"),
    Row("Celery acks_late", "celery", "acks_late", "main", "celery"),
    Row("Dramatiq", "dramatiq", "default", "main", "dramatiq"),
    Row("huey", "huey", "default", "main", "huey"),
    Row("RQ", "rq", "default", "main", "rq"),
    Row("arq", "arq", "default", "redis5", "arq"),
    Row("taskiq", "taskiq", "default", "main", "taskiq"),
    Row("SAQ", "saq", "default", "redis5", "saq"),
)

# --systems accepts a system name (every row of it) or a row's slug.
SYSTEMS = ("stalwart", "celery", "dramatiq", "huey", "rq", "arq", "taskiq", "saq")


def slug(row: Row) -> str:
    base = row.module
    return base if row.variant == "default" else f"{base}-{row.variant.replace('_', '-')}"


def select(spec: str | None) -> list[Row]:
    """Rows named by ``--systems a,b`` (system names or row slugs); every row by default."""
    if not spec:
        return list(ROWS)
    wanted = [s.strip().lower() for s in spec.split(",") if s.strip()]
    chosen = []
    for w in wanted:
        rows = [r for r in ROWS if w in (slug(r), r.module)]
        if not rows:
            known = ", ".join(list(SYSTEMS) + [slug(r) for r in ROWS if slug(r) not in SYSTEMS])
            raise SystemExit(f"unknown system {w!r}; choose from: {known}")
        chosen += [r for r in rows if r not in chosen]
    return chosen
