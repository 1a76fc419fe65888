"""What a postgresql:// URL means (no server needed)."""

from __future__ import annotations

import pytest
from psycopg.conninfo import conninfo_to_dict

from stalwart.backends.postgres.config import parse_url
from stalwart.errors import ConfigurationError


def test_stalwart_options_are_taken_out_and_libpq_ones_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PGUSER", raising=False)
    conninfo, opts = parse_url(
        "postgres://db.example:6543/app?schema=jobs&sslmode=require&retention=3600"
        "&auto_migrate=false", {"pool_max": 8})
    assert conninfo == "postgresql://postgres@db.example:6543/app?sslmode=require"
    assert (opts.schema, opts.retention, opts.auto_migrate, opts.pool_max) == (
        "jobs", 3600.0, False, 8)
    assert opts.dead_retention is None


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGUSER", "app")
    conninfo, opts = parse_url("postgresql://127.0.0.1/test", {})
    assert conninfo == "postgresql://127.0.0.1/test"  # libpq takes PGUSER itself
    assert (opts.schema, opts.auto_migrate, opts.retention) == ("stalwart", True, None)
    assert opts.channel == "stalwart_stalwart"


def test_a_long_schema_gets_a_channel_name_postgres_accepts() -> None:
    _, opts = parse_url("postgresql://u@h/d?schema=" + "s" * 63, {})
    assert len(opts.channel) <= 63 and opts.channel.startswith("stalwart_")


@pytest.mark.parametrize("query, complaint", [
    ("schema=a-b", "plain identifier"),
    ("retention=-1", "positive"),
    ("auto_migrate=maybe", "true or false"),
    ("pool_max=0", "positive integer"),
])
def test_bad_options_are_refused_with_a_hint(query: str, complaint: str) -> None:
    with pytest.raises(ConfigurationError, match=complaint):
        parse_url(f"postgresql://u:secret@h/d?{query}", {})


def test_errors_never_show_the_password() -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_url("postgresql://u:secret@h/d?schema=a-b", {})
    assert "secret" not in str(info.value)


def test_libpq_options_with_spaces_reach_libpq_intact() -> None:
    url = "postgresql://u@127.0.0.1/test?schema=s&options=-c%20lock_timeout%3D5s%20-c%20x%3Dy"
    conninfo, _ = parse_url(url, {})
    assert conninfo_to_dict(conninfo)["options"] == "-c lock_timeout=5s -c x=y"
