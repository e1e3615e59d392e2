"""The listener's intake on the event loop: one task receives requests while a slot is free.

(Where the subscription can be received from threads, the workers receive instead:
:mod:`.receivers`.)

A call whose reply is on its way to the broker lends its worker slot to the next request
while it waits for the broker's receipt (milliseconds on Apache Pulsar, which stores the
reply first): the slots bound the calls running, not the broker's latency. The request stays
unacknowledged until the receipt comes; at most ``LENT_PER_WORKER`` calls a worker wait so.

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
from .uploads import Hold

__all__ = ["CLOCK_SKEW", "LENT_PER_WORKER", "Lender", "take"]

#: Seconds a request's deadline may seem past because the caller's clock is behind ours.
CLOCK_SKEW = 1.0
#: Calls per worker whose reply may wait for the broker's receipt without a worker slot.
LENT_PER_WORKER = 4


async def take(
    subscription: Subscription,
    free: asyncio.Semaphore,
    handle: Callable[[Message], Coroutine[Any, Any, None]],
    start: Callable[[Coroutine[Any, Any, None]], None],
) -> None:
    """Receive a message whenever ``free`` has a slot, and ``start`` its ``handle(message)``.

    ``start`` runs the handling in a task, which gives the slot back. Runs until cancelled,
    or until receiving fails (raised).
    """
    while True:
        await free.acquire()
        try:
            message = await subscription.receive()
        except BaseException:
            free.release()
            raise
        start(handle(message))


class Lender:
    """Lends the worker slots of calls whose reply waits for its receipt, within a limit.

    Parameters
    ----------
    workers
        The listener's workers: ``LENT_PER_WORKER`` slots each may be lent at once.
    """

    def __init__(self, workers: int) -> None:
        self.limit = LENT_PER_WORKER * workers
        self.lent = 0

    def lend(self, hold: Hold) -> None:
        """The call of ``hold`` ran and its reply is on its way: free its slot, if in limits."""
        if hold.working and not hold.lent and self.lent < self.limit:
            hold.lent = True
            self.lent += 1
            hold.free.release()

    def back(self, hold: Hold) -> None:
        """The handling of ``hold`` is over (its slot, if lent, is not to be released again)."""
        if hold.lent:
            self.lent -= 1
