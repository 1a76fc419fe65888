"""The backend object itself: the protocol, its declared capabilities, the injected clock."""

from __future__ import annotations

from ...backends.base import CAPABILITIES, Backend, BackendBase
from .fixtures import FakeClock


class TestSurface:
    def test_implements_the_protocol(self, backend: Backend) -> None:
        assert isinstance(backend, Backend)
        assert isinstance(backend, BackendBase), "subclass BackendBase for complete/retry/..."

    def test_capabilities_are_known_flags(self, backend: Backend) -> None:
        assert isinstance(backend.capabilities, frozenset)
        assert backend.capabilities <= set(CAPABILITIES), backend.capabilities

    def test_time_comes_from_the_injected_clock(
        self, backend: Backend, clock: FakeClock
    ) -> None:
        assert backend.clock is clock

    def test_url_reopens_the_same_kind(self, backend: Backend, backend_url: str) -> None:
        assert backend.url.split("://", 1)[0] == backend_url.split("://", 1)[0]
