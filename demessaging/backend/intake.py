"""The listener's intake: one task receives requests while a worker slot is free.

Each request is handled in a task of its own; the receiving task itself lives as long as the
listener serves and is cancelled when it stops, so that a request costs no task and no wait
of its own for receiving it (a task per receive, and a wait on it and on the stop, were a
tenth of a busy backend's event loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from ..message import Message
from ..transport.base import Subscription

__all__ = ["take"]


async def take(
    subscription: Subscription,
    free: asyncio.Semaphore,
    handle: Callable[[Message], Coroutine[Any, Any, None]],
    in_flight: set[asyncio.Task[None]],
) -> None:
    """Receive a message whenever ``free`` has a slot, and start ``handle(message)``.

    The task of each handling is in ``in_flight`` until it ends; it gives the slot back. Runs
    until cancelled, or until receiving fails (raised).
    """
    while True:
        await free.acquire()
        try:
            message = await subscription.receive()
        except BaseException:
            free.release()
            raise
        task = asyncio.ensure_future(handle(message))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
