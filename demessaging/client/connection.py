"""A client's connection: its event loop, its response topic and the calls waiting on it.

Each client listens on a response topic of its own (``<topic>_<8 random letters>``, as DASF
clients do, or a random full name in its reply namespace: ``protocol.topics.reply_topic``). A
reader task routes every reply arriving there to its call by ``requestContext``: it puts
replies in pieces together, hands progress messages to the call's ``on_progress`` and stream
items to the stream. Each message is parsed once
(:func:`~demessaging.protocol.replies.parse_reply`); one that is not a reply, or is malformed,
is dropped alone (logged), and no message stops the reader. A call that is given up on
(cancelled, Ctrl-C, its deadline) tells the backend with a ``cancel`` message; a stream tells
it, with ``more``, how many items its caller took.

Everything here runs on the loop of the connection's :class:`~.portal.Portal`; the public
coroutines of :class:`Connection` can be awaited from any event loop.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import logging
import secrets
import threading
import time
import uuid
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, TypeVar

from ..config import ENV_PREFIX, Settings
from ..errors import (
    AuthorizationError,
    BrokerUnreachableError,
    CallTimeoutError,
    ConfigurationError,
    DemessagingError,
    PayloadTooLargeError,
    ProtocolError,
    TransportError,
)
from ..message import JSON, Message, MessageType, Prop, Status
from ..protocol.control import control_topic, make_control
from ..protocol.fragments import PIECE_PREFETCH, Reassembler
from ..protocol.outgoing import Payload, make_request
from ..protocol.pieces import Uploads
from ..protocol.recent import Recent
from ..protocol.replies import Reply, parse_reply
from ..transport import bridge
from ..transport.base import Subscription, Transport
from .bars import Progress
from .deadline import bounded, within
from .portal import Portal

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
#: Request contexts are drawn at random from 1 to this, anew for each call: digits, as
#: dasf-broker-django stores them in an integer column (of 32 bits on PostgreSQL), and not to
#: be guessed by others on the broker, who could otherwise cancel calls before they are made.
CONTEXTS = 2**31 - 1
#: How many of its latest contexts a client does not draw again (a backend remembers as many
#: requests it answered, by context among others, to spot their repeats).
USED_CONTEXTS = 10_000
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Extras:
    """What a call may add to its request and reply handling."""

    on_progress: Callable[[Progress], None] | None = None
    fingerprint: str | None = None
    window: int | None = None  # a stream: this many items on their way at most
    on_item: Callable[[Message], None] | None = None
    reads_pieces: Callable[[], Awaitable[bool]] | None = None  # asked of a large request
    headers: Mapping[str, str] | None = None  # more properties (the trace context)


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
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[str, asyncio.Future[Reply]] = {}
        self._watchers: dict[str, Callable[[Progress], None]] = {}
        self._streams: dict[str, Callable[[Message], None]] = {}
        self._reassembler = Reassembler(max_payload)
        self._connecting: asyncio.Lock | None = None
        #: Sends requests, in pieces where needed; made with the transport.
        self._uploads: Uploads | None = None
        #: The latest request contexts (see :data:`CONTEXTS`).
        self._used = Recent(USED_CONTEXTS)
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
        exchange = self._exchange(
            kind, payload, timeout, member, content_type, deadline=deadline, extras=extras
        )
        return await self._on_portal(exchange)

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

    # -- on the portal's loop ----------------------------------------------------------------

    async def _exchange(
        self,
        kind: MessageType,
        payload: Payload,
        timeout: float | None,
        member: str,
        content_type: str,
        *,
        deadline: float | None,
        extras: Extras | None,
    ) -> Reply:
        extras = extras or Extras()
        limit = timeout if timeout is not None else self.settings.timeout
        sent = asyncio.Event()
        expires = time.time() + limit  # travels with the request: late work is not started
        waiting = self._send_and_wait(kind, payload, content_type, sent, expires, extras)
        try:
            return await within(waiting, None if extras.window else limit)
        except asyncio.TimeoutError:
            broker = "" if sent.is_set() else self.settings.broker_url
            raise CallTimeoutError(self.topic, deadline or limit, member, broker) from None

    async def _send_and_wait(
        self,
        kind: MessageType,
        payload: Payload,
        content_type: str,
        sent: asyncio.Event,
        expires: float,
        extras: Extras,
    ) -> Reply:
        await self._connect()
        assert self._transport is not None
        if len(payload) > self.max_payload:
            raise PayloadTooLargeError(
                f"the request has {len(payload)} bytes, more than this client sends "
                f"({self.max_payload} bytes; see max_payload)"
            )
        context = self._new_context()
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[context] = future
        if extras.on_progress is not None:
            self._watchers[context] = extras.on_progress
        if extras.on_item is not None:
            self._streams[context] = extras.on_item
        try:
            message = make_request(
                payload,
                context=context,
                response_topic=self.response_topic,
                message_type=kind,
                content_type=content_type,
                deadline=expires,
                fingerprint=extras.fingerprint,
                window=extras.window,
                extra=extras.headers,
            )
            assert self._uploads is not None
            await self._uploads.publish(message, extras.reads_pieces)
            sent.set()
            try:
                return await future
            except asyncio.CancelledError:  # cancelled, Ctrl-C or the deadline: tell the backend
                if kind is MessageType.REQUEST:
                    self._later(self._send_control(context))
                raise
        finally:
            self._pending.pop(context, None)
            self._watchers.pop(context, None)
            self._streams.pop(context, None)
            self._reassembler.discard(context)

    def _new_context(self) -> str:
        """The context of a new call: random, and none of the latest :data:`USED_CONTEXTS`."""
        context = str(secrets.randbelow(CONTEXTS) + 1)
        while context in self._used or context in self._pending:
            context = str(secrets.randbelow(CONTEXTS) + 1)
        self._used.add(context)
        return context

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
            self._reader = asyncio.ensure_future(self._read(self._subscription))

    def _unreachable(self, error: BrokerUnreachableError) -> BrokerUnreachableError:
        """The error naming the variables of these settings (a package's ones first)."""
        if self.settings.prefixes == (ENV_PREFIX,):
            return error
        return BrokerUnreachableError(error.url, error.reason, self.settings.variable("broker_url"))

    async def _read(self, subscription: Subscription) -> None:
        try:
            while True:
                message = await subscription.receive()
                try:
                    self._route(message)
                except Exception:  # one message, however odd, never stops the reader
                    log.warning("dropping a reply that could not be handled", exc_info=True)
                # after the caller has its reply: the acknowledgement is not on its path
                if not subscription.ack_soon(message):  # else not awaited
                    await subscription.ack(message)
        except Exception as exc:  # the next call reconnects; pending ones learn why
            log.warning("the reply reader stopped: %s", exc)
            error = exc if isinstance(exc, TransportError) else TransportError(str(exc))
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(error)

    def _route(self, message: Message) -> None:
        """Hand one message of the response topic to its call, or drop it (logged)."""
        try:
            reply = parse_reply(message)
        except ProtocolError as exc:  # not a reply, or a malformed one: dropped alone
            level = logging.DEBUG if Prop.RESPONSE_TOPIC in message.properties else logging.WARNING
            log.log(level, "dropping a message on %s: %s", self.response_topic, exc)
            return
        future = self._pending.get(reply.context)
        if future is None or future.done():
            log.debug("dropping a reply for no pending call (context %r)", reply.context)
        elif reply.kind is MessageType.PROGRESS:
            self._tell(reply)
        elif reply.kind is MessageType.LOG:
            log.debug("ignoring a log message for call %s", reply.context)
        else:
            try:
                whole = self._reassembler.add(reply.context, reply.message)
            except ProtocolError as exc:  # well-formed pieces that do not fit: the call fails
                future.set_exception(exc)
                return
            if whole is None:
                return
            on_item = self._streams.get(reply.context)
            if reply.kind is not MessageType.ITEM:
                future.set_result(reply.whole(whole))
            elif on_item is not None:
                on_item(whole)
            else:
                log.debug("dropping a stream item for call %s, not a stream", reply.context)

    def _tell(self, reply: Reply) -> None:
        """Hand a progress message to the call's ``on_progress``."""
        watcher = self._watchers.get(reply.context)
        if watcher is None:
            return
        try:
            watcher(Progress(reply.status or Status.RUNNING.value, bytes(reply.payload)))
        except Exception:  # the caller's bug: the call goes on
            log.exception("on_progress raised")

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
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
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
