"""A client's connection: its event loop, its response topic and the calls waiting on it.

Each client listens on a response topic of its own (``<topic>_<8 random letters>``, as DASF
clients do, or a random full name in its reply namespace: ``protocol.topics.reply_topic``). A
reader (:mod:`.reader`) hands every message arriving there to its call
(:class:`~.calls.Calls`); no message stops it. A call that is given
up on (cancelled, Ctrl-C, its deadline) tells the backend with a ``cancel`` message; a stream
tells it, with ``more``, how many items its caller took.

The public coroutines of :class:`Connection` can be awaited from any event loop. A call made on
another loop than the portal's, once connected, goes from the caller's thread where the
transport sends from any thread (``publish_soon``) and the request fits in one message, and its
reply comes to the caller's loop: the portal's loop does not take part. Connecting, requests in
pieces, streams and control messages run on the portal's loop.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import logging
import threading
import time
import uuid
import weakref
from collections.abc import Awaitable, Coroutine
from typing import Any, TypeVar

from ..config import ENV_PREFIX, Settings
from ..errors import (
    AuthorizationError,
    BrokerUnreachableError,
    CallTimeoutError,
    ConfigurationError,
    DemessagingError,
    PayloadTooLargeError,
    TransportError,
)
from ..message import JSON, Message, MessageType
from ..protocol.control import control_topic, make_control
from ..protocol.fragments import PIECE_PREFETCH, Outgoing, whole
from ..protocol.outgoing import Payload, make_request
from ..protocol.pieces import Uploads
from ..protocol.replies import Reply
from ..transport import bridge
from ..transport.base import Subscription, Transport
from .calls import CONTEXTS, USED_CONTEXTS, Calls, Extras, Sent, UnsentError
from .deadline import bounded, within
from .portal import Portal
from .reader import Reader

__all__ = [
    "CANCEL_TIMEOUT",
    "CLEANUP_TIMEOUT",
    "CLOSE_TIMEOUT",
    "CONTEXTS",
    "Connection",
    "Extras",
    "USED_CONTEXTS",
]

log = logging.getLogger("demessaging.client")
#: Seconds closing a client waits for the clean-up after failed uploads.
CLEANUP_TIMEOUT = 10.0
#: Seconds a client tries to tell a backend that it cancelled a call.
CANCEL_TIMEOUT = 5.0
#: Seconds closing a client takes at most, whatever the broker does (gone, frozen).
CLOSE_TIMEOUT = 5.0
T = TypeVar("T")


class Connection:
    """Sends a client's requests and routes the replies to the calls waiting for them.

    Parameters
    ----------
    settings
        The client's settings (its topic, broker, default deadline and transport options).
    response_topic
        The topic the backend sends replies to.
    transport
        A transport to use instead of connecting to the broker.
    max_payload
        The largest request sent and the most memory held for replies arriving in pieces,
        in bytes.
    close_timeout
        Seconds :meth:`close` (and the program's exit) takes at most, whatever the broker
        does; what is not done by then is dropped.
    """

    def __init__(
        self,
        settings: Settings,
        response_topic: str,
        *,
        transport: Transport | None,
        max_payload: int,
        close_timeout: float = CLOSE_TIMEOUT,
    ) -> None:
        if not close_timeout > 0:
            raise ConfigurationError(f"close_timeout must be positive, got {close_timeout!r}")
        self.settings = settings
        self.close_timeout = close_timeout
        self.topic = settings.topic
        self.response_topic = response_topic
        self.max_payload = max_payload
        #: Where ``cancel`` and ``more`` go (``protocol.control.control_target``)
        self.control = control_topic(self.topic)
        self._transport = transport
        self._portal: Portal | None = None
        self._portal_lock = threading.Lock()
        self._subscription: Subscription | None = None
        self._reader: Reader | None = None
        #: The calls waiting for replies (from any thread), and the routing of replies.
        self._calls = Calls(response_topic, max_payload)
        self._connecting: asyncio.Lock | None = None
        #: Sends requests, in pieces where needed; made with the transport.
        self._uploads: Uploads | None = None
        #: What is left to do after failed uploads; finished before closing.
        self._cleanups: set[asyncio.Future[None]] = set()

    # -- from any thread or event loop -------------------------------------------------------

    def portal(self) -> Portal:
        """The event loop everything runs on, started on first use."""
        # one loop per client, even when many threads make their first call at once
        with self._portal_lock:
            if self._portal is None:
                self._portal = Portal()
                close = weakref.WeakMethod(self.close)
                atexit.register(lambda: (method := close()) is not None and method())
            return self._portal

    async def _on_portal(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the portal's loop, from whichever loop runs this."""
        portal = self.portal()
        if asyncio.get_running_loop() is portal.loop:
            return await coro
        return await bridge.run_on(portal.loop, coro)  # calls made at once: one turn each way

    async def exchange(
        self,
        kind: MessageType,
        payload: Payload,
        timeout: float | None,
        member: str,
        content_type: str = JSON,
        *,
        deadline: float | None = None,
        extras: Extras | None = None,
    ) -> Reply:
        """Send a request and wait for its reply, ``timeout`` seconds at most.

        ``deadline`` is the call's whole deadline, for the error message, when part of it has
        been spent already. A stream (``extras.window``) has no overall limit: its items are
        awaited one by one.

        Raises
        ------
        CallTimeoutError
            If no reply arrives in time.
        """
        extras = extras or Extras()
        limit = timeout if timeout is not None else self.settings.timeout
        call = _Call(kind, payload, content_type, time.time() + limit, extras, Sent())
        try:
            return await within(self._send_and_wait(call), None if extras.window else limit)
        except asyncio.TimeoutError:
            broker = "" if call.sent.done else self.settings.broker_url
            raise CallTimeoutError(self.topic, deadline or limit, member, broker) from None

    async def send_control(self, context: str, received: int | None = None) -> None:
        """Send ``cancel`` (or, with ``received``, ``more``) about a call to its backend."""
        await self._on_portal(self._send_control(context, received))

    def close(self) -> None:
        """Close the response subscription, the transport and the background loop.

        Takes ``close_timeout`` seconds at most (a broker that is gone or frozen cannot keep
        the caller, or the program's exit, waiting); what is not done by then is dropped.
        """
        with self._portal_lock:
            portal, self._portal = self._portal, None
        if portal is not None:
            deadline = time.monotonic() + self.close_timeout
            with contextlib.suppress(RuntimeError):
                portal.run(self._aclose(self.close_timeout))
            # the rest of the budget, and a little more: the loop must stop, not linger
            portal.close(max(0.5, deadline - time.monotonic()))

    # -- on the caller's loop or the portal's ------------------------------------------------

    async def _send_and_wait(self, call: _Call) -> Reply:
        """The call, from the caller's loop where it can be (:meth:`_direct`)."""
        portal = self.portal()
        transport = self._transport
        size = len(call.payload)
        if (
            asyncio.get_running_loop() is not portal.loop
            and transport is not None
            and self._reader is not None
            and not self._reader.done()
            and call.extras.window is None
            and size <= min(self.max_payload, transport.max_message_size or size)
        ):
            reply = await self._direct(transport, call)
            if reply is not None:
                return reply
        return await self._on_portal(self._send_and_wait_here(call))

    async def _direct(self, transport: Transport, call: _Call) -> Reply | None:
        """Send a request from the caller's thread and wait for its reply on the caller's loop.

        The portal's loop is not woken for the call: the transport sends from any thread
        (``publish_soon``), and the reader hands the reply to this loop. None if the transport
        cannot send so now (nothing was sent).
        """
        opened = self._calls.open(call.extras)
        if opened is None:  # the reader stopped: the portal's path connects again
            return None
        context, future = opened
        try:
            message = whole(call.message(context, self.response_topic))
            if not transport.publish_soon(self.topic, message, call.sent.receipt(future)):
                return None
            try:
                return await future
            except UnsentError:  # refused from this thread (a producer gone): once more, from the
                future = self._calls.again(context)  # portal, which makes a new producer
                await self._on_portal(transport.publish(self.topic, message))
                call.sent.done = True
                return await future
            except asyncio.CancelledError:  # cancelled, Ctrl-C or the deadline: tell the backend
                if call.kind is MessageType.REQUEST:
                    self._cancel_soon(context)
                raise
        finally:
            self._calls.end(context)

    # -- on the portal's loop ----------------------------------------------------------------

    async def _send_and_wait_here(self, call: _Call) -> Reply:
        """The call on the portal's loop: it connects, and sends in pieces where needed."""
        await self._connect()
        assert self._transport is not None
        if len(call.payload) > self.max_payload:
            raise PayloadTooLargeError(
                f"the request has {len(call.payload)} bytes, more than this client sends "
                f"({self.max_payload} bytes; see max_payload)"
            )
        opened = self._calls.open(call.extras)
        if opened is None:  # the reader stopped since it was started
            raise self._calls.broken or TransportError("the reply reader stopped")
        context, future = opened
        try:
            assert self._uploads is not None
            message = call.message(context, self.response_topic)
            await self._uploads.publish(message, call.extras.reads_pieces)
            call.sent.done = True
            try:
                return await future
            except asyncio.CancelledError:  # cancelled, Ctrl-C or the deadline: tell the backend
                if call.kind is MessageType.REQUEST:
                    self._later(self._send_control(context))
                raise
        finally:
            self._calls.end(context)

    def _cancel_soon(self, context: str) -> None:
        """Tell the backend, from the portal's loop, that the call ``context`` is given up."""
        portal = self._portal
        if portal is None:  # the client is closed: the backend is not told
            return
        telling = self._send_control(context)
        try:
            portal.loop.call_soon_threadsafe(self._later, telling)
        except RuntimeError:  # closed meanwhile
            telling.close()

    async def _send_control(self, context: str, received: int | None = None) -> None:
        assert self._transport is not None
        message = make_control(
            context=context, response_topic=self.response_topic, received=received
        )
        try:
            await asyncio.wait_for(self._transport.publish(self.control, message), CANCEL_TIMEOUT)
        except (DemessagingError, asyncio.TimeoutError) as exc:  # best effort: a DASF backend
            log.debug("could not tell the backend about call %s: %s", context, exc)

    def _later(self, work: Awaitable[None]) -> None:
        """Run ``work`` in the background; closing the client waits for it (a while)."""
        task = asyncio.ensure_future(work)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    async def _connect(self) -> None:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._reader is not None and not self._reader.done():
                return
            if self._transport is None:
                self._transport = self.settings.connect()
            if self._uploads is None:
                self._uploads = Uploads(
                    self._transport,
                    self.topic,
                    self._later,
                    namespace=self.settings.reply_namespace.strip(),
                    frame_setting=self.settings.variable("frame_size"),
                )
            if self._subscription is not None:  # a reader that stopped: drop its subscription
                await self._drop_subscription()
            # Shared although this client is the topic's only consumer: replies in pieces are
            # put together by offset, so order does not matter, and shared subscriptions are
            # the ones every broker gets right (pulsar-lite's exclusive ones repeat messages).
            try:  # the first contact with the broker: an unreachable one is told here
                self._subscription = await self._transport.subscribe(
                    self.response_topic,
                    f"demessaging-client-{uuid.uuid4().hex[:12]}",
                    shared=True,
                    prefetch=PIECE_PREFETCH,
                )
            except BrokerUnreachableError as exc:
                raise self._unreachable(exc) from None
            except AuthorizationError as exc:  # refused its reply topic: the namespace?
                where = f"{self.settings.variable('reply_namespace')}, where the role may consume"
                hint = f"; a partner's reply topic is made in its reply namespace ({where})"
                raise type(exc)(f"{exc}{hint if 'uthoriz' in str(exc) else ''}") from None
            self._calls.resume()
            self._reader = Reader(self._subscription, self._calls, asyncio.get_running_loop())

    def _unreachable(self, error: BrokerUnreachableError) -> BrokerUnreachableError:
        """The error naming the variables of these settings (a package's ones first)."""
        if self.settings.prefixes == (ENV_PREFIX,):
            return error
        return BrokerUnreachableError(error.url, error.reason, self.settings.variable("broker_url"))

    async def _aclose(self, timeout: float) -> None:
        """Close everything within ``timeout`` seconds; each step has its share of them."""
        loop = asyncio.get_running_loop()
        start = loop.time()

        def until(share: float) -> float:  # seconds left until ``share`` of the budget
            return max(0.0, start + share * timeout - loop.time())

        if self._cleanups:  # a broker that is gone does not keep close() waiting
            await asyncio.wait(self._cleanups, timeout=min(CLEANUP_TIMEOUT, until(0.4)))
        if self._uploads is not None:
            await bounded(self._uploads.close(), until(0.55), "the uploads")
        if self._reader is not None:
            await self._reader.stop()
        self._calls.fail_all(TransportError("the client was closed during the call"))
        if self._subscription is not None:
            await bounded(self._drop_subscription(), until(0.7), "the subscription")
        if self._transport is not None:  # cancelled at its deadline, it drops its connection
            await bounded(self._transport.close(), until(1.0), "the connection")

    async def _drop_subscription(self) -> None:
        """Delete the response subscription, so that the broker can delete the topic."""
        subscription, self._subscription = self._subscription, None
        if subscription is None:
            return
        try:
            await subscription.unsubscribe()
        except TransportError as exc:  # the broker is gone; it keeps the subscription
            log.debug("could not delete the response subscription: %s", exc)
            await subscription.close()


@dataclasses.dataclass(frozen=True)
class _Call:
    """One request to send, and whether it reached the broker."""

    kind: MessageType
    payload: Payload
    content_type: str
    expires: float  # travels with the request: late work is not started
    extras: Extras
    sent: Sent

    def message(self, context: str, response_topic: str) -> Message | Outgoing:
        """The request, as the call ``context`` sends it."""
        return make_request(
            self.payload,
            context=context,
            response_topic=response_topic,
            message_type=self.kind,
            content_type=self.content_type,
            deadline=self.expires,
            fingerprint=self.extras.fingerprint,
            window=self.extras.window,
            extra=self.extras.headers,
        )
