"""Fixtures for the fault tests: a real worker as a subprocess, and a ledger it writes."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stalwart.testing.workers import WorkerProcess

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ledger(tmp_path: Path) -> Path:
    return tmp_path / "ledger.txt"


@pytest.fixture
def start_worker(tmp_path: Path, ledger: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(broker: str, *args: str, extra_env: dict[str, str] | None = None) -> WorkerProcess:
        env = {**os.environ, "STALWART_BROKER": broker, "FAULT_LEDGER": str(ledger),
               "PYTHONPATH": str(ROOT), **(extra_env or {})}
        w = WorkerProcess("tests.faults.apps:app", list(args), env,
                          tmp_path / f"worker{len(started)}.log", ROOT)
        started.append(w)
        return w

    yield start
    for w in started:
        w.reap()
