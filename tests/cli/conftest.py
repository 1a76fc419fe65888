"""Helpers for the command-line tests: a fresh SQLite store per test and the CLI as a process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stalwart.backends import open_backend
from stalwart.backends.base import Backend
from stalwart.testing.services import sqlite_url

TESTS_DIR = Path(__file__).resolve().parent.parent
APP = "cli.apps:app"  # tests/cli/apps.py, importable from TESTS_DIR


def run_cli(*args: str, broker: str | None = None, input: str | None = None,
            timeout: float = 60.0, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess[str]:
    """``python -m stalwart ARGS`` in a real process, with STALWART_BROKER set to ``broker``."""
    full_env = {**os.environ, **(env or {})}
    if broker is not None:
        full_env["STALWART_BROKER"] = broker
    full_env.setdefault("COLUMNS", "200")
    return subprocess.run(
        [sys.executable, "-m", "stalwart", *args], cwd=TESTS_DIR, env=full_env, input=input,
        capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[str]:
    """A URL to a new, empty SQLite store."""
    with sqlite_url(tmp_path) as url:
        yield url


@pytest.fixture
def cli_store(broker: str) -> Iterator[Backend]:
    """The same store opened in this process, to set up and inspect what the CLI did."""
    backend = open_backend(broker)
    try:
        yield backend
    finally:
        backend.close()
