"""A tiny HTTP liveness endpoint on 127.0.0.1: 200 while the worker is healthy, 503 if not."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def serve_health(port: int, report: Callable[[], dict[str, Any]],
                 host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Start serving in a daemon thread; ``report()["health"] == "ok"`` answers 200."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
            doc = report()
            body = json.dumps(doc, default=str).encode()
            self.send_response(200 if doc.get("health") == "ok" else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # probes every few seconds would drown the worker's own log

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="stalwart-health", daemon=True).start()
    return server
