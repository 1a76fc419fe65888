"""The backend's SQL, read from ``queries.sql`` and bound to one schema."""

from __future__ import annotations

import re
from importlib import resources

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)

# Columns read for a MessageInfo, in the order rows.message_info expects them.
MESSAGE_COLUMNS = (
    "id, task, queue, state, priority, eta, retries, deliveries, max_deliveries, job_id, "
    "idempotency_key, created_at, updated_at, body, result, result_expires_at, error, "
    "lease_expires_at, progress, attempts"
)


def load(quoted_schema: str) -> dict[str, str]:
    """Each named statement of queries.sql, with ``{schema}`` set to ``quoted_schema``."""
    text = resources.files(__package__).joinpath("queries.sql").read_text("utf-8")
    chunks = _NAME.split(text)
    out = {}
    for name, body in zip(chunks[1::2], chunks[2::2], strict=True):
        sql = body.strip().rstrip(";")
        out[name] = sql.replace("{schema}", quoted_schema).replace("{columns}", MESSAGE_COLUMNS)
    return out
