"""Soft time limits: ``SoftTimeLimitExceeded`` raised inside the running task, three ways.

* a process child's main thread: ``SIGALRM`` from ``setitimer`` (interrupts sleeps and
  blocking calls too);
* a pool thread: an asynchronous exception set on that thread (seen at its next Python
  instruction, so a task blocked inside one long C call sees it when the call returns);
* a coroutine: the task is woken and ``SoftTimeLimitExceeded`` is thrown in at the
  ``await`` where it waits, so ``except SoftTimeLimitExceeded`` works in ``async def``
  too.

The hard limit is the supervisor's: it kills the child (or abandons the thread / task).
"""

from __future__ import annotations

import asyncio
import ctypes
import signal
import threading
from collections.abc import Awaitable, Callable, Coroutine, Generator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from ..errors import SoftTimeLimitExceeded

SoftGuard = Callable[[float | None], AbstractContextManager[None]]


def _message(seconds: float) -> str:
    return f"soft time limit ({seconds:g}s) exceeded"


class AlarmLimit(AbstractContextManager[None]):
    """SIGALRM-based soft limit for the main thread of a process (a pool child)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.active = False

    def _fire(self, signum: int, frame: object) -> None:
        if self.active:
            self.active = False
            raise SoftTimeLimitExceeded(_message(self.seconds or 0))

    def __enter__(self) -> None:
        if self.seconds and self.seconds > 0:
            signal.signal(signal.SIGALRM, self._fire)
            self.active = True
            signal.setitimer(signal.ITIMER_REAL, self.seconds)

    def __exit__(self, *exc_info: object) -> None:
        if self.seconds and self.seconds > 0:
            self.active = False
            signal.setitimer(signal.ITIMER_REAL, 0)


def async_raise(thread_id: int, exc_type: type[BaseException] | None) -> bool:
    """Set (or with None, clear) a pending exception on another thread; True if it exists."""
    target = ctypes.py_object(exc_type) if exc_type is not None else None
    n = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), target)
    return bool(n)


class ThreadLimit(AbstractContextManager[None]):
    """Soft limit for the current thread, raised in it from a timer thread."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.lock = threading.Lock()
        self.active = False
        self.fired = False
        self.timer: threading.Timer | None = None
        self.ident = 0

    def _fire(self) -> None:
        with self.lock:
            if self.active:
                self.fired = True
                async_raise(self.ident, SoftTimeLimitExceeded)

    def __enter__(self) -> None:
        if self.seconds and self.seconds > 0:
            self.ident = threading.get_ident()
            self.active = True
            self.timer = threading.Timer(self.seconds, self._fire)
            self.timer.daemon = True
            self.timer.start()

    def __exit__(self, *exc_info: object) -> None:
        if self.timer is None:
            return
        with self.lock:
            self.active = False
            self.timer.cancel()
            if self.fired:
                async_raise(self.ident, None)  # not delivered yet: never past the task's end


def no_limit(seconds: float | None) -> AbstractContextManager[None]:
    return nullcontext()


class _Thrower:
    """Drives a coroutine; a cancellation marked as the soft limit becomes that exception."""

    def __init__(self, coro: Coroutine[Any, Any, Any]) -> None:
        self.coro = coro
        self.soft_pending: str | None = None

    def __await__(self) -> Generator[Any, Any, Any]:
        coro = self.coro
        to_send: Any = None
        to_throw: BaseException | None = None
        while True:
            try:
                if to_throw is not None:
                    exc, to_throw = to_throw, None
                    yielded = coro.throw(exc)
                else:
                    yielded = coro.send(to_send)
            except StopIteration as stop:
                return stop.value
            to_send = None
            try:
                to_send = yield yielded
            except asyncio.CancelledError as cancel:
                if self.soft_pending is not None:
                    text, self.soft_pending = self.soft_pending, None
                    task = asyncio.current_task()
                    if task is not None:
                        task.uncancel()
                    to_throw = SoftTimeLimitExceeded(text)
                else:
                    to_throw = cancel
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                to_throw = exc


async def run_with_soft_limit(coro: Coroutine[Any, Any, Any], seconds: float | None) -> Any:
    """Await ``coro``; after ``seconds`` throw SoftTimeLimitExceeded in where it waits."""
    if not seconds or seconds <= 0:
        return await coro
    thrower = _Thrower(coro)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()

    def fire() -> None:
        if task is not None and not task.done():
            thrower.soft_pending = _message(seconds)
            task.cancel()

    handle = loop.call_later(seconds, fire)
    try:
        return await thrower
    finally:
        handle.cancel()


def awaitable_result(value: Awaitable[Any], seconds: float | None) -> Any:
    """Run an awaitable a sync call returned to completion on a fresh loop."""

    async def main() -> Any:
        return await run_with_soft_limit(_as_coro(value), seconds)

    return asyncio.run(main())


async def _as_coro(value: Awaitable[Any]) -> Any:
    return await value
