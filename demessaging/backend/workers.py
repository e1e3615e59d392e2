"""The threads a listener runs its calls on.

A served function may block, so it runs on a worker thread, never on the listener's event
loop. The hand-over costs: through ``loop.run_in_executor`` every result woke the loop on
its own, and under load (a thousand no-op calls at once) that hop was the largest part of a
call's cost in the backend. Here a worker takes the next call from a queue as soon as it is
done with one, and its results go back through :mod:`~demessaging.transport.bridge`: what
finishes while the loop is busy is taken in one turn of it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ..transport import bridge

__all__ = ["Workers"]

log = logging.getLogger("demessaging.backend")
T = TypeVar("T")


class Workers:
    """``count`` threads that run calls, started when first needed.

    Parameters
    ----------
    count
        How many calls run at once at most.
    name
        The threads' name prefix.
    """

    def __init__(self, count: int, name: str = "demessaging-worker") -> None:
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        self.count = count
        self.name = name
        self._queue: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...]] | None] = (
            queue.SimpleQueue()
        )
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self._closed = False

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` on a worker thread; its result or its exception."""
        done = bridge.prepare()
        self.start(_settled, done, function, *args)
        result: T = await done
        return result

    def start(self, function: Callable[..., Any], *args: Any) -> None:
        """Start ``function(*args)`` on a worker thread; it hands over its result itself.

        It should not raise: what it raises is only logged.
        """
        if self._closed:
            raise RuntimeError("the workers are shut down")
        with self._lock:
            start = self._idle == 0 and len(self._threads) < self.count
            if not start:
                self._idle -= 1 if self._idle else 0
        if start:
            thread = threading.Thread(
                target=self._work, name=f"{self.name}_{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        self._queue.put((function, args))

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            function, args = item
            try:
                function(*args)
            except BaseException:  # a bug: the function hands over its own errors
                log.exception("a worker's call raised")
            del item, function, args  # nothing of the call stays with an idle worker
            with self._lock:
                self._idle += 1

    def shutdown(self) -> None:
        """Let the workers finish the calls they have, and wait for them."""
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()


def _settled(done: asyncio.Future[Any], function: Callable[..., Any], *args: Any) -> None:
    """``function(*args)``, its result or exception handed to ``done`` (on its loop)."""
    try:
        bridge.settle(done, function(*args))
    except BaseException as exc:  # handed to the caller, as an executor would
        bridge.settle(done, error=exc)
