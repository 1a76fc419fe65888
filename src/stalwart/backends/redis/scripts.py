"""The Lua scripts beside this module: loaded by SHA on first use, reloaded if the server lost them.

Every per-queue script gets ``lib.lua`` (the shared state-transition helpers) prepended, and
is called with one key in the queue's slot plus ``ARGV[1]`` = the queue's key base and
``ARGV[2]`` = the client's clock. Calls go out as one pipeline: one round trip per batch.

A composed script (``store.lua``: enqueue in one call) gets ``lib.lua`` and then each of its
parts, every part wrapped as a local function named after it that takes its own ``ARGV``:
the composed script runs the parts' own code on arguments it builds.
"""

from __future__ import annotations

import hashlib
import inspect
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

import redis

PER_QUEUE = (
    "enqueue", "heads", "claim", "extend", "settle", "progress", "recover", "cancel",
    "requeue", "purge",
)
STORE_WIDE = ("reserve", "register", "unindex")
COMPOSED = {"store": ("reserve", "enqueue")}  # script -> the scripts it runs as functions


def _source(name: str) -> str:
    return resources.files(__package__).joinpath(f"{name}.lua").read_text(encoding="utf-8")


def _as_function(name: str) -> str:
    """Script ``name`` as ``local function name(ARGV)``: its code, on arguments a caller builds."""
    return f"local function {name}(ARGV)\n{_source(name)}\nend"


@dataclass(frozen=True, slots=True)
class Call:
    """One script call: which script, the key that routes it to its slot, its ARGV.

    ``other_keys`` are keys it writes in other slots: such a call runs on a single server only.
    """

    script: str
    key: str
    args: Sequence[Any]
    other_keys: Sequence[str] = ()


class Scripts:
    """The scripts' sources and SHAs, and one way to run a batch of calls."""

    def __init__(self) -> None:
        lib = _source("lib")
        self.sources = {name: f"{lib}\n{_source(name)}" for name in PER_QUEUE}
        self.sources.update({name: _source(name) for name in STORE_WIDE})
        self.sources.update({
            name: "\n".join([lib, *map(_as_function, parts), _source(name)])
            for name, parts in COMPOSED.items()
        })
        self.shas = {
            name: hashlib.sha1(src.encode("utf-8")).hexdigest()
            for name, src in self.sources.items()
        }
        self._load_lock = threading.Lock()

    def load(self, client: redis.Redis) -> None:
        """Send every script to the server (after a restart or SCRIPT FLUSH lost them)."""
        with self._load_lock:
            pipe = client.pipeline(transaction=False)
            for src in self.sources.values():
                pipe.script_load(src)
            pipe.execute()

    def run(self, client: redis.Redis, calls: Sequence[Call],
            pop: tuple[str, float] | None = None) -> list[Any]:
        """Run ``calls`` in one pipeline and return their replies in order.

        ``pop`` (key, seconds) puts a BLPOP on that key before the last call, so the server
        runs that call the moment the pop returns (or times out). A call the server refused
        with NOSCRIPT never ran, so it is sent again once the scripts are loaded; any other
        error is raised.
        """
        if not calls:
            return []
        results = self._send(client, calls, pop)
        missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missing:
            self.load(client)
            again = self._send(client, [calls[i] for i in missing], None)
            for i, r in zip(missing, again, strict=True):
                results[i] = r
        for r in results:
            if isinstance(r, Exception):
                raise r
        return results

    def _send(self, client: redis.Redis, calls: Sequence[Call],
              pop: tuple[str, float] | None) -> list[Any]:
        commands: list[tuple[Any, ...]] = []
        for i, c in enumerate(calls):
            if pop is not None and i == len(calls) - 1:
                commands.append(("BLPOP", pop[0], pop[1]))
            keys = (c.key, *c.other_keys)
            commands.append(("EVALSHA", self.shas[c.script], len(keys), *keys, *c.args))
        replies = round_trip(client, commands)
        if pop is not None:
            popped = replies.pop(len(calls) - 1)
            if isinstance(popped, Exception):
                raise popped
        return replies


# redis-py < 5.3 wants a command name when a connection is checked out; later ones warn.
_CHECKOUT_ARGS = ("EVALSHA",) if inspect.signature(
    redis.ConnectionPool.get_connection).parameters["command_name"].default \
    is inspect.Parameter.empty else ()


def round_trip(client: redis.Redis, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Send ``commands`` on one pooled connection and read every reply: one round trip.

    What a non-transactional pipeline does, for about half its CPU (measured: 84 us against
    154 us per call here, as much as the round trip itself). Error replies are returned in
    their place, not raised; a broken connection is closed before it goes back to the pool.
    """
    pool = client.connection_pool
    conn = pool.get_connection(*_CHECKOUT_ARGS)
    try:
        conn.send_packed_command(conn.pack_commands(commands))
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(conn.read_response())
            except ResponseError as exc:
                replies.append(exc)
    except BaseException:
        conn.disconnect()  # replies may still be in flight: never reuse it
        raise
    finally:
        pool.release(conn)
    return replies
