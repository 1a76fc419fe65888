"""Opening the file: URL forms, options, schema version, and errors that say what to do."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from stalwart.backends import open_backend
from stalwart.backends.base import NewMessage
from stalwart.backends.sqlite import SCHEMA_VERSION, SQLiteBackend
from stalwart.errors import BackendError, ConfigurationError, SchemaError


def test_three_slashes_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    backend = open_backend("sqlite:///stalwart.db")
    backend.enqueue([NewMessage("m1", "t")])
    assert (tmp_path / "stalwart.db").exists()
    # Resolved when opened: a later chdir does not move it, even for a new thread.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    seen: list[object] = []
    thread = threading.Thread(target=lambda: seen.append(backend.message("m1")))
    thread.start()
    thread.join()
    assert seen[0] is not None
    assert not (elsewhere / "stalwart.db").exists()
    backend.close()


def test_four_slashes_is_absolute_and_a_second_opener_sees_the_same_store(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'abs.db'}"
    assert url.startswith("sqlite:////")
    with open_backend(url) as first:
        first.enqueue([NewMessage("m1", "t", body=b"hello")])
    with open_backend(url) as second:
        info = second.message("m1")
        assert info is not None and info.body == b"hello"


def test_the_file_is_in_wal_mode_with_the_current_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    SQLiteBackend(f"sqlite:///{path}").close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()


def test_connections_are_durable_on_commit(tmp_path: Path) -> None:
    backend = SQLiteBackend(f"sqlite:///{tmp_path / 'sync.db'}")
    # FULL is 2: each commit is fsynced before enqueue returns.
    assert backend._conn().execute("PRAGMA synchronous").fetchone()[0] == 2
    backend.close()


def test_a_missing_directory_is_named_with_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "deeper"
    with pytest.raises(ConfigurationError) as caught:
        SQLiteBackend(f"sqlite:///{missing / 'x.db'}")
    assert str(missing) in str(caught.value)
    assert "mkdir" in str(caught.value)


_OPEN_AS_OTHER_USER = """
import sys
from stalwart.backends.sqlite import SQLiteBackend
from stalwart.errors import ConfigurationError
try:
    SQLiteBackend(sys.argv[1])
except ConfigurationError as exc:
    print(exc)
"""


def test_an_unwritable_directory_is_named_with_the_fix() -> None:
    base = Path(tempfile.mkdtemp(prefix="stalwart-ro-"))
    locked = base / "ro"
    locked.mkdir()
    base.chmod(0o755)
    locked.chmod(0o555)
    url = f"sqlite:///{locked / 'x.db'}"
    try:
        if os.geteuid() != 0:
            with pytest.raises(ConfigurationError) as caught:
                SQLiteBackend(url)
            text = str(caught.value)
        else:  # root writes anywhere: check as an unprivileged user instead
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("running as root without setpriv to drop privileges")
            text = subprocess.run(
                [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
                 sys.executable, "-c", _OPEN_AS_OTHER_USER, url],
                capture_output=True, text=True, timeout=60, check=True,
            ).stdout
        assert str(locked) in text
        assert "write access" in text
    finally:
        shutil.rmtree(base)


def test_a_directory_instead_of_a_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="is a directory"):
        SQLiteBackend(f"sqlite:///{tmp_path}")


def test_a_file_that_is_not_a_database_gives_a_clear_backend_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(os.urandom(8192))
    with pytest.raises(BackendError) as caught:
        SQLiteBackend(f"sqlite:///{path}")
    assert str(path) in str(caught.value)
    assert "corrupt" in str(caught.value)


def test_a_newer_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    SQLiteBackend(f"sqlite:///{path}").close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaError) as caught:
        SQLiteBackend(f"sqlite:///{path}")
    assert "upgrade stalwart" in str(caught.value)


def test_another_applications_database_is_not_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE customers (id INTEGER)")
    conn.commit()
    conn.close()
    with pytest.raises(SchemaError, match="customers"):
        SQLiteBackend(f"sqlite:///{path}")


def test_options_come_from_the_query_string_or_keywords(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'opts.db'}?busy_timeout=2.5&retention=60"
    backend = SQLiteBackend(url)
    assert (backend.busy_timeout, backend.retention) == (2.5, 60.0)
    backend.close()
    backend = open_backend(url, busy_timeout=7)
    assert backend.busy_timeout == 7.0  # type: ignore[attr-defined]
    backend.close()
    with pytest.raises(ConfigurationError, match="busy_timout"):
        SQLiteBackend(f"sqlite:///{tmp_path / 'opts.db'}?busy_timout=2")
    with pytest.raises(ConfigurationError, match="seconds"):
        SQLiteBackend(f"sqlite:///{tmp_path / 'opts.db'}?busy_timeout=soon")


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite://host/x.db"])
def test_urls_without_a_file_are_refused_with_the_right_form(url: str) -> None:
    with pytest.raises(ConfigurationError, match="sqlite:///"):
        SQLiteBackend(url)


def test_a_closed_backend_says_so(tmp_path: Path) -> None:
    backend = SQLiteBackend(f"sqlite:///{tmp_path / 'closed.db'}")
    backend.close()
    with pytest.raises(BackendError, match="closed"):
        backend.enqueue([NewMessage("m1", "t")])


# -- wait ---------------------------------------------------------------------------------


def test_wait_times_out_when_nothing_comes(tmp_path: Path) -> None:
    backend = SQLiteBackend(f"sqlite:///{tmp_path / 'wait.db'}")
    started = time.monotonic()
    assert backend.wait(["q"], 0.3) is False
    assert 0.25 <= time.monotonic() - started < 1.0
    backend.close()


def test_wait_wakes_soon_after_another_connection_enqueues(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'wake.db'}"
    waiter, producer = SQLiteBackend(url), SQLiteBackend(url)
    timer = threading.Timer(0.3, lambda: producer.enqueue([NewMessage("m1", "t", queue="q")]))
    started = time.monotonic()
    timer.start()
    assert waiter.wait(["q"], 5.0) is True
    assert time.monotonic() - started < 1.0
    timer.join()
    waiter.close()
    producer.close()


def test_wait_ignores_commits_to_other_queues(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    waiter, producer = SQLiteBackend(url), SQLiteBackend(url)
    timer = threading.Timer(0.1, lambda: producer.enqueue([NewMessage("m1", "t", queue="x")]))
    timer.start()
    assert waiter.wait(["q"], 0.5) is False
    timer.join()
    waiter.close()
    producer.close()


def test_wait_wakes_when_a_scheduled_message_becomes_due(tmp_path: Path) -> None:
    backend = SQLiteBackend(f"sqlite:///{tmp_path / 'eta.db'}")
    backend.enqueue([NewMessage("m1", "t", queue="q", eta=time.time() + 0.4)])
    started = time.monotonic()
    assert backend.wait(["q"], 5.0) is True
    assert 0.3 <= time.monotonic() - started < 1.5
    assert [d.lease.message_id for d in backend.claim(["q"], 1, 30, "w")] == ["m1"]
    backend.close()
