"""The embedded default backend: one SQLite file in WAL mode, shared by processes on one host.

``sqlite:///stalwart.db`` is relative to the working directory (resolved once, when opened),
``sqlite:////abs/path.db`` absolute. Options go in the query string or as keyword arguments:

* ``busy_timeout`` (seconds, default 30): how long an operation keeps retrying while another
  process holds the write lock, with backoff, before the driver's "database is locked"
  error is raised (which the library classifies as transient);
* ``retention`` (seconds, default none): ``recover_expired`` deletes ``succeeded`` and
  ``cancelled`` rows older than this, freeing their idempotency keys; dead messages stay in
  the dead-letter store until purged. Counters keep every deleted row.

Modules: ``config`` reads the URL, ``connections`` owns connections, transactions and the
schema (``schema.sql``), ``backend`` implements the contract, ``reads`` the inspection.
"""

from .backend import SQLiteBackend
from .connections import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "SQLiteBackend"]
