"""The application ``stalwart demo`` runs: an image pipeline whose tasks misbehave on purpose.

Every way real work goes wrong is here once: a flaky storage node (retried with backoff), a
corrupt upload (``Fail``, no retries), a file that never loads (retries exhausted), a job
that overruns its soft time limit (and saves what it has), a poison message that kills its
own process on every delivery, and a long render whose process the demo kills from outside.

Each execution appends one JSON line to ``$STALWART_DEMO_RECORD`` (when set), so the demo
can check from outside that every success really ran. The broker comes from
``$STALWART_BROKER`` like any App's.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

from stalwart import App, Fail, Retry, SoftTimeLimitExceeded

QUEUE = "images"
FLAKY_EVERY = 23  # every 23rd thumbnail meets a storage timeout on its first two tries
CORRUPT_ID = 13  # this upload is not an image: Fail, straight to the dead-letter store
MISSING_ID = 77  # this one is never found: retried until the retries run out

app = App(
    "demo",
    retry=Retry(max_retries=3, backoff=0.2, factor=2.0, max_delay=2.0, jitter=True),
)


def record(event: str, **fields: Any) -> None:
    """Append one line to the execution record (one write, so lines from processes never mix)."""
    path = os.environ.get("STALWART_DEMO_RECORD")
    if not path:
        return
    line = json.dumps({"event": event, "pid": os.getpid(), "t": time.time(), **fields}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _start(task: Any) -> dict[str, Any]:
    req = task.request
    fields = {"id": req.id, "task": req.task, "delivery": req.deliveries,
              "retries": req.retries}
    record("start", **fields)
    return fields


@app.task(bind=True, queue=QUEUE, name="demo.thumbnail")
def thumbnail(self: Any, image_id: int) -> dict[str, Any]:
    """Make a thumbnail: quick, and now and then the storage node times out."""
    me = _start(self)
    time.sleep(0.005 + (image_id * 7919 % 13) / 1000)
    if image_id == CORRUPT_ID:
        record("fail", **me)
        raise Fail(f"upload {image_id} is not an image (bad magic bytes)")
    if image_id == MISSING_ID:
        record("error", **me)
        raise FileNotFoundError(f"uploads/{image_id}.jpg is gone from the bucket")
    if image_id % FLAKY_EVERY == 0 and self.request.retries < 2:
        record("error", **me)
        raise TimeoutError(f"storage node timed out writing thumbs/{image_id}.jpg")
    record("done", **me)
    return {"image_id": image_id, "thumbnail": f"thumbs/{image_id}.jpg"}


@app.task(bind=True, queue=QUEUE, name="demo.panorama", soft_time_limit=0.6, time_limit=10)
def panorama(self: Any, image_id: int) -> dict[str, Any]:
    """Stitch a panorama: too slow for its soft limit, so it saves what it has and returns."""
    me = _start(self)
    tiles = 0
    try:
        for tiles in range(1, 101):
            time.sleep(0.05)
            self.progress(tiles, 100, "stitching")
    except SoftTimeLimitExceeded:
        record("soft-limit", tiles=tiles, **me)
        record("done", **me)
        return {"image_id": image_id, "partial": True, "tiles": tiles}
    record("done", **me)
    return {"image_id": image_id, "partial": False, "tiles": tiles}


@app.task(bind=True, queue=QUEUE, name="demo.decode_raw", max_deliveries=3)
def decode_raw(self: Any, image_id: int) -> None:
    """A RAW file that crashes the decoder: the process dies on every single delivery."""
    me = _start(self)
    record("crash", **me)
    os.kill(os.getpid(), signal.SIGKILL)


@app.task(bind=True, queue=QUEUE, name="demo.video_preview")
def video_preview(self: Any, image_id: int, seconds: float = 2.5) -> dict[str, Any]:
    """A long render; the demo kills the process running its first delivery."""
    me = _start(self)
    steps = 25
    for step in range(1, steps + 1):
        time.sleep(seconds / steps)
        self.progress(step, steps, "rendering")
    record("done", **me)
    return {"image_id": image_id, "preview": f"previews/{image_id}.mp4"}
