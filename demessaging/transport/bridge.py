"""Results from other threads onto an event loop: one wake-up of the loop per batch.

pulsar-client reports a send receipt or a received message by calling back from one of its
threads; a worker thread finishes a call. ``loop.call_soon_threadsafe`` for each of them
writes to the loop's wake-up pipe every time, and the loop runs once per result. Under load
(a thousand calls at once) those wake-ups were the largest single cost of a call, on both
sides. :func:`settle` instead queues the result and wakes the loop only if it is not already
woken: what arrives while the loop is busy is taken in the same turn. A callback made on the
loop's own thread (pulsar-client answers a receive at once when a message waits in its
queue, and an acknowledgement at once when acknowledgements are grouped) completes the
future at once, without a turn of the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["prepare", "run_on", "settle"]

T = TypeVar("T")


class _Bridge:
    """The pending results of one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        #: The loop's thread, once known (a bridge may be made from another thread).
        self.thread: int | None = None
        self._pending: deque[Callable[[], None]] = deque()
        self._lock = threading.Lock()
        self._woken = False

    def post(self, action: Callable[[], None]) -> None:
        """Run ``action`` on the loop soon (from any thread)."""
        with self._lock:
            self._pending.append(action)
            if self._woken:
                return
            self._woken = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self.loop.call_soon_threadsafe(self._run)

    def _run(self) -> None:
        self.thread = threading.get_ident()
        with self._lock:
            batch, self._pending = self._pending, deque()
            self._woken = False
        for action in batch:
            action()


_bridges: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Bridge] = (
    weakref.WeakKeyDictionary()
)
_made = threading.Lock()


def _bridge(loop: asyncio.AbstractEventLoop) -> _Bridge:
    """The bridge of ``loop``, made on first use."""
    bridge = _bridges.get(loop)
    if bridge is None:
        with _made:
            bridge = _bridges.get(loop) or _Bridge(loop)
            _bridges[loop] = bridge
    return bridge


def settle(
    future: asyncio.Future[Any], value: Any = None, error: BaseException | None = None
) -> None:
    """Complete ``future`` with ``value`` (or ``error``), from any thread.

    ``future`` comes from :func:`prepare`.
    """
    bridge = _bridge(future.get_loop())

    def complete() -> None:
        if future.done():  # cancelled meanwhile
            return
        if isinstance(error, asyncio.CancelledError):
            future.cancel()
        elif error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    if threading.get_ident() == bridge.thread:
        complete()
    else:
        bridge.post(complete)


def prepare() -> asyncio.Future[Any]:
    """A new future of the running loop, whose result may come from any thread."""
    loop = asyncio.get_running_loop()
    _bridge(loop).thread = threading.get_ident()
    return loop.create_future()


async def run_on(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    """Await ``coro`` on ``loop``, which runs in another thread, from the running loop.

    Both ways go through the loops' bridges: calls made at once start in one turn of
    ``loop``, and their results come back in one turn of ours. Cancelling the caller
    cancels ``coro``.
    """
    if loop.is_closed():
        coro.close()
        raise RuntimeError("the event loop to run on is closed (its client was closed)")
    done = prepare()
    tasks: list[asyncio.Task[T]] = []

    def finished(task: asyncio.Task[T]) -> None:
        if task.cancelled():
            settle(done, error=asyncio.CancelledError())
        elif task.exception() is not None:
            settle(done, error=task.exception())
        else:
            settle(done, task.result())

    def start() -> None:
        if done.cancelled():  # the caller gave up before it started
            coro.close()
            return
        task = loop.create_task(coro)
        tasks.append(task)
        task.add_done_callback(finished)

    _bridge(loop).post(start)
    try:
        result: T = await done
    except asyncio.CancelledError:

        def cancel() -> None:
            for task in tasks:
                task.cancel()

        _bridge(loop).post(cancel)
        raise
    return result
