"""Tasks for the fault tests: each execution appends its start and end to a ledger file.

The broker comes from ``STALWART_BROKER`` and the ledger path from ``FAULT_LEDGER``, so the
same module serves a worker started as a subprocess and the test that reads the ledger.
"""

import os
import time

from stalwart import App, ConnectionSettings

# Short keepalive timers so a silently dropped connection is noticed in seconds, not minutes.
_FAST = ConnectionSettings(keepalive_idle=int(os.environ.get("FAULT_KEEPIDLE", "60")),
                           keepalive_interval=int(os.environ.get("FAULT_KEEPINTVL", "10")),
                           keepalive_count=int(os.environ.get("FAULT_KEEPCNT", "9")),
                           socket_timeout=float(os.environ.get("FAULT_SOCKET_TIMEOUT", "30")))

app = App("faults", connection=_FAST, broker_deadline=60.0)


def _log(event: str, message_id: str, n: int) -> None:
    line = f"{event} {message_id} {n} {os.getpid()} {time.time():.6f}\n"
    fd = os.open(os.environ["FAULT_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one write() per line: O_APPEND keeps lines whole
    finally:
        os.close(fd)


@app.task(bind=True, name="faults.record")  # one name however the module is imported
def record(self, n: int, seconds: float = 0.0) -> int:
    _log("start", self.request.id, n)
    if seconds:
        time.sleep(seconds)
    _log("end", self.request.id, n)
    return n
