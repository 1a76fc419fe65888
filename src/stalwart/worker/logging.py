"""One log line per transition, with a fixed set of fields, as text or as JSON.

Fields: action, task, id, job, queue, delivery, worker, duration, reason, and free detail.
Nothing is formatted unless the line's level is enabled, so a quiet worker pays nothing
per task.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

log = logging.getLogger("stalwart.worker")

_FIELDS = ("task", "id", "job", "queue", "delivery", "worker", "duration", "reason")


class EventLog:
    """``event(level, action, **fields)``: a structured line for each transition."""

    def __init__(self, logger: logging.Logger = log) -> None:
        self.logger = logger

    def enabled(self, level: int) -> bool:
        return self.logger.isEnabledFor(level)

    def event(self, level: int, action: str, **fields: Any) -> None:
        if not self.logger.isEnabledFor(level):
            return
        fields = {k: v for k, v in fields.items() if v is not None}
        if isinstance(fields.get("duration"), float):
            fields["duration"] = round(fields["duration"], 4)
        text = " ".join([action, *(f"{k}={_text(v)}" for k, v in fields.items())])
        self.logger.log(level, text, extra={"action": action, "fields": fields})


def _text(value: Any) -> str:
    s = str(value)
    return json.dumps(s) if (" " in s or not s) else s


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, action and the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        action = getattr(record, "action", None)
        if action is not None:
            doc["action"] = action
            doc.update(getattr(record, "fields", {}))
        else:
            doc["message"] = record.getMessage()
        if record.exc_info:
            doc["traceback"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure(level: str = "info", fmt: str = "text") -> None:
    """Send stalwart's logs to stderr at ``level``, as ``text`` or ``json`` lines."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        formatter = logging.Formatter("%(asctime)s.%(msecs)03dZ %(levelname)-7s %(message)s",
                                      "%Y-%m-%dT%H:%M:%S")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    root = logging.getLogger("stalwart")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
