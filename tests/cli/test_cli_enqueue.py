"""``stalwart enqueue``: what it stores, and that bad input stores nothing."""

from __future__ import annotations

import json

import pytest

from stalwart.backends.base import Backend
from stalwart.message import decode
from stalwart.states import State

from .conftest import APP, run_cli


def test_enqueue_prints_the_id_of_a_stored_message(broker: str, cli_store: Backend) -> None:
    r = run_cli("enqueue", APP, "cli.apps.resize", "--args", "[7]", "--kwargs",
                '{"size": 64}', broker=broker)
    assert r.returncode == 0, r.stderr
    mid = r.stdout.strip()
    info = cli_store.message(mid)
    assert info is not None
    assert info.task == "cli.apps.resize"
    assert info.queue == "images"  # the task's own queue
    assert info.state == State.QUEUED
    msg = decode(info.body)
    assert msg.args == [7] and msg.kwargs == {"size": 64}
    assert "does not know" not in r.stderr


def test_enqueue_options_reach_the_message(broker: str, cli_store: Backend) -> None:
    r = run_cli("enqueue", APP, "cli.apps.ping", "--queue", "bulk", "--priority", "7",
                "--countdown", "300", "--json", broker=broker)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["known_task"] is True and out["queue"] == "bulk"
    info = cli_store.message(out["id"])
    assert info is not None
    assert (info.queue, info.priority, info.state) == ("bulk", 7, State.SCHEDULED)
    assert info.eta is not None and info.eta > info.created_at + 290


def test_idempotency_key_enqueues_once(broker: str, cli_store: Backend) -> None:
    ids = []
    for _ in range(2):
        r = run_cli("enqueue", APP, "cli.apps.ping", "--idempotency-key", "k-1", broker=broker)
        assert r.returncode == 0, r.stderr
        ids.append(r.stdout.strip())
    assert ids[0] == ids[1]
    (stats,) = cli_store.queue_stats()
    assert stats.counts.accepted == 1


def test_unknown_task_is_sent_with_a_warning(broker: str, cli_store: Backend) -> None:
    r = run_cli("enqueue", APP, "billing.charge", "--args", "[1]", broker=broker)
    assert r.returncode == 0, r.stderr
    assert "registry does not know a task named 'billing.charge'" in r.stderr
    info = cli_store.message(r.stdout.strip())
    assert info is not None and info.task == "billing.charge" and info.queue == "default"


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--args", "[1,", "not valid JSON"),
        ("--args", '{"a": 1}', "must be a JSON list, got dict"),
        ("--args", "3", "must be a JSON list, got int"),
        ("--kwargs", "[1]", "must be a JSON object, got list"),
        ("--kwargs", "{'a': 1}", "not valid JSON"),
        ("--priority", "10", "10 is not in the range 0<=x<=9"),
    ],
)
def test_bad_input_is_a_usage_error_and_enqueues_nothing(
    broker: str, cli_store: Backend, option: str, value: str, expected: str
) -> None:
    r = run_cli("enqueue", APP, "cli.apps.resize", option, value, broker=broker)
    assert r.returncode == 2
    assert expected in r.stderr
    assert option in r.stderr
    assert r.stdout == ""
    assert all(s.counts.accepted == 0 for s in cli_store.queue_stats())
    assert cli_store.messages(limit=10) == []
