"""Run inside the test's network namespace: enqueue through one long-lived App and time it.

Usage: python -m tests.faults.netns_client BROKER_URL SIGNAL_FILE
Enqueues one task, writes "ready" to SIGNAL_FILE, waits until the test writes "go" (after
it made the firewall forget every connection and the keepalive bound passed), enqueues again
on the same pooled connection, and prints the second enqueue's duration in seconds.
"""

import sys
import time
from pathlib import Path

from stalwart import App

from .apps import app as task_app
from .apps import record

url, signal_file = sys.argv[1], Path(sys.argv[2])
app = App("faults", broker=url, connection=task_app.connection, broker_deadline=60)
app.tasks.update(task_app.tasks)
app.send([record.s(-1)])
signal_file.write_text("ready")
while signal_file.read_text() != "go":
    time.sleep(0.05)
started = time.monotonic()
app.send([record.s(-2)])
print(f"second_enqueue_seconds={time.monotonic() - started:.3f}", flush=True)
