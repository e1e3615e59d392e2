"""The reader of a client's response topic: it hands every message to the calls waiting.

Where the subscription can be received from threads (Pulsar brokers, the in-process broker), a
thread of its own reads with the transport's blocking receive, and a reply goes from there
straight to its caller's event loop: the client's loop is not woken for it. Elsewhere
(WebSocket) a task on the client's loop reads. Either way progress messages, and every
message of a call that watches its progress, are handled on the client's loop, where
``on_progress`` runs, in the order they came.

No message stops the reader. A receive that fails for good fails the waiting calls with its
error (:meth:`~.calls.Calls.fail_all`); the next call connects again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading

from ..errors import TransportError
from ..transport.base import Subscription
from .calls import Calls

__all__ = ["POLL", "Reader"]

log = logging.getLogger("demessaging.client")
#: Seconds the reader thread waits in one receive: how soon it sees that it must stop.
POLL = 0.2


class Reader:
    """Reads ``subscription`` until stopped; made on ``loop``, the client's.

    Parameters
    ----------
    subscription
        The client's response subscription.
    calls
        The calls waiting for replies.
    loop
        The client's event loop.
    """

    def __init__(
        self, subscription: Subscription, calls: Calls, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._subscription = subscription
        self._calls = calls
        self._loop = loop
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None
        if subscription.blocking:
            self._thread = threading.Thread(target=self._run, name="demessaging-replies")
            self._thread.daemon = True
            self._thread.start()
        else:
            self._task = loop.create_task(self._read())

    def done(self) -> bool:
        """Whether the reader has stopped (asked to, or its receive failed)."""
        if self._thread is not None:
            return not self._thread.is_alive()
        return self._task is None or self._task.done()

    async def stop(self) -> None:
        """Stop reading; returns once the reader has (in :data:`POLL` seconds and a little)."""
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._thread is not None:
            deadline = self._loop.time() + POLL + 1.0  # its receive ends, its message is handed
            while self._thread.is_alive() and self._loop.time() < deadline:
                await asyncio.sleep(0.01)

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                message = self._subscription.receive_within(POLL)
                if message is not None:
                    self._calls.route(message, self._loop)
                    # after the caller has its reply: the acknowledgement is not on its path;
                    # False if the subscription closed meanwhile (the broker sends it again)
                    self._subscription.ack_soon(message)
        except Exception as exc:
            if not self._stopping.is_set():
                self._failed(exc)

    async def _read(self) -> None:
        subscription = self._subscription
        try:
            while True:
                message = await subscription.receive()
                self._calls.route(message)
                if not subscription.ack_soon(message):  # else not awaited
                    await subscription.ack(message)
        except Exception as exc:
            self._failed(exc)

    def _failed(self, exc: Exception) -> None:
        """The next call connects again; the waiting ones learn why."""
        log.warning("the reply reader stopped: %s", exc)
        self._calls.fail_all(exc if isinstance(exc, TransportError) else TransportError(str(exc)))
