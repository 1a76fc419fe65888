"""A stateful property test: a real backend and the model, driven by the same random steps.

Hypothesis picks operations (enqueue, claim, extend, settle, progress, advance the clock,
recover, cancel, requeue, purge); the backend under test and a fresh
:class:`~stalwart.testing.model.ModelBackend` both run each one on one shared
:class:`FakeClock`. After every step they must agree on every message's state, retries and
deliveries, on every queue's and job's Counts, and the backend must keep the conservation
law. Lease tokens differ between the two, so each claim is remembered as a pair and only
observable outcomes are compared (True/False, the claimed ids in order, the recovered ids).

The clock moves in whole seconds and leases, etas and TTLs are whole seconds too, so
deadlines often fall exactly on the clock: the model's rule for a tie (an eta or a result
TTL ending now is due, a lease ending now is not yet expired) is checked as well.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ..backends import open_backend
from ..backends.base import (
    Attempt,
    Backend,
    Bury,
    Complete,
    Counts,
    ErrorInfo,
    Lease,
    MessageInfo,
    NewJob,
    NewMessage,
    Outcome,
    Release,
    Reschedule,
)
from ..ids import new_id
from ..states import State
from .conformance.checks import counts_problem
from .conformance.fixtures import FakeClock
from .model import ModelBackend
from .services import isolated_url

QUEUES = ("a", "b")
JOBS = (None, "job-1", "job-2")
KEYS = (None, None, None, "key-1", "key-2")
LEASE = 10.0


@dataclass(frozen=True)
class LeasePair:
    """One claim as both stores answered it."""

    message_id: str
    real: Lease
    model: Lease


_message_specs = st.fixed_dictionaries({
    "queue": st.sampled_from(QUEUES),
    "priority": st.integers(0, 2),
    "eta": st.one_of(st.none(), st.integers(-3, 25)),
    "job": st.sampled_from(JOBS),
    "key": st.sampled_from(KEYS),
    "max_deliveries": st.integers(1, 3),
    "duplicate_of": st.one_of(st.none(), st.none(), st.none(), st.integers(0, 1000)),
})
_error = ErrorInfo("exception", exc_type="ValueError", message="boom", traceback="tb")


class AgreementMachine(RuleBasedStateMachine):
    """Backend-versus-model agreement; :func:`agreement_machine` binds it to a store."""

    open_store: Callable[[], AbstractContextManager[str]]

    leases = Bundle("leases")

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.stack = ExitStack()
        url = self.stack.enter_context(self.open_store())
        self.real: Backend = open_backend(url, clock=self.clock)
        self.stack.callback(self.real.close)
        self.model = ModelBackend(clock=self.clock)
        self.ids: list[str] = []
        self.jobs: set[str] = set()

    def teardown(self) -> None:
        self.stack.close()

    # -- steps --------------------------------------------------------------------------

    @initialize(specs=st.lists(_message_specs, min_size=2, max_size=8), named=st.booleans())
    def start(self, specs: list[dict], named: bool) -> None:
        """Every run starts with some work, so that claims have something to take."""
        self.enqueue(specs, named)

    @rule(specs=st.lists(_message_specs, min_size=1, max_size=3), named=st.booleans())
    def enqueue(self, specs: list[dict], named: bool) -> None:
        now = self.clock()
        batch = []
        for s in specs:
            mid = new_id()
            if s["duplicate_of"] is not None and self.ids:
                mid = self.ids[s["duplicate_of"] % len(self.ids)]
            batch.append(NewMessage(
                id=mid, task="t", queue=s["queue"], body=mid.encode(), priority=s["priority"],
                eta=None if s["eta"] is None else now + float(s["eta"]),
                max_deliveries=s["max_deliveries"], job_id=s["job"],
                idempotency_key=s["key"], created_at=now,
            ))
        job_ids = [m.job_id for m in batch if m.job_id is not None]
        job = NewJob(job_ids[0], f"name-{job_ids[0]}", now) if named and job_ids else None
        got = self.real.enqueue(batch, job=job)
        want = self.model.enqueue(batch, job=job)
        assert got == want, f"enqueue returned {got}, the model {want}"
        for i in want:
            if i not in self.ids:
                self.ids.append(i)
        self.jobs.update(job_ids)

    @rule(target=leases, queues=st.sampled_from([("a",), ("b",), ("a", "b")]),
          limit=st.integers(1, 3))
    def claim(self, queues: tuple[str, ...], limit: int) -> object:
        worker = f"w-{limit}"
        got = self.real.claim(list(queues), limit, LEASE, worker)
        want = self.model.claim(list(queues), limit, LEASE, worker)
        got_ids = [d.lease.message_id for d in got]
        want_ids = [d.lease.message_id for d in want]
        assert got_ids == want_ids, f"claim took {got_ids}, the model {want_ids} (in order)"
        by_id = {d.lease.message_id: d for d in got}
        pairs = []
        for w in want:
            g = by_id[w.lease.message_id]
            fields = ("queue", "priority", "deliveries", "retries", "max_deliveries", "job_id",
                      "expires_at", "body")
            assert {f: getattr(g, f) for f in fields} == {f: getattr(w, f) for f in fields}
            pairs.append(LeasePair(w.lease.message_id, g.lease, w.lease))
        return multiple(*pairs)

    # Claims and outcomes drive everything else, so each has a second rule: Hypothesis picks
    # among rules evenly, and this doubles their share of the steps.
    @rule(target=leases, queues=st.sampled_from([("a", "b")]), limit=st.integers(1, 3))
    def claim_any(self, queues: tuple[str, ...], limit: int) -> object:
        return self.claim(queues, limit)

    @rule(pair=leases, kind=st.sampled_from(["complete", "retry", "fail"]),
          delay=st.integers(-2, 20), ttl=st.sampled_from([None, 5, 100]))
    def settle_again(self, pair: LeasePair, kind: str, delay: int, ttl: int | None) -> None:
        self._settle([(pair, kind, delay, ttl)])

    @rule(pair=leases, kind=st.sampled_from(
        ["complete", "retry", "fail", "release", "release-started"]),
        delay=st.integers(-2, 20), ttl=st.sampled_from([None, 5, 100]))
    def settle(self, pair: LeasePair, kind: str, delay: int, ttl: int | None) -> None:
        self._settle([(pair, kind, delay, ttl)])

    @rule(pairs=st.lists(leases, min_size=2, max_size=3), kind=st.sampled_from(
        ["complete", "retry", "fail", "release-started"]))
    def settle_batch(self, pairs: list[LeasePair], kind: str) -> None:
        self._settle([(p, kind, 3, 100) for p in pairs])

    def _settle(self, items: list[tuple[LeasePair, str, int, int | None]]) -> None:
        now = self.clock()

        def outcome(lease: Lease, kind: str, delay: int, ttl: int | None) -> Outcome:
            if kind == "complete":
                return Complete(lease, f'"{lease.message_id}"',
                                None if ttl is None else float(ttl))
            if kind == "retry":
                return Reschedule(lease, now + float(delay), _error)
            if kind == "fail":
                return Bury(lease, _error)
            return Release(lease, started=kind == "release-started",
                           error=ErrorInfo("shutdown") if kind == "release-started" else None)

        got = self.real.settle([outcome(p.real, k, d, t) for p, k, d, t in items])
        want = self.model.settle([outcome(p.model, k, d, t) for p, k, d, t in items])
        assert got == want, f"settle {[k for _, k, _, _ in items]} gave {got}, the model {want}"

    @rule(pairs=st.lists(leases, min_size=1, max_size=3), seconds=st.sampled_from([5, 10, 30]))
    def extend(self, pairs: list[LeasePair], seconds: int) -> None:
        got = self.real.extend([p.real for p in pairs], float(seconds))
        want = self.model.extend([p.model for p in pairs], float(seconds))
        lost_real = {i for i, p in enumerate(pairs) if p.real in got}
        lost_model = {i for i, p in enumerate(pairs) if p.model in want}
        assert lost_real == lost_model, f"extend lost {lost_real}, the model {lost_model}"

    @rule(pair=leases, done=st.integers(0, 10))
    def progress(self, pair: LeasePair, done: int) -> None:
        got = self.real.progress(pair.real, done, 10, None)
        want = self.model.progress(pair.model, done, 10, None)
        assert got == want, f"progress gave {got}, the model {want}"

    @rule(seconds=st.integers(1, 25))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    @rule()
    def recover_expired(self) -> None:
        got, want = self.real.recover_expired(), self.model.recover_expired()
        assert sorted(got) == sorted(want), f"recovered {got}, the model {want}"

    @precondition(lambda self: self.ids)
    @rule(op=st.sampled_from(["cancel", "requeue", "purge"]),
          picks=st.one_of(st.none(), st.lists(st.integers(0, 1000), max_size=3)),
          queue=st.sampled_from((None, *QUEUES)))
    def manage(self, op: str, picks: list[int] | None, queue: str | None) -> None:
        """What an operator does: cancel waiting messages, requeue or purge dead ones."""
        ids = self._pick(picks)
        if op == "cancel":
            ids = ids or []
            got_ids, want_ids = self.real.cancel(ids), self.model.cancel(ids)
            assert sorted(got_ids) == sorted(want_ids), f"cancelled {got_ids}, model {want_ids}"
            return
        name = "requeue_dead" if op == "requeue" else "purge_dead"
        got = getattr(self.real, name)(ids, queue)
        want = getattr(self.model, name)(ids, queue)
        assert got == want, f"{name}({ids}, {queue}) gave {got}, the model {want}"

    def _pick(self, picks: list[int] | None) -> list[str] | None:
        if picks is None or not self.ids:
            return None if picks is None else []
        return [self.ids[i % len(self.ids)] for i in picks]

    # -- the agreement ------------------------------------------------------------------

    @invariant()
    def check(self) -> None:
        now = self.clock()
        for mid in self.ids:
            self._agree_message(mid, self.real.message(mid), self.model.message(mid), now)
        real_q = {s.queue: s.counts for s in self.real.queue_stats()}
        model_q = {s.queue: s.counts for s in self.model.queue_stats()}
        assert real_q.keys() == model_q.keys(), f"queues {real_q.keys()} vs {model_q.keys()}"
        for q, c in model_q.items():
            _agree_counts(f"queue {q}", real_q[q], c)
        for j in self.jobs:
            got, want = self.real.job(j), self.model.job(j)
            if want is None or got is None:
                assert got is want, f"job {j}: {got} vs the model {want}"
                continue
            _agree_counts(f"job {j}", got.counts, want.counts)
            assert (got.name, got.state) == (want.name, want.state), f"job {j}: {got} vs {want}"
            assert sorted(got.progress) == sorted(want.progress), f"job {j} progress"

    @staticmethod
    def _agree_message(
        mid: str, got: MessageInfo | None, want: MessageInfo | None, now: float
    ) -> None:
        if want is None or got is None:
            assert got is want, f"{mid}: stored {got is not None}, the model {want is not None}"
            return
        seen = (_effective(got, now), got.retries, got.deliveries,
                got.error.reason if got.error else None)
        spec = (_effective(want, now), want.retries, want.deliveries,
                want.error.reason if want.error else None)
        assert seen == spec, f"{mid}: (state, retries, deliveries, reason) {seen}, model {spec}"
        if _effective(want, now) == State.SCHEDULED:
            assert got.eta == want.eta, f"{mid}: eta {got.eta} vs the model's {want.eta}"
        if want.state == State.RUNNING:
            assert got.lease_expires_at == want.lease_expires_at, f"{mid}: lease expiry"
            assert got.progress == want.progress, f"{mid}: {got.progress} vs {want.progress}"
        history = [_attempt(a) for a in got.attempts]
        spec_history = [_attempt(a) for a in want.attempts]
        assert history == spec_history, f"{mid}: attempts {history}, model {spec_history}"
        due = want.result_expires_at is not None and want.result_expires_at <= now
        if not due:  # past its TTL a result may go at once or at the next recovery
            assert got.result == want.result, f"{mid}: result {got.result!r} vs {want.result!r}"


def _attempt(a: Attempt) -> tuple[object, ...]:
    return (a.delivery, a.worker_id, a.started_at, a.ended_at, a.outcome,
            a.error.reason if a.error else None)


def _effective(info: MessageInfo, now: float) -> State:
    """A scheduled message whose eta passed may have been promoted to queued: the same."""
    if info.state == State.SCHEDULED and (info.eta is None or info.eta <= now):
        return State.QUEUED
    return info.state


def _agree_counts(what: str, got: Counts, want: Counts) -> None:
    problem = counts_problem(got)
    assert problem is None, f"{what}: conservation law broken: {problem}"
    # A due scheduled message may be counted as queued (promoted) without any difference.
    same = (got.accepted, got.running, got.succeeded, got.dead, got.cancelled,
            got.queued + got.scheduled)
    spec = (want.accepted, want.running, want.succeeded, want.dead, want.cancelled,
            want.queued + want.scheduled)
    assert same == spec and got.scheduled <= want.scheduled, f"{what}: {got} vs model {want}"


def agreement_machine(kind: str, workdir: Path | None = None) -> type[AgreementMachine]:
    """The machine bound to a fresh isolated store of ``kind`` for every example."""

    def open_store() -> AbstractContextManager[str]:
        return isolated_url(kind, workdir)

    return type(f"AgreementMachine_{kind}", (AgreementMachine,),
                {"open_store": staticmethod(open_store)})


# Examples per kind that run in about half a minute each (a step costs a round trip per
# message on a server, a function call in memory).
EXAMPLES = {"memory": 200, "sqlite": 200, "redis": 80, "postgres": 50}


def budget(examples: int = 50, steps: int = 60) -> settings:
    """Hypothesis settings for one run; raise them with the environment for a longer hunt.

    ``STALWART_PROPERTY_EXAMPLES`` and ``STALWART_PROPERTY_STEPS`` override the defaults.
    """
    return settings(
        max_examples=int(os.environ.get("STALWART_PROPERTY_EXAMPLES", examples)),
        stateful_step_count=int(os.environ.get("STALWART_PROPERTY_STEPS", steps)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


def run_agreement(kind: str, workdir: Path | None = None, config: settings | None = None) -> None:
    """Run the agreement machine against ``kind``; raises with the failing steps if any."""
    config = config or budget(EXAMPLES.get(kind, 50))
    run_state_machine_as_test(agreement_machine(kind, workdir), settings=config)
