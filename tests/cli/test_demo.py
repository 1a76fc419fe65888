"""``stalwart demo`` end to end: a real worker, real crashes, and nothing lost at the end."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import time
from urllib.parse import urlsplit

from stalwart import App
from stalwart.backends.base import Backend
from stalwart.cli.demo import descendants, tally

from .conftest import run_cli


def _row(output: str, name: str) -> int:
    # A row of the closing table: "│ name   │  123 │ note │" (or "|" where boxes are ASCII).
    match = re.search(rf"^\W*{re.escape(name)}\s+[│|]\s+(\d+)\s+[│|]", output, re.M)
    assert match, f"no {name!r} row in:\n{output}"
    return int(match.group(1))


def test_demo_ends_with_nothing_lost() -> None:
    r = run_cli("demo", timeout=240)
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    assert "lost = 0" in out
    assert _row(out, "accepted") == 243
    assert _row(out, "unaccounted") == 0
    assert _row(out, "still in flight") == 0
    # Every special case of the story really happened, as the store recorded it.
    assert "fail: 1" in out  # the corrupt upload
    assert "retries-exhausted: 1" in out  # the missing file
    assert "worker-lost: 1" in out  # the poison message, after max_deliveries
    assert _row(out, "dead") == 3
    assert _row(out, "succeeded") == 240
    assert _row(out, "recovered after crash") >= 1  # the render whose child was killed
    assert _row(out, "retried") >= 10
    assert "caught SoftTimeLimitExceeded" in out
    assert "SIGKILL to worker child" in out


def test_descendants_reads_the_process_tree_from_proc() -> None:
    parent = subprocess.Popen(["sh", "-c", "sleep 30 & sleep 30 & wait"])
    try:
        deadline = time.monotonic() + 5
        kids: list[int] = []
        while time.monotonic() < deadline and len(kids) < 2:
            kids = descendants(parent.pid)
            time.sleep(0.05)
        assert len(kids) == 2
        assert parent.pid not in kids
    finally:
        parent.kill()
        parent.wait()
        for k in kids:
            try:
                os.kill(k, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_the_closing_count_detects_loss(broker: str, cli_store: Backend) -> None:
    """The demo's lost figure is not vacuous: a success nobody ran, or a vanished row, counts."""
    app = App("tally-test", broker=broker)
    ids = [app.signature("demo.thumbnail", i).set(queue="images").delay().id for i in range(3)]
    app.close()
    ran, not_run, vanished = ids
    for d in cli_store.claim(["images"], 2, 30, "w"):
        assert cli_store.complete(d.lease, "{}")
    events = [{"event": "start", "id": ran}, {"event": "done", "id": ran}]
    t = tally(cli_store, ids, events)
    assert (t["lost"], t["unfinished"], t["phantom_successes"]) == (1, 1, [not_run])

    with sqlite3.connect(urlsplit(broker).path[1:]) as db:
        db.execute("DELETE FROM messages WHERE id = ?", (vanished,))
    t = tally(cli_store, ids, events)
    assert t["missing"] == [vanished] and t["unaccounted"] == 1
    assert t["lost"] == 2
