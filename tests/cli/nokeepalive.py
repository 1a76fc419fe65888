"""An App whose Redis connections are opened without TCP keepalive, as a pool configured by
hand often is: what ``stalwart doctor`` exists to catch.

``redis+nokeepalive://host:port/db`` opens the ordinary Redis backend, then turns keepalive
off for every connection its pools make from then on (real sockets, really without it).
"""

from __future__ import annotations

import time

from stalwart import App, ConnectionSettings
from stalwart.backends import SCHEMES
from stalwart.backends.base import Clock
from stalwart.backends.redis import RedisBackend

SCHEME = "redis+nokeepalive"
SCHEMES[SCHEME] = "cli.nokeepalive:NoKeepaliveRedis"


class NoKeepaliveRedis(RedisBackend):
    def __init__(self, url: str, *, clock: Clock = time.time,
                 settings: ConnectionSettings | None = None) -> None:
        super().__init__("redis://" + url.split("://", 1)[1], clock=clock, settings=settings)
        for pool in (self._pool, self._blocking_pool):
            pool.connection_kwargs["socket_keepalive"] = False
            pool.connection_kwargs.pop("socket_keepalive_options", None)


app = App("no-keepalive")
