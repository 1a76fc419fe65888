"""``stalwart status``: the counters, the conservation law, workers, jobs and dead letters."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from urllib.parse import urlsplit

from stalwart import App
from stalwart.backends.base import Backend, ErrorInfo, WorkerInfo

from .conftest import APP, TESTS_DIR, run_cli


def _status(broker: str) -> dict:
    r = run_cli("status", APP, "--json", broker=broker)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _queue(data: dict, name: str) -> dict:
    return next(q for q in data["queues"] if q["queue"] == name)


def test_status_counts_what_was_enqueued_and_flags_an_unconsumed_queue(broker: str) -> None:
    for extra in ([], [], ["--countdown", "600"]):
        r = run_cli("enqueue", APP, "cli.apps.resize", "--args", "[1]", *extra, broker=broker)
        assert r.returncode == 0, r.stderr
    data = _status(broker)
    images = _queue(data, "images")
    assert {k: images[k] for k in ("accepted", "queued", "scheduled", "running", "succeeded",
                                   "dead", "cancelled", "unaccounted")} == {
        "accepted": 3, "queued": 2, "scheduled": 1, "running": 0, "succeeded": 0, "dead": 0,
        "cancelled": 0, "unaccounted": 0}
    assert images["unconsumed"] is True and data["unconsumed_queues"] == ["images"]
    assert data["workers"] == [] and data["dead_letters"]["stored"] == 0

    r = run_cli("status", APP, broker=broker)
    assert r.returncode == 0, r.stderr
    assert "no worker consumes this queue" in r.stdout
    assert "'images' has 3 waiting message(s)" in r.stdout
    assert "dead-letter store: empty" in r.stdout


def test_a_live_worker_consuming_the_queue_clears_the_flag(broker: str,
                                                           cli_store: Backend) -> None:
    run_cli("enqueue", APP, "cli.apps.resize", "--args", "[1]", broker=broker)
    cli_store.register_worker(WorkerInfo(
        id="w-test-1", hostname="host-a", pid=4242, queues=("images", "default"),
        concurrency=4, pool="process", started_at=time.time()), ttl=60)
    data = _status(broker)
    assert data["unconsumed_queues"] == []
    assert _queue(data, "images")["consumers"] == 1
    (w,) = data["workers"]
    assert (w["id"], w["hostname"], w["pid"], w["queues"], w["pool"], w["concurrency"]) == (
        "w-test-1", "host-a", 4242, ["images", "default"], "process", 4)
    r = run_cli("status", APP, broker=broker)
    assert "no worker consumes" not in r.stdout
    assert "w-test-1" in r.stdout and "host-a" in r.stdout


def test_jobs_show_progress_and_dead_letters_are_counted(broker: str,
                                                        cli_store: Backend) -> None:
    app = App("status-test", broker=broker)
    task = app.task(lambda i: i, name="cli.apps.resize", queue="images")
    job = app.job("thumbnails", [task.s(i) for i in range(4)])
    first, second = cli_store.claim(["images"], 2, 30, "w-x")
    assert cli_store.complete(first.lease, "1")
    assert cli_store.fail(second.lease, ErrorInfo("exception", "OSError", "disk full"))
    app.close()

    data = _status(broker)
    (j,) = data["jobs"]
    assert (j["id"], j["name"], j["total"], j["finished"], j["succeeded"], j["dead"]) == (
        job.id, "thumbnails", 4, 2, 1, 1)
    assert j["state"] == "running" and j["unaccounted"] == 0
    assert data["dead_letters"]["stored"] == 1
    assert data["dead_letters"]["by_reason"] == {"exception": 1}
    r = run_cli("status", APP, broker=broker)
    assert "thumbnails" in r.stdout and "2/4" in r.stdout
    assert "dead-letter store: 1 message(s) (exception 1)" in r.stdout


def test_a_vanished_message_shows_as_unaccounted(broker: str, cli_store: Backend) -> None:
    ids = [run_cli("enqueue", APP, "cli.apps.ping", broker=broker).stdout.strip()
           for _ in range(2)]
    # Someone deletes a queued row behind the library's back: the counters still say it
    # was accepted, and status must make that visible.
    with sqlite3.connect(urlsplit(broker).path[1:]) as db:
        db.execute("DELETE FROM messages WHERE id = ?", (ids[0],))
    data = _status(broker)
    assert _queue(data, "default")["unaccounted"] == 1
    assert data["unaccounted_total"] == 1
    r = run_cli("status", APP, broker=broker)
    assert "unaccounted is 1" in r.stdout


def test_status_with_a_real_worker(broker: str, cli_store: Backend) -> None:
    for i in range(5):
        run_cli("enqueue", APP, "cli.apps.resize", "--args", f"[{i}]", broker=broker)
    worker = subprocess.Popen(
        [sys.executable, "-m", "stalwart", "worker", APP, "-Q", "images", "-c", "1",
         "--heartbeat-seconds", "0.5"],
        cwd=TESTS_DIR, env={**os.environ, "STALWART_BROKER": broker},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        data = _status(broker)
        while time.monotonic() < deadline and not (
            data["workers"] and _queue(data, "images")["succeeded"] == 5
        ):
            time.sleep(0.2)
            data = _status(broker)
        (w,) = data["workers"]
        assert w["pid"] == worker.pid and w["queues"] == ["images"] and w["pool"] == "process"
        images = _queue(data, "images")
        assert (images["accepted"], images["succeeded"], images["unaccounted"]) == (5, 5, 0)
        assert images["consumers"] == 1 and data["unconsumed_queues"] == []
        # A queue with waiting work that this worker does not consume is still flagged.
        run_cli("enqueue", APP, "cli.apps.ping", broker=broker)
        assert _status(broker)["unconsumed_queues"] == ["default"]
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 0
    assert _status(broker)["workers"] == []  # it unregistered on the way out


def test_a_bad_broker_url_is_one_line_not_a_traceback() -> None:
    for args in (["status", APP], ["dead", APP, "list"], ["enqueue", APP, "cli.apps.ping"]):
        r = run_cli(*args, broker="nosuch://somewhere")
        assert r.returncode == 1, r.stderr
        assert "no backend for URL scheme 'nosuch'" in r.stderr
        assert "Traceback" not in r.stderr
