"""The one place connection options are decided: TCP keepalive, timeouts, health checks.

Every socket stalwart opens (broker, results, anything) takes its options from
:class:`ConnectionSettings`. A pooled connection idle past a firewall's connection-tracking
timeout is otherwise dropped silently and fails on its next use; keepalive probes keep the
firewall's entry alive, and detect a dead peer in about ``idle + interval * count`` seconds.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """Keepalive and timeout settings, in seconds, for every connection the library opens."""

    keepalive_idle: int = 60  # TCP_KEEPIDLE: idle time before the first probe
    keepalive_interval: int = 10  # TCP_KEEPINTVL: between probes
    keepalive_count: int = 9  # TCP_KEEPCNT: unanswered probes before the kernel drops it
    connect_timeout: float = 5.0
    socket_timeout: float = 30.0  # a non-blocking command that takes longer is a fault
    health_check_interval: float = 15.0  # ping a pooled connection idle longer than this

    @property
    def dead_peer_bound(self) -> float:
        """Worst-case seconds for keepalive to notice a silently dropped idle connection."""
        return self.keepalive_idle + self.keepalive_interval * self.keepalive_count

    def socket_options(self) -> dict[int, int]:
        """``{TCP_KEEP*: value}`` in the shape redis-py's ``socket_keepalive_options`` takes."""
        return {
            socket.TCP_KEEPIDLE: self.keepalive_idle,
            socket.TCP_KEEPINTVL: self.keepalive_interval,
            socket.TCP_KEEPCNT: self.keepalive_count,
        }

    def redis_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for a redis-py connection pool."""
        return {
            "socket_keepalive": True,
            "socket_keepalive_options": self.socket_options(),
            "socket_connect_timeout": self.connect_timeout,
            "socket_timeout": self.socket_timeout,
            "health_check_interval": self.health_check_interval,
            "retry_on_timeout": False,  # stalwart retries itself, with a deadline
        }

    def libpq_kwargs(self) -> dict[str, Any]:
        """Connection parameters for libpq (psycopg): keepalives and connect timeout."""
        return {
            "keepalives": 1,
            "keepalives_idle": self.keepalive_idle,
            "keepalives_interval": self.keepalive_interval,
            "keepalives_count": self.keepalive_count,
            "connect_timeout": max(1, int(round(self.connect_timeout))),
        }


def apply_keepalive(sock: socket.socket, settings: ConnectionSettings) -> None:
    """Turn keepalive on for a socket the library opened itself."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in settings.socket_options().items():
        sock.setsockopt(socket.IPPROTO_TCP, option, value)


@dataclass(frozen=True, slots=True)
class SocketKeepalive:
    """Keepalive settings as read back from a live socket with getsockopt."""

    fd: int
    local: str
    peer: str
    keepalive: bool
    idle: int
    interval: int
    count: int


def read_keepalive(sock: socket.socket) -> SocketKeepalive:
    """What the kernel will actually do for this socket, not what was asked for."""

    def addr(a: Any) -> str:
        return f"{a[0]}:{a[1]}" if isinstance(a, tuple) else str(a)

    try:
        peer = addr(sock.getpeername())
    except OSError:
        peer = "?"
    is_tcp = sock.family in (socket.AF_INET, socket.AF_INET6)
    return SocketKeepalive(
        fd=sock.fileno(),
        local=addr(sock.getsockname()),
        peer=peer,
        keepalive=bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)),
        idle=sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) if is_tcp else 0,
        interval=sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) if is_tcp else 0,
        count=sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) if is_tcp else 0,
    )


def django_redis_options(settings: ConnectionSettings | None = None) -> dict[str, Any]:
    """Keepalive and timeouts in the shape django-redis's ``CACHES[...]["OPTIONS"]`` takes.

    ``CACHES = {"default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": url,
    "OPTIONS": {"CLIENT_CLASS": "django_redis.client.DefaultClient",
    **django_redis_options()}}}``
    """
    s = settings or ConnectionSettings()
    return {
        "SOCKET_CONNECT_TIMEOUT": s.connect_timeout,
        "SOCKET_TIMEOUT": s.socket_timeout,
        "CONNECTION_POOL_KWARGS": {
            "socket_keepalive": True,
            "socket_keepalive_options": s.socket_options(),
            "health_check_interval": s.health_check_interval,
        },
    }


def linger_reset(sock: socket.socket) -> None:
    """Make ``close()`` send RST instead of FIN (used by fault-injection tests)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
