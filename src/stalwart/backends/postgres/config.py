"""What a ``postgresql://`` URL means: libpq connection parameters plus stalwart's options.

Stalwart's own options ride in the query string next to libpq's (``?schema=t_abc&
sslmode=require``) so that the URL alone lets another process reopen the same backend.
They are taken out before the rest goes to libpq, which would refuse them.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from ...errors import ConfigurationError
from ...net import ConnectionSettings
from .. import redact

DEFAULT_SCHEMA = "stalwart"

_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True, slots=True)
class PostgresOptions:
    """The backend's options, from the URL's query string or keyword arguments."""

    schema: str = DEFAULT_SCHEMA
    auto_migrate: bool = True
    # Seconds succeeded/cancelled rows stay; None (the default) keeps every row, as the
    # contract reads literally. Set ?retention=604800 to prune after a week.
    retention: float | None = None
    dead_retention: float | None = None  # seconds dead rows stay; None keeps them
    pool_min: int = 1
    pool_max: int = 4
    prune_batch: int = 500

    @property
    def quoted_schema(self) -> str:
        return f'"{self.schema}"'

    @property
    def channel(self) -> str:
        """The LISTEN/NOTIFY channel of this schema; each notification's payload is a queue.

        Channel names are identifiers (63 bytes at most): a long schema name is hashed.
        """
        name = f"stalwart_{self.schema}"
        if len(name) <= 63:
            return name
        return "stalwart_" + hashlib.sha256(self.schema.encode()).hexdigest()[:32]


_OPTION_NAMES = set(PostgresOptions.__dataclass_fields__)


def parse_url(url: str, options: dict[str, Any]) -> tuple[str, PostgresOptions]:
    """Split ``url`` into a libpq conninfo (without stalwart's options) and the options.

    Keyword ``options`` take precedence over the query string. Without a user in the URL
    (nor ``PGUSER``) the connection is made as ``postgres``.
    """
    parts = urlsplit(url)
    libpq_query, ours = [], {}
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key in _OPTION_NAMES:
            ours[key] = value
        else:
            libpq_query.append((key, value))
    ours.update(options)
    unknown = set(ours) - _OPTION_NAMES
    if unknown:
        raise ConfigurationError(
            f"unknown option(s) {sorted(unknown)} for {redact(url)!r}; "
            f"the PostgreSQL backend takes: {', '.join(sorted(_OPTION_NAMES))}"
        )
    netloc = parts.netloc
    if parts.username is None and "user" not in dict(libpq_query) and not os.environ.get(
        "PGUSER"
    ):
        netloc = f"postgres@{netloc}"
    # libpq reads "+" literally, so a space goes as %20 (``options=-c%20name%3Dvalue``).
    query = urlencode(libpq_query, quote_via=quote)
    conninfo = urlunsplit(("postgresql", netloc, parts.path, query, ""))
    return conninfo, _coerce(url, ours)


def _coerce(url: str, raw: dict[str, Any]) -> PostgresOptions:
    values: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            values[key] = _convert(key, value)
        except ValueError as exc:
            raise ConfigurationError(f"option {key}={value!r} in {redact(url)!r}: {exc}") from exc
    opts = PostgresOptions(**values)
    if not _SCHEMA_NAME.match(opts.schema):
        raise ConfigurationError(
            f"schema {opts.schema!r} in {redact(url)!r} is not a plain identifier; use letters, "
            "digits and underscores, starting with a letter or underscore (at most 63)"
        )
    return opts


def _convert(key: str, value: Any) -> Any:
    default = PostgresOptions.__dataclass_fields__[key].default
    if key == "schema":
        return str(value)
    if key == "auto_migrate":
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise ValueError("expected true or false")
    if key in ("retention", "dead_retention"):
        if value is None or str(value).lower() in ("", "none", "forever"):
            return None
        seconds = float(value)
        if seconds <= 0:
            raise ValueError("expected a positive number of seconds, or none to keep forever")
        return seconds
    number = int(value)
    if number < (0 if key == "pool_min" else 1):
        raise ValueError(f"expected a positive integer (default {default})")
    return number


def connect_kwargs(settings: ConnectionSettings) -> dict[str, Any]:
    """libpq parameters every connection gets: keepalive probes, connect timeout, a name."""
    return {**settings.libpq_kwargs(), "application_name": "stalwart"}
