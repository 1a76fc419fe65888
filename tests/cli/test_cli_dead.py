"""``stalwart dead``: list, show, requeue and purge move dead messages as they say."""

from __future__ import annotations

import json

import pytest

from stalwart import App
from stalwart.backends.base import Backend, ErrorInfo
from stalwart.states import State

from .conftest import APP, run_cli

TRACEBACK = 'Traceback (most recent call last):\n  File "tasks.py", line 3\nOSError: disk full\n'


@pytest.fixture
def dead_ids(broker: str, cli_store: Backend) -> dict[str, list[str]]:
    """Three dead messages in 'images' and one in 'default', each with an attempt history."""
    app = App("dead-test", broker=broker)
    ids = {
        "images": [app.signature("cli.apps.resize", i).set(queue="images").delay().id
                   for i in range(3)],
        "default": [app.signature("cli.apps.ping").delay().id],
    }
    app.close()
    first = cli_store.claim(["images"], 1, 30, "w-one")[0]
    cli_store.retry(first.lease, 0.0, ErrorInfo("exception", "TimeoutError", "slow disk"))
    for d in cli_store.claim(["images", "default"], 10, 30, "w-two"):
        assert cli_store.fail(d.lease, ErrorInfo("exception", "OSError", "disk full", TRACEBACK))
    assert len(cli_store.messages(state=State.DEAD)) == 4
    return ids


def _list(broker: str, *args: str) -> list[dict]:
    r = run_cli("dead", APP, "list", "--json", *args, broker=broker)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_list_shows_every_dead_message_with_its_reason(broker: str, dead_ids) -> None:
    rows = _list(broker)
    assert sorted(r["id"] for r in rows) == sorted(dead_ids["images"] + dead_ids["default"])
    assert {(r["reason"], r["error_type"], r["error"]) for r in rows} == {
        ("exception", "OSError", "disk full")}
    by_id = {r["id"]: r for r in rows}
    assert by_id[dead_ids["images"][0]]["deliveries"] == 2
    assert [r["id"] for r in _list(broker, "--queue", "default")] == dead_ids["default"]
    assert len(_list(broker, "--limit", "2")) == 2
    human = run_cli("dead", APP, "list", broker=broker).stdout
    assert dead_ids["images"][0] in human and "OSError: disk full" in human


def test_show_gives_the_attempt_history_and_traceback(broker: str, dead_ids) -> None:
    mid = dead_ids["images"][0]
    r = run_cli("dead", APP, "show", mid, "--json", broker=broker)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert [(a["delivery"], a["worker"], a["outcome"]) for a in data["attempts"]] == [
        (1, "w-one", "retry"), (2, "w-two", "dead")]
    assert data["attempts"][0]["error"]["exc_type"] == "TimeoutError"
    assert data["traceback"] == TRACEBACK
    human = run_cli("dead", APP, "show", mid, broker=broker).stdout
    assert "w-one" in human and "slow disk" in human and "OSError: disk full" in human
    assert 'File "tasks.py", line 3' in human
    missing = run_cli("dead", APP, "show", "NO-SUCH-ID", broker=broker)
    assert missing.returncode == 1 and "no message NO-SUCH-ID" in missing.stderr


def test_requeue_by_id_gives_a_full_budget(broker: str, cli_store: Backend, dead_ids) -> None:
    mid = dead_ids["images"][0]
    r = run_cli("dead", APP, "requeue", mid, broker=broker)
    assert r.returncode == 0, r.stderr
    assert "requeued 1 message(s)" in r.stdout
    info = cli_store.message(mid)
    assert info is not None
    assert (info.state, info.retries, info.deliveries) == (State.QUEUED, 0, 0)
    assert len(_list(broker)) == 3
    again = run_cli("dead", APP, "requeue", mid, broker=broker)
    assert again.returncode == 1 and f"not dead: {mid} (queued)" in again.stderr


def test_requeue_all_of_one_queue(broker: str, cli_store: Backend, dead_ids) -> None:
    r = run_cli("dead", APP, "requeue", "--all", "--queue", "images", broker=broker)
    assert r.returncode == 0, r.stderr
    assert "requeued 3 message(s)" in r.stdout
    assert [r["id"] for r in _list(broker)] == dead_ids["default"]
    counts = {s.queue: s.counts for s in cli_store.queue_stats()}
    assert (counts["images"].queued, counts["images"].dead, counts["images"].unaccounted) == (
        3, 0, 0)


def test_purge_asks_first_then_deletes(broker: str, cli_store: Backend, dead_ids) -> None:
    declined = run_cli("dead", APP, "purge", "--all", broker=broker, input="n\n")
    assert declined.returncode == 1 and "Aborted" in declined.stderr
    assert len(_list(broker)) == 4

    mid = dead_ids["default"][0]
    r = run_cli("dead", APP, "purge", mid, "--yes", broker=broker)
    assert r.returncode == 0 and "purged 1 message(s)" in r.stdout
    assert cli_store.message(mid) is None

    r = run_cli("dead", APP, "purge", "--all", broker=broker, input="y\n")
    assert r.returncode == 0 and "purged 3 message(s)" in r.stdout
    assert _list(broker) == []
    # The counters keep the purged messages as dead: nothing is unaccounted.
    counts = {s.queue: s.counts for s in cli_store.queue_stats()}
    assert counts["images"].dead == 3 and counts["images"].unaccounted == 0
    assert counts["default"].dead == 1 and counts["default"].unaccounted == 0


@pytest.mark.parametrize("args", [["requeue"], ["purge"], ["requeue", "X", "--all"],
                                  ["purge", "X", "--queue", "images"]])
def test_ambiguous_selection_is_refused(broker: str, dead_ids, args: list[str]) -> None:
    r = run_cli("dead", APP, *args, broker=broker)
    assert r.returncode == 2
    assert len(_list(broker)) == 4
