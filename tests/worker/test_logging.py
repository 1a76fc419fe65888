"""Transition logs: nothing formatted below the level, fixed fields in JSON."""

from __future__ import annotations

import json
import logging

from stalwart.worker.logging import EventLog, JsonFormatter


class Explosive:
    def __str__(self) -> str:
        raise AssertionError("formatted although its level is off")


def test_nothing_is_formatted_below_the_level():
    logger = logging.getLogger("stalwart.test.quiet")
    logger.setLevel(logging.WARNING)
    EventLog(logger).event(logging.INFO, "succeeded", task=Explosive())


def test_json_lines_carry_the_fixed_fields(caplog):
    logger = logging.getLogger("stalwart.test.json")
    logger.setLevel(logging.INFO)
    with caplog.at_level(logging.INFO, logger="stalwart.test.json"):
        EventLog(logger).event(logging.INFO, "succeeded", task="t.add", id="01X", job=None,
                               queue="default", delivery=2, duration=0.123456)
    doc = json.loads(JsonFormatter().format(caplog.records[-1]))
    assert doc["action"] == "succeeded" and doc["level"] == "info"
    assert {k: doc[k] for k in ("task", "id", "queue", "delivery", "duration")} == {
        "task": "t.add", "id": "01X", "queue": "default", "delivery": 2, "duration": 0.1235}
    assert "job" not in doc  # absent fields are left out, not null
    assert caplog.records[-1].getMessage() == (
        "succeeded task=t.add id=01X queue=default delivery=2 duration=0.1235")
