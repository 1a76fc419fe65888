"""Tasks for the worker tests: each execution appends its start and end to a ledger file.

The broker comes from ``STALWART_BROKER`` and the ledger from ``WORKER_LEDGER``, so the
same module serves a worker started as a subprocess and the test that enqueues and reads.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time

from stalwart import App, Fail, Retry, SoftTimeLimitExceeded

app = App("worker-tests", retry=Retry(max_retries=3, backoff=0.05, factor=1.0, jitter=False))


def mark(event: str, key: str, detail: str = "-") -> None:
    line = f"{event} {key} {os.getpid()} {time.time():.6f} {detail}\n"
    fd = os.open(os.environ["WORKER_LEDGER"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one write() per line: O_APPEND keeps lines whole
    finally:
        os.close(fd)


@app.task
def work(key: str, seconds: float = 0.0) -> str:
    mark("start", key)
    if seconds:
        time.sleep(seconds)
    mark("end", key)
    return key


@app.task
def noop() -> None:
    return None


@app.task(bind=True)
def chatty(self, key: str, steps: int, pause: float) -> int:
    mark("start", key, str(self.request.deliveries))
    for i in range(steps):
        self.progress(i + 1, steps, f"step {i + 1}")
        time.sleep(pause)
    mark("end", key)
    return steps


@app.task(soft_time_limit=0.5)
def soft(key: str) -> str:
    mark("start", key)
    try:
        time.sleep(5)
    except SoftTimeLimitExceeded:
        mark("soft", key)
        mark("end", key)
        return "cleaned up"
    mark("end", key)
    return "not interrupted"


@app.task(time_limit=0.5, retry=Retry(max_retries=1, backoff=0.05, jitter=False))
def hard(key: str) -> None:
    mark("start", key)
    time.sleep(30)
    mark("end", key)


@app.task(max_deliveries=3)
def poison(key: str) -> None:
    mark("start", key)
    os.kill(os.getpid(), signal.SIGKILL)


@app.task(bind=True)
def suicidal_once(self, key: str) -> int:
    """Kills its own process on the first delivery, succeeds on the next."""
    mark("start", key, str(self.request.deliveries))
    if self.request.deliveries == 1:
        os._exit(3)
    mark("end", key)
    return self.request.deliveries


@app.task(bind=True, max_retries=3)
def flaky(self, key: str, failures: int) -> int:
    mark("start", key, str(self.request.retries))
    if self.request.retries < failures:
        raise self.retry(countdown=0.05, exc=OSError(f"attempt {self.request.retries}"))
    mark("end", key)
    return self.request.retries


@app.task(autoretry_for=(ValueError,), retry_backoff=0.05, retry_jitter=False, max_retries=2)
def auto(key: str) -> None:
    mark("start", key)
    raise ValueError(f"{key} always fails")


@app.task(autoretry_for=(ValueError,), retry_backoff=0.05, max_retries=2)
def not_covered(key: str) -> None:
    mark("start", key)
    raise KeyError(key)


@app.task
def fails_hard(key: str) -> None:
    mark("start", key)
    raise Fail(f"{key}: nothing to retry")


@app.task
def returns_object(key: str) -> object:
    mark("start", key)
    return object()


@app.task
async def coro(key: str, seconds: float = 0.0) -> str:
    mark("start", key)
    await asyncio.sleep(seconds)
    mark("end", key)
    return key.upper()


@app.task(soft_time_limit=0.3)
async def coro_soft(key: str) -> str:
    mark("start", key)
    try:
        await asyncio.sleep(5)
    except SoftTimeLimitExceeded:
        mark("soft", key)
        return "cleaned up"
    return "not interrupted"
