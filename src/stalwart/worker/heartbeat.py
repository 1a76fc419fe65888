"""The heartbeat thread: extends every held lease in one call, keeps the worker registered,
recovers expired leases on a timer, and watches the consume loop.

It has a backend connection of its own, so a consume loop stuck in a call never stops the
leases of running tasks from being extended.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from ..backends.base import Backend
from .logging import EventLog

if TYPE_CHECKING:
    from .supervisor import Supervisor


class Heartbeat(threading.Thread):
    def __init__(self, supervisor: Supervisor, backend: Backend, log: EventLog) -> None:
        super().__init__(name="stalwart-heartbeat", daemon=True)
        self.supervisor = supervisor
        self.backend = backend
        self.log = log
        self.stopping = threading.Event()
        self.last_ok = time.monotonic()

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        sup = self.supervisor
        next_beat = next_recover = time.monotonic()
        while not self.stopping.is_set():
            now = time.monotonic()
            if now >= next_beat:
                self.beat()
                next_beat = now + sup.heartbeat_seconds
            if now >= next_recover:
                self.recover()
                next_recover = now + sup.recover_interval
            self.stopping.wait(max(0.0, min(next_beat, next_recover) - time.monotonic()))

    def beat(self) -> None:
        sup = self.supervisor
        sup.watch_loop()
        try:
            leases = sup.held_leases()
            if leases:
                lost = self.backend.extend(leases, sup.lease_seconds)
                if lost:
                    sup.leases_lost(lost)
            self.backend.register_worker(sup.info(), ttl=3 * sup.heartbeat_seconds)
            self.last_ok = time.monotonic()
        except Exception as exc:
            self.log.event(logging.ERROR, "heartbeat failed", worker=sup.worker_id,
                           error=f"{type(exc).__name__}: {exc}")

    def recover(self) -> None:
        try:
            recovered = self.backend.recover_expired()
        except Exception as exc:
            self.log.event(logging.WARNING, "recovery failed", worker=self.supervisor.worker_id,
                           error=f"{type(exc).__name__}: {exc}")
            return
        for message_id, state in recovered:
            self.log.event(logging.WARNING, "lease expired", id=message_id, state=str(state),
                           worker=self.supervisor.worker_id)
