"""Backends by URL scheme: ``open_backend(url)`` picks the module, imported only when used."""

from __future__ import annotations

import importlib
import inspect
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..errors import ConfigurationError
from .base import Backend, Clock

# scheme -> "module:Class"; a backend module is imported only when its scheme is used, so
# the redis and psycopg packages stay optional extras.
SCHEMES: dict[str, str] = {
    "sqlite": "stalwart.backends.sqlite:SQLiteBackend",
    "redis": "stalwart.backends.redis:RedisBackend",
    "rediss": "stalwart.backends.redis:RedisBackend",
    "unix": "stalwart.backends.redis:RedisBackend",
    "postgresql": "stalwart.backends.postgres:PostgresBackend",
    "postgres": "stalwart.backends.postgres:PostgresBackend",
    "memory": "stalwart.testing.model:ModelBackend",
}

_EXTRAS = {"redis": "redis", "rediss": "redis", "unix": "redis",
           "postgresql": "postgres", "postgres": "postgres"}


def redact(url: str) -> str:
    """The URL with any password replaced by ``***``, safe to print and log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{user}:***@{host}", parts.path, parts.query, parts.fragment))


def open_backend(url: str, *, clock: Clock = time.time, **options: Any) -> Backend:
    """Open the backend that serves ``url``'s scheme, with backend-specific ``options``."""
    scheme = urlsplit(url).scheme
    target = SCHEMES.get(scheme)
    if target is None:
        known = ", ".join(sorted(s for s in SCHEMES if s != "memory"))
        raise ConfigurationError(
            f"no backend for URL scheme {scheme!r} in {redact(url)!r}; use one of: {known}"
        )
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        extra = _EXTRAS.get(scheme)
        if extra is None:
            raise
        raise ConfigurationError(
            f"the {scheme}:// backend needs an extra package ({exc.name}); "
            f"install it with: pip install 'stalwart[{extra}]'"
        ) from exc
    cls = getattr(module, class_name)
    accepted = inspect.signature(cls).parameters
    if "connection" in options and "connection" not in accepted:
        if "settings" in accepted:  # network backends name their ConnectionSettings "settings"
            options.setdefault("settings", options.pop("connection"))
        elif not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
            options.pop("connection")  # a backend without sockets (SQLite, memory) has no use
    backend: Backend = cls(url, clock=clock, **options)
    return backend
