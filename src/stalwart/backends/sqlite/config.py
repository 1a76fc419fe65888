"""A ``sqlite:`` URL read into settings, with every mistake reported before the file is touched."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ...errors import ConfigurationError

DEFAULT_BUSY_TIMEOUT = 30.0
OPTIONS = ("busy_timeout", "retention")


@dataclass(frozen=True, slots=True)
class SQLiteSettings:
    """Where the database is and how patient to be with other processes."""

    path: str  # absolute: a later chdir (a daemonizing worker) must not move the database
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT
    retention: float | None = None


def settings_from_url(url: str, given: dict[str, Any]) -> SQLiteSettings:
    """Settings from ``url`` and keyword options (which win over the query string)."""
    path = os.path.abspath(database_path(url))
    busy_timeout, retention = _options(url, given)
    check_writable(path, url)
    return SQLiteSettings(path, busy_timeout, retention)


def database_path(url: str) -> str:
    """The file path in a ``sqlite:`` URL: three slashes relative, four absolute."""
    parts = urlsplit(url)
    if parts.netloc:
        raise ConfigurationError(
            f"SQLite URL {url!r} has a host part ({parts.netloc!r}); write the file after three "
            "slashes: sqlite:///relative/path.db or sqlite:////absolute/path.db"
        )
    path = unquote(parts.path[1:]) if parts.path.startswith("/") else unquote(parts.path)
    if not path or path == ":memory:" or path.startswith("file:"):
        raise ConfigurationError(
            f"SQLite URL {url!r} names no database file; use sqlite:///stalwart.db (a file "
            "shared by every worker process), or memory:// for an in-process store in tests"
        )
    return path


def check_writable(path: str, url: str) -> None:
    """Fail early, and say what to do, when WAL cannot create its files beside ``path``."""
    full = os.path.abspath(path)
    directory = os.path.dirname(full)
    if os.path.isdir(full):
        raise ConfigurationError(
            f"the SQLite database path {full!r} (from {url!r}) is a directory; name a file "
            f"in it, e.g. sqlite:///{os.path.join(full, 'stalwart.db')}"
        )
    if not os.path.isdir(directory):
        raise ConfigurationError(
            f"the directory of the SQLite database {full!r} (from {url!r}) does not exist; "
            f"create it (mkdir -p {directory}) or point the URL at an existing directory"
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigurationError(
            f"the directory {directory!r} of the SQLite database {full!r} is not writable; "
            "SQLite in WAL mode creates -wal and -shm files beside the database, so give this "
            "user write access to the directory or choose another path"
        )
    if os.path.exists(full) and not os.access(full, os.R_OK | os.W_OK):
        raise ConfigurationError(
            f"the SQLite database {full!r} is not readable and writable by this user; fix its "
            "permissions or choose another path"
        )


def _options(url: str, given: dict[str, Any]) -> tuple[float, float | None]:
    merged: dict[str, Any] = dict(parse_qsl(urlsplit(url).query))
    merged.update(given)
    unknown = sorted(set(merged) - set(OPTIONS))
    if unknown:
        raise ConfigurationError(
            f"unknown SQLite backend option(s) {', '.join(unknown)} in {url!r}; "
            f"known: {', '.join(OPTIONS)}"
        )
    busy = _seconds("busy_timeout", merged.get("busy_timeout", DEFAULT_BUSY_TIMEOUT))
    raw = merged.get("retention")
    retention = None if raw in (None, "", "none") else _seconds("retention", raw)
    return busy, retention


def _seconds(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = -1.0
    if number < 0:
        raise ConfigurationError(f"SQLite option {name}={value!r} must be a number of seconds >= 0")
    return number
