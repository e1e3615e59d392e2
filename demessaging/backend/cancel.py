"""Control of running calls by their callers: cancellation, and credit for streamed items.

A client that stops waiting for a call (the task is cancelled, Ctrl-C, its deadline passes)
publishes a ``cancel`` message on the backend's control topic, ``<topic>_control`` (see
:func:`~demessaging.protocol.control.control_topic`). Every backend instance reads that topic
on a subscription of its own, so the instance that runs the call hears of it wherever the call
went:

- a call that runs has its cancellation event set: the function's
  :class:`~demessaging.core.reporter.Reporter` raises
  :class:`~demessaging.errors.CallCancelled` at its next cancellation point;
- a call not started yet is remembered (a bounded number of them), and skipped when its
  request arrives.

A caller taking a generator's items one by one sends ``more`` messages there too, saying how
many items it has taken; the backend sends at most ``stream`` (the request's window) items
beyond that, so a slow caller holds the generator back instead of piling items up.

Where the control topic cannot be used (on dasf-broker-django as installed, an admin makes a
backend's topic and nothing else, and publishing makes no topic), the backend learns it as it
starts: the check message it publishes there (:func:`~demessaging.protocol.control.make_check`)
is refused. It warns once, naming the command that makes the topic, and reads control messages
on its request topic instead, on a subscription of its own (the request topic's messages come
to it twice then); its pong and its stream's items say so (``control="topic"``), and its
callers send their ``cancel`` and ``more`` there. If even that fails, it hears none: its calls
cannot be cancelled, and its items go without waiting for credit (``control="none"``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid

from ..errors import CallCancelled, DemessagingError, ProtocolError, TransportError
from ..message import Message, MessageType, Prop
from ..protocol.control import (
    NO_CONTROL,
    ON_REQUEST_TOPIC,
    control_topic,
    is_control,
    make_check,
    parse_control,
)
from ..transport.base import Subscription, Transport
from .recent import Recent

__all__ = ["CallControl", "Cancellations"]

log = logging.getLogger("demessaging.backend")


class CallControl:
    """What a running call hears from its caller: that it gave up, and what it has taken."""

    def __init__(self, *, said: dict[str, str] | None = None) -> None:
        #: what the backend's pong and items say of where control messages go
        self.said = said or {}
        self.cancelled = threading.Event()
        self.received = 0
        self.heard = time.monotonic()  # when the caller last said how many it has taken
        self._changed = threading.Condition()

    def cancel(self) -> None:
        """The caller gave up."""
        with self._changed:
            self.cancelled.set()
            self._changed.notify_all()

    def credit(self, received: int) -> None:
        """The caller has taken ``received`` items."""
        with self._changed:
            self.received = max(self.received, received)
            self.heard = time.monotonic()
            self._changed.notify_all()

    def wait_for_room(self, sent: int, window: int, idle: float) -> None:
        """Wait until fewer than ``window`` of the ``sent`` items are not taken yet.

        Raises
        ------
        CallCancelled
            If the caller gave up, or said nothing for ``idle`` seconds (it is gone).
        """
        if self.said.get(Prop.CONTROL) == NO_CONTROL:  # no credit can come: items go as made
            return
        started = time.monotonic()
        with self._changed:
            while sent - self.received >= window and not self.cancelled.is_set():
                left = max(started, self.heard) + idle - time.monotonic()
                if left <= 0:
                    raise CallCancelled(f"the caller took no item for {idle:g} s")
                self._changed.wait(left)
            if self.cancelled.is_set():
                raise CallCancelled("the caller cancelled the call")


class Cancellations:
    """The calls running here, and those cancelled before they came."""

    def __init__(self) -> None:
        self._running: dict[str, CallControl] = {}
        self._early = Recent()  # cancelled before their requests came
        self._lock = threading.Lock()
        #: what the backend's pong and items say of where control messages go, as learnt by
        #: :meth:`follow`: nothing where ``<topic>_control`` is read
        self.said: dict[str, str] = {}

    def start(self, key: str | None) -> CallControl | None:
        """The control of a call about to run; None if it was cancelled already (skip it)."""
        control = CallControl(said=self.said)
        if key is None:
            return control
        with self._lock:
            if self._early.take(key):
                return None
            self._running[key] = control
        return control

    def done(self, key: str | None) -> None:
        """Forget a call that has ended."""
        if key is not None:
            with self._lock:
                self._running.pop(key, None)

    def cancel(self, key: str) -> None:
        """The caller of ``key`` gave up: stop it, or skip it when it comes."""
        with self._lock:
            control = self._running.get(key)
            if control is None:
                self._early.add(key)
        if control is not None:
            log.info("cancelling a running call at its caller's request")
            control.cancel()

    def credit(self, key: str, received: int) -> None:
        """The caller of ``key`` has taken ``received`` items (ignored unless it runs here)."""
        with self._lock:
            control = self._running.get(key)
        if control is not None:
            control.credit(received)

    async def follow(
        self, transport: Transport, topic: str, subscription: str
    ) -> asyncio.Task[None] | None:
        """Read the control topic of ``topic`` in a task, on a subscription of this instance's own.

        First publishes a check message there: where the broker refuses it (the topic was not
        made, and publishing makes none), callers could not send control messages there
        either, and they are read on ``topic`` itself, with one warning naming the command
        that makes the control topic. Returns None, with a warning, if subscribing fails:
        calls cannot be cancelled then, and streams wait for no credit.
        """
        name = f"{subscription}-{uuid.uuid4().hex[:12]}"
        where = control_topic(topic)
        try:
            await transport.publish(where, make_check(topic))
        except DemessagingError as exc:
            log.warning(
                "the control topic %s cannot be used (%s): cancel and stream credit messages "
                "come on the request topic %s instead, where this backend then reads every "
                "request twice; to keep them apart, make the control topic (on "
                "dasf-broker-django: python manage.py dasf_topic %s --new --anonymous) and "
                "restart the backend",
                where,
                exc.reason if isinstance(exc, TransportError) else exc,
                topic,
                where,
            )
            where = topic
            self.said = {Prop.CONTROL: ON_REQUEST_TOPIC}
        try:
            control = await transport.subscribe(where, name, shared=False, prefetch=100)
        except DemessagingError as exc:
            self.said = {Prop.CONTROL: NO_CONTROL}
            log.warning(
                "calls cannot be cancelled, and streams go without back-pressure: subscribing "
                "to %s failed: %s",
                where,
                exc,
            )
            return None

        async def watch() -> None:
            try:
                await self.watch(control)
            finally:
                with contextlib.suppress(DemessagingError):
                    await control.unsubscribe()

        return asyncio.ensure_future(watch())

    async def watch(self, subscription: Subscription) -> None:
        """Read control messages until cancelled.

        Anything else (a check, or a request where they come on the request topic) is
        acknowledged and dropped.
        """
        while True:
            try:
                message = await subscription.receive()
            except DemessagingError as exc:
                log.warning("reading cancellations failed (%s); trying again in 1 s", exc)
                await asyncio.sleep(1.0)
                continue
            if is_control(message):  # not a check (a backend starting), nor a request
                self._obey(message)
            try:
                await subscription.ack(message)
            except DemessagingError as exc:
                log.debug("acknowledging a cancellation failed: %s", exc)

    def _obey(self, message: Message) -> None:
        """Act on one message of the control topic; a malformed one is logged and dropped."""
        try:
            control = parse_control(message)
        except ProtocolError as exc:
            log.debug("ignoring a message on the control topic (%s): %s", exc, message.properties)
            return
        if control.kind is MessageType.CANCEL:
            self.cancel(control.key)
        elif control.received is not None:
            self.credit(control.key, control.received)
