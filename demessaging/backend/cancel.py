"""Cancellation: the calls a backend runs, and the callers that gave up on theirs.

A client that stops waiting for a call (the task is cancelled, Ctrl-C, its deadline passes)
publishes a ``cancel`` message on the backend's control topic, ``<topic>_control`` (see
:func:`~demessaging.protocol.envelope.control_topic`). Every backend instance reads that topic
on a subscription of its own, so the instance that runs the call hears of it wherever the call
went:

- a call that runs has its cancellation event set: the function's
  :class:`~demessaging.progress.Reporter` raises
  :class:`~demessaging.errors.CallCancelled` at its next cancellation point;
- a call not started yet is remembered (a bounded number of them), and skipped when its
  request arrives.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict

from ..errors import DemessagingError
from ..protocol.envelope import Message, MessageType, Prop
from ..transport.base import Subscription

__all__ = ["Cancellations", "call_key"]

log = logging.getLogger("demessaging.backend")

#: Cancelled calls remembered before their requests arrive.
_REMEMBERED = 10_000


def call_key(message: Message) -> str | None:
    """What names a call in requests and in ``cancel`` messages: its reply address and context."""
    props = message.properties
    caller = props.get(Prop.CALLER if message.message_type == "cancel" else Prop.RESPONSE_TOPIC)
    if props.get(Prop.REQUEST_CONTEXT) and caller:
        return f"{caller}\0{props[Prop.REQUEST_CONTEXT]}"
    return None


class Cancellations:
    """The calls running here, and those cancelled before they came."""

    def __init__(self) -> None:
        self._running: dict[str, threading.Event] = {}
        self._early: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def start(self, key: str | None) -> threading.Event | None:
        """The event of a call about to run; None if it was cancelled already (skip it)."""
        event = threading.Event()
        if key is None:
            return event
        with self._lock:
            if key in self._early:
                del self._early[key]
                return None
            self._running[key] = event
        return event

    def done(self, key: str | None) -> None:
        """Forget a call that has ended."""
        if key is not None:
            with self._lock:
                self._running.pop(key, None)

    def cancel(self, key: str) -> None:
        """The caller of ``key`` gave up: stop it, or skip it when it comes."""
        with self._lock:
            event = self._running.get(key)
            if event is None:
                self._early[key] = None
                if len(self._early) > _REMEMBERED:
                    self._early.popitem(last=False)
        if event is not None:
            log.info("cancelling a running call at its caller's request")
            event.set()

    async def watch(self, subscription: Subscription) -> None:
        """Read ``cancel`` messages until cancelled; anything else is acknowledged and dropped."""
        while True:
            try:
                message = await subscription.receive()
            except DemessagingError as exc:
                log.warning("reading cancellations failed (%s); trying again in 1 s", exc)
                await asyncio.sleep(1.0)
                continue
            key = call_key(message)
            if message.message_type == MessageType.CANCEL.value and key is not None:
                self.cancel(key)
            else:
                log.debug("ignoring a message on the control topic: %s", message.properties)
            try:
                await subscription.ack(message)
            except DemessagingError as exc:
                log.debug("acknowledging a cancellation failed: %s", exc)
