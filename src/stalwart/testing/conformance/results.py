"""Results: stored with the success, readable until their TTL, then gone but remembered."""

from __future__ import annotations

from ...backends.base import Backend
from ...states import State
from .checks import claim_one, enqueue_one
from .fixtures import FakeClock


class TestResults:
    def test_result_readable_then_gone_after_ttl(self, store: Backend, clock: FakeClock) -> None:
        mid = enqueue_one(store)
        d = claim_one(store)
        assert store.complete(d.lease, '{"pages": 12}', 60.0)  # type: ignore[attr-defined]
        info = store.message(mid)
        assert info is not None and info.state == State.SUCCEEDED
        assert info.result == '{"pages": 12}' and info.result_expires_at == clock() + 60
        assert not info.result_expired
        clock.advance(30)
        store.recover_expired()
        info = store.message(mid)
        assert info is not None and info.result == '{"pages": 12}'
        clock.advance(31)
        store.recover_expired()
        info = store.message(mid)
        assert info is not None and info.state == State.SUCCEEDED
        assert info.result is None and info.result_expired

    def test_result_without_ttl_is_kept(self, store: Backend, clock: FakeClock) -> None:
        mid = enqueue_one(store)
        assert store.complete(claim_one(store).lease, '"forever"', None)  # type: ignore[attr-defined]
        clock.advance(10 * 365 * 86400)
        store.recover_expired()
        info = store.message(mid)
        assert info is not None and info.result == '"forever"' and not info.result_expired

    def test_default_ttl_is_a_day(self, store: Backend, clock: FakeClock) -> None:
        mid = enqueue_one(store)
        assert store.complete(claim_one(store).lease, "42")  # type: ignore[attr-defined]
        info = store.message(mid)
        assert info is not None and info.result == "42"
        assert info.result_expires_at == clock() + 86400

    def test_a_result_is_not_written_by_other_outcomes(self, store: Backend) -> None:
        mid = enqueue_one(store)
        assert store.release(claim_one(store).lease)  # type: ignore[attr-defined]
        info = store.message(mid)
        assert info is not None and info.result is None and not info.result_expired
