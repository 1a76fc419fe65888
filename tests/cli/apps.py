"""Apps the command-line tests load as ``apps:app``; the broker comes from STALWART_BROKER."""

from __future__ import annotations

from stalwart import App

app = App("cli-tests")


@app.task(queue="images")
def resize(image_id: int, size: int = 128) -> dict[str, int]:
    return {"image_id": image_id, "size": size}


@app.task
def ping() -> str:
    return "pong"
