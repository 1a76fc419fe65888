"""The operator commands on every shared backend: the same story on Redis and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from stalwart.backends import open_backend
from stalwart.backends.base import ErrorInfo
from stalwart.states import State
from stalwart.testing.services import available_kinds, isolated_url

from .conftest import APP, run_cli


@pytest.fixture(params=["sqlite", "redis", "postgres"])
def any_broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param not in available_kinds():
        pytest.skip(f"the {request.param} backend is not in this tree")
    with isolated_url(request.param, tmp_path) as url:
        yield url


def test_enqueue_status_and_dead_letters(any_broker: str) -> None:
    ids = []
    for i in range(3):
        r = run_cli("enqueue", APP, "cli.apps.resize", "--args", f"[{i}]", broker=any_broker)
        assert r.returncode == 0, r.stderr
        ids.append(r.stdout.strip())
    store = open_backend(any_broker)
    try:
        (d,) = store.claim(["images"], 1, 30, "w-any")
        assert store.fail(d.lease, ErrorInfo("exception", "OSError", "disk full"))

        status = json.loads(run_cli("status", APP, "--json", broker=any_broker).stdout)
        (images,) = [q for q in status["queues"] if q["queue"] == "images"]
        assert (images["accepted"], images["queued"], images["dead"], images["unaccounted"]) == (
            3, 2, 1, 0)
        assert status["dead_letters"]["stored"] == 1

        listed = json.loads(run_cli("dead", APP, "list", "--json", broker=any_broker).stdout)
        assert [m["id"] for m in listed] == [d.lease.message_id]

        r = run_cli("dead", APP, "requeue", "--all", broker=any_broker)
        assert r.returncode == 0 and "requeued 1" in r.stdout
        info = store.message(d.lease.message_id)
        assert info is not None and info.state == State.QUEUED

        again = next(x for x in store.claim(["images"], 3, 30, "w-any")
                     if x.lease.message_id == d.lease.message_id)
        assert store.fail(again.lease, ErrorInfo("exception", "OSError", "still full"))
        r = run_cli("dead", APP, "purge", "--all", "--yes", broker=any_broker)
        assert r.returncode == 0 and "purged 1" in r.stdout
        assert store.message(d.lease.message_id) is None
        counts = {s.queue: s.counts for s in store.queue_stats()}["images"]
        assert counts.dead == 1 and counts.unaccounted == 0
    finally:
        store.close()
