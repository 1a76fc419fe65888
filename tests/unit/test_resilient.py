"""Transient faults cost time, never an operation: retried until the deadline, then a clear error."""

import errno
import time

import pytest

from stalwart.backends.base import NewMessage
from stalwart.backends.resilient import Resilient
from stalwart.errors import BrokerUnavailable
from stalwart.testing.model import ModelBackend


class Flaky(ModelBackend):
    """The model, with the first ``fail`` calls of each operation dying on a reset socket."""

    def __init__(self, fail: int, exc: Exception) -> None:
        super().__init__("redis://user:secret@127.0.0.1:1/0")
        self.remaining = fail
        self.exc = exc

    def enqueue(self, messages, job=None):
        if self.remaining:
            self.remaining -= 1
            raise self.exc
        return super().enqueue(messages, job)


RESET = ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")


def test_a_reset_is_retried_and_the_enqueue_happens_once():
    inner = Flaky(3, RESET)
    faults = []
    backend = Resilient(inner, deadline=5, base_delay=0.001,
                        on_fault=lambda op, exc, n: faults.append((op, n)))
    assert backend.enqueue([NewMessage(id="A", task="t")]) == ["A"]
    assert faults == [("enqueue", 0), ("enqueue", 1), ("enqueue", 2)]
    assert backend.queue_stats()[0].counts.accepted == 1


def test_past_the_deadline_broker_unavailable_names_the_redacted_url():
    inner = Flaky(10**9, RESET)
    backend = Resilient(inner, deadline=0.3, base_delay=0.01, on_fault=lambda *a: None)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as err:
        backend.enqueue([NewMessage(id="A", task="t")])
    assert time.monotonic() - started < 1.5
    assert "secret" not in str(err.value) and "***" in str(err.value)
    assert inner.message("A") is None  # nothing half-written


def test_terminal_errors_surface_at_once():
    inner = Flaky(1, ValueError("bad SQL"))
    backend = Resilient(inner, deadline=5, on_fault=lambda *a: None)
    with pytest.raises(ValueError):
        backend.enqueue([NewMessage(id="A", task="t")])
