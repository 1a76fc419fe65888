"""Pytest fixtures for backend tests, shipped so a third-party backend can reuse them.

``tests/conftest.py`` imports them; a backend living elsewhere does the same and overrides
``backend_url`` (and ``backend_kind``) to point at its own store::

    from stalwart.testing.conformance.fixtures import *  # noqa: F403
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ...backends import open_backend
from ...backends.base import Backend
from ..services import SHARED_KINDS, available_kinds, isolated_url
from .checks import CheckedBackend, assert_conserved

__all__ = ["FakeClock", "backend", "backend_kind", "backend_url", "clock", "open_peer", "store"]

# 2025-11-21 00:00:00 UTC: a realistic epoch time, so nothing passes for "no time at all".
EPOCH = 1_763_683_200.0


class FakeClock:
    """A clock that moves only when told: ``clock()`` reads it, ``advance(s)`` moves it."""

    def __init__(self, start: float = EPOCH) -> None:
        self._now = float(start)
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> float:
        """Move forward by ``seconds`` (never back) and return the new time."""
        if seconds < 0:
            raise ValueError(f"a clock never goes back; got advance({seconds})")
        with self._lock:
            self._now += seconds
            return self._now

    def __repr__(self) -> str:
        return f"FakeClock({self._now!r})"


@pytest.fixture(params=available_kinds())
def backend_kind(request: pytest.FixtureRequest) -> str:
    """Each backend kind whose module is in the tree: memory, sqlite, redis, postgres."""
    return str(request.param)


@pytest.fixture
def backend_url(backend_kind: str, tmp_path: Path) -> Iterator[str]:
    """A URL to a new empty store of ``backend_kind``, removed after the test."""
    with isolated_url(backend_kind, tmp_path) as url:
        yield url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def backend(backend_url: str, clock: FakeClock) -> Iterator[Backend]:
    """The backend under test, on the fake clock; closed after the test."""
    b = open_backend(backend_url, clock=clock)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def store(backend: Backend) -> Iterator[Backend]:
    """``backend``, checking the conservation law after every write and at the end."""
    yield CheckedBackend(backend)  # type: ignore[misc]
    assert_conserved(backend, "at the end of the test")


@pytest.fixture
def open_peer(
    backend_kind: str, backend_url: str, backend: Backend, clock: FakeClock
) -> Iterator[Callable[..., Backend]]:
    """Open another handle on the same store, as another thread or client would.

    ``memory://`` lives in one object only, so its peer is ``backend`` itself.
    """
    opened: list[Backend] = []

    def peer(**options: object) -> Backend:
        if backend_kind not in SHARED_KINDS:
            return backend
        b = open_backend(backend_url, clock=clock, **options)
        opened.append(b)
        return b

    yield peer
    for b in opened:
        b.close()
