"""The PostgreSQL backend (``postgresql://`` and ``postgres://`` URLs).

Needs the ``postgres`` extra: ``pip install 'stalwart[postgres]'`` (psycopg 3 and
psycopg_pool). The schema is created on first use, or by ``stalwart migrate APP``.
"""

from __future__ import annotations

from .backend import PostgresBackend

__all__ = ["PostgresBackend"]
