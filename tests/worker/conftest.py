"""Fixtures for the worker tests: a SQLite file, a ledger, and real ``stalwart worker`` processes."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stalwart import App
from stalwart.states import FINAL_STATES
from stalwart.testing.workers import WorkerProcess

ROOT = Path(__file__).resolve().parents[2]
APP_SPEC = "tests.worker.apps.tasks:app"


@dataclass
class Ledger:
    """What the tasks wrote: one line per start/end/soft event, with pid and time."""

    events: list[tuple[str, str, int, float, str]] = field(default_factory=list)

    def count(self, event: str) -> Counter[str]:
        return Counter(key for e, key, *_ in self.events if e == event)

    def starts(self, key: str) -> list[tuple[int, float, str]]:
        return [(pid, at, d) for e, k, pid, at, d in self.events if e == "start" and k == key]

    def lost(self, keys: list[str]) -> list[str]:
        """Keys whose task never ran to its end."""
        ended = self.count("end")
        return [k for k in keys if ended[k] == 0]

    def doubled(self) -> list[str]:
        """Keys whose task ran to its end more than once."""
        return [k for k, n in self.count("end").items() if n > 1]



def read_ledger(path: Path) -> Ledger:
    ledger = Ledger()
    if path.exists():
        for line in path.read_text().splitlines():
            event, key, pid, at, detail = line.split(" ", 4)
            ledger.events.append((event, key, int(pid), float(at), detail))
    return ledger


@pytest.fixture
def broker(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'queue.db'}"


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    return tmp_path / "ledger.txt"


@pytest.fixture
def ledger(ledger_path: Path) -> Callable[[], Ledger]:
    return lambda: read_ledger(ledger_path)


@pytest.fixture
def client(broker: str, ledger_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[App]:
    """An App on the test's broker that knows the test tasks (so their options apply)."""
    monkeypatch.setenv("WORKER_LEDGER", str(ledger_path))
    from tests.worker.apps import tasks

    app = App("worker-tests-client", broker=broker)
    app.tasks.update(tasks.app.tasks)
    yield app
    app.close()


@pytest.fixture
def start_worker(tmp_path: Path, broker: str, ledger_path: Path
                 ) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(*args: str, url: str | None = None) -> WorkerProcess:
        env = {**os.environ, "STALWART_BROKER": url or broker, "WORKER_LEDGER": str(ledger_path),
               "PYTHONPATH": str(ROOT)}
        w = WorkerProcess(APP_SPEC, list(args), env, tmp_path / f"worker{len(started)}.log", ROOT)
        started.append(w)
        return w

    yield start
    for w in started:
        w.reap()


def all_final(app: App, ids: list[str]) -> bool:
    backend = app.backend
    return all((info := backend.message(i)) is not None and info.state in FINAL_STATES
               for i in ids)
