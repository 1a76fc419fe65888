"""Fault injection on loopback: a TCP proxy that resets or blackholes, and throwaway servers.

Used by the fault tests to put real network failures between a client and a real server:
``reset()`` sends RST to both ends of every open connection at once (what a firewall or a
failing load balancer does), ``blackhole()`` keeps connections open but discards every byte
(a silent drop, as after a NAT or conntrack entry expired), ``refuse()`` resets new
connections. Servers are started on free loopback ports and stopped by their pid.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ..net import linger_reset


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


class TcpProxy:
    """A loopback TCP proxy to ``upstream`` whose connections can be reset or blackholed."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port = int(self._listener.getsockname()[1])
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._listener, selectors.EVENT_READ, None)
        self._peer: dict[socket.socket, socket.socket] = {}
        self._lock = threading.Lock()
        self._blackhole = False
        self._refuse = False
        self._closing = False
        self.accepted = 0
        self.resets = 0
        self._thread = threading.Thread(target=self._run, name="tcp-proxy", daemon=True)
        self._thread.start()

    @property
    def url_port(self) -> int:
        return self.port

    def reset(self) -> int:
        """RST every open connection, both sides; returns how many pairs were cut."""
        with self._lock:
            pairs = {frozenset((a, b)) for a, b in self._peer.items()}
            for pair in pairs:
                for s in pair:
                    self._drop(s, rst=True)
            self.resets += len(pairs)
            return len(pairs)

    def blackhole(self, on: bool = True) -> None:
        """Keep connections open but forward nothing (both directions) while on."""
        self._blackhole = on

    def refuse(self, on: bool = True) -> None:
        """Reset new connections while on (the server looks down)."""
        self._refuse = on

    def connections(self) -> int:
        with self._lock:
            return len(self._peer) // 2

    def close(self) -> None:
        self._closing = True
        self._thread.join(timeout=2)
        with self._lock:
            for s in list(self._peer):
                self._drop(s, rst=False)
        self._listener.close()
        self._sel.close()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the pump ------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._closing:
            for key, _ in self._sel.select(timeout=0.05):
                with self._lock:
                    if key.fileobj is self._listener:
                        self._accept()
                    else:
                        self._pump(key.fileobj)  # type: ignore[arg-type]

    def _accept(self) -> None:
        try:
            client, _ = self._listener.accept()
        except BlockingIOError:
            return
        if self._refuse:
            linger_reset(client)
            client.close()
            return
        try:
            upstream = socket.create_connection(self.upstream, timeout=2)
        except OSError:
            linger_reset(client)
            client.close()
            return
        for s in (client, upstream):
            s.setblocking(False)
            self._sel.register(s, selectors.EVENT_READ, None)
        self._peer[client], self._peer[upstream] = upstream, client
        self.accepted += 1

    def _pump(self, src: socket.socket) -> None:
        if src not in self._peer:
            return
        try:
            data = src.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        dst = self._peer[src]
        if not data:
            self._drop(src, rst=False)
            self._drop(dst, rst=False)
            return
        if self._blackhole:
            return
        try:
            dst.setblocking(True)
            dst.sendall(data)
            dst.setblocking(False)
        except OSError:
            self._drop(src, rst=True)
            self._drop(dst, rst=True)

    def _drop(self, s: socket.socket, rst: bool) -> None:
        self._peer.pop(s, None)
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(s)
        with contextlib.suppress(OSError):
            if rst:
                linger_reset(s)
            s.close()


class RedisServer:
    """A redis-server of the test's own on a free loopback port, stopped by its pid."""

    def __init__(self, *, appendonly: bool = False, appendfsync: str = "always",
                 port: int | None = None, directory: str | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed (Debian package redis-server)")
        self.binary = binary
        self.port = port or free_port()
        self.dir = directory or tempfile.mkdtemp(prefix="stalwart-redis-")
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
                "--save", "", "--appendonly", "yes" if self.appendonly else "no",
                "--appendfsync", self.appendfsync, "--daemonize", "no",
                "--logfile", str(Path(self.dir) / "redis.log")]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_port(self.port)
        self._wait_loaded()
        return self

    def _wait_loaded(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return
            time.sleep(0.02)
        raise TimeoutError(f"redis on port {self.port} did not finish loading")

    def kill(self) -> None:
        """SIGKILL: no shutdown save, exactly what a crash or OOM kill does."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def restart(self) -> RedisServer:
        self.kill()
        return self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def redis_server(**options: object) -> Iterator[RedisServer]:
    server = RedisServer(**options)  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        server.stop()
