"""The listener: takes requests from a transport, runs them in a worker pool, replies, acks.

- At most ``workers`` requests are in flight; the listener receives the next one only when a
  worker is free, so the rest wait in the broker where other backend instances can take them
  (back-pressure without a local queue to lose).
- A request is acknowledged only after its reply was published; if the backend dies before,
  the broker delivers the request again. A repeat of a request this listener has already
  answered (the last 10,000, by response topic and context) is acknowledged, not run again.
- A message that cannot be handled is answered with an error when it names a response topic,
  and otherwise logged and acknowledged: it never stops the listener.
- :meth:`Listener.stop` stops taking requests and waits for those in flight.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import json
import logging
import signal
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property

from ..core import versions
from ..core.reporter import SendProgress
from ..core.schema import api_info, module_schema
from ..errors import DemessagingError, ProtocolError, TransportError
from ..protocol.envelope import (
    JSON,
    MAX_STREAM_WINDOW,
    ErrorInfo,
    Message,
    MessageType,
    Prop,
    Stage,
    control_topic,
    deadline_of,
    error_reply,
    reply_to,
)
from ..protocol.fragments import (
    DEFAULT_MAX_PAYLOAD,
    FRAGMENT_SUBSCRIPTION,
    PIECE_PREFETCH,
    Reassembly,
    fragment_count,
    send_pieces,
    split,
)
from ..serialization import CODECS
from ..transport.base import Subscription, Transport
from .cancel import CallControl, Cancellations, call_key
from .dispatcher import Dispatcher, type_name

__all__ = ["Listener", "ListenerThread", "serve_until_signal"]

log = logging.getLogger("demessaging.backend")
DEFAULT_SUBSCRIPTION = "demessaging-backend"
#: Seconds a function waits for the broker to take one of its progress messages or items.
PROGRESS_TIMEOUT = 10.0
#: Seconds a request's deadline may seem past because the caller's clock is behind ours.
CLOCK_SKEW = 1.0
#: Seconds a generator waits at least for its caller to take items, before taking it for gone.
STREAM_IDLE = 30.0


_REMEMBERED = 10_000


class Listener:
    """Serves a dispatcher on a topic.

    Parameters
    ----------
    dispatcher
        What handles requests.
    transport
        The broker connection.
    topic
        The request topic.
    subscription
        The shared subscription every instance of this backend joins.
    workers
        How many requests run at once.
    max_payload
        The largest request taken, in bytes; requests in pieces are reassembled in memory,
        so at most ``workers * max_payload`` bytes are held for them.
    fragment_timeout
        Seconds to wait for each piece of a request sent in pieces.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        transport: Transport,
        topic: str,
        *,
        subscription: str = DEFAULT_SUBSCRIPTION,
        workers: int = 4,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        fragment_timeout: float = 60.0,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.dispatcher = dispatcher
        self.transport = transport
        self.topic = topic
        self.subscription = subscription
        self.workers = workers
        self.max_payload = max_payload
        self.fragment_timeout = fragment_timeout
        self.handled = 0
        self._answered: OrderedDict[str, None] = OrderedDict()
        self._cancellations = Cancellations()
        #: set while the listener is subscribed and taking requests
        self._stopping: asyncio.Event | None = None
        self.ready = threading.Event()

    @cached_property
    def _info(self) -> str:
        return json.dumps(module_schema(self.dispatcher.models))

    @cached_property
    def _api_info(self) -> str:
        return json.dumps(api_info(self.dispatcher.models))

    @cached_property
    def _fingerprints(self) -> dict[str, str]:
        return versions.fingerprints(versions.shapes(api_info(self.dispatcher.models)))

    async def serve(self) -> None:
        """Serve until :meth:`stop` is called; then finish the calls in flight and return."""
        self._stopping = asyncio.Event()
        subscription = await self.transport.subscribe(
            self.topic, self.subscription, shared=True, prefetch=1, unacked=self.workers
        )
        control = await self._watch_cancellations()
        log.info("serving %s on topic %r", self.dispatcher.models.spec.name, self.topic)
        self.ready.set()
        free = asyncio.Semaphore(self.workers)
        in_flight: set[asyncio.Task[None]] = set()
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="demessaging-worker")
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            while not self._stopping.is_set():
                await free.acquire()
                receive = asyncio.ensure_future(subscription.receive())
                await asyncio.wait({receive, stop}, return_when=asyncio.FIRST_COMPLETED)
                if not receive.done():
                    receive.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await receive
                    free.release()
                    break
                task = asyncio.ensure_future(self._handle(subscription, receive.result(), pool))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                task.add_done_callback(lambda _: free.release())
        finally:
            stop.cancel()
            if in_flight:
                log.info("waiting for %d call(s) in flight", len(in_flight))
                await asyncio.gather(*in_flight, return_exceptions=True)
            if control is not None:
                control.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await control
            await subscription.close()
            pool.shutdown(wait=True)
            self.ready.clear()
            log.info("stopped serving topic %r", self.topic)

    async def _watch_cancellations(self) -> asyncio.Task[None] | None:
        """Read ``cancel`` messages on a subscription of this instance's own (see cancel.py)."""
        name = f"{self.subscription}-{uuid.uuid4().hex[:12]}"
        try:
            control = await self.transport.subscribe(
                control_topic(self.topic), name, shared=False, prefetch=100
            )
        except DemessagingError as exc:
            log.warning(
                "calls cannot be cancelled: subscribing to the control topic failed: %s", exc
            )
            return None

        async def watch() -> None:
            try:
                await self._cancellations.watch(control)
            finally:
                with contextlib.suppress(DemessagingError):
                    await control.unsubscribe()

        return asyncio.ensure_future(watch())

    def stop(self) -> None:
        """Stop taking requests (call from the listener's event loop)."""
        if self._stopping is not None:
            self._stopping.set()

    async def _handle(
        self, subscription: Subscription, message: Message, pool: ThreadPoolExecutor
    ) -> None:
        side: Subscription | None = None
        pieces: list[Message] = []
        key = call_key(message)
        if key is not None and key in self._answered:
            log.debug("acknowledging a repeat of the answered request %s", message.message_id)
            await subscription.ack(message)
            return
        try:
            whole = message
            if fragment_count(message) > 1:
                whole, side, pieces = await self._gather(message)
            reply = await self._reply(whole, pool)
        except ProtocolError as exc:
            reply = self._error(message, "ProtocolError", str(exc), "request")
            if reply is None:
                log.warning("dropping message %s: %s", message.message_id, exc)
        except TransportError as exc:  # reading the pieces failed: let the request come again
            log.error(
                "could not read message %s (%s); it will be redelivered", message.message_id, exc
            )
            with contextlib.suppress(TransportError):
                await subscription.nack(message)
            return
        except BaseException as exc:  # a bug of ours: tell the caller rather than retry forever
            log.exception("failed to handle message %s", message.message_id)
            reply = self._error(
                message, type_name(type(exc)), f"internal error: {exc}", "execution"
            )
        if reply is not None:
            try:
                await self._send(*reply)
            except DemessagingError as exc:
                log.error(
                    "could not reply to message %s (%s); it will be redelivered",
                    message.message_id,
                    exc,
                )
                await subscription.nack(message)
                if side is not None:
                    await side.close()  # its pieces stay for the next attempt
                return
        await subscription.ack(message)
        if key is not None:
            self._answered[key] = None
            if len(self._answered) > _REMEMBERED:
                self._answered.popitem(last=False)
        if side is not None:
            for piece in pieces:
                await side.ack(piece)
            await side.unsubscribe()
        self.handled += 1

    def _error(
        self, request: Message, kind: str, text: str, stage: Stage
    ) -> tuple[str, Message] | None:
        """An error reply to ``request``, or None if it names nobody to reply to."""
        info = ErrorInfo(type=kind, message=text, stage=stage)
        try:
            return error_reply(request, info, source_topic=self.topic)
        except ProtocolError:
            return None

    async def _gather(self, head: Message) -> tuple[Message, Subscription, list[Message]]:
        """Read the pieces of a request from its side topic (see protocol.fragments)."""
        side_name = head.properties.get(Prop.FRAGMENTS_TOPIC, "")
        if not side_name.startswith(f"{self.topic}_fragments_"):
            raise ProtocolError(
                f"a request in pieces must name a fragments_topic of {self.topic!r}, "
                f"not {side_name!r}"
            )
        size_text = head.properties.get(Prop.PAYLOAD_SIZE, "")
        if not size_text.isdigit():
            raise ProtocolError("a request in pieces must give its payload_size")
        if int(size_text) > self.max_payload:
            raise ProtocolError(
                f"the request has {size_text} bytes, more than this backend takes "
                f"({self.max_payload} bytes)"
            )
        whole = Reassembly(int(size_text), fragment_count(head))
        whole.add(head)
        side = await self.transport.subscribe(  # its pieces are acknowledged after the reply
            side_name,
            FRAGMENT_SUBSCRIPTION,
            shared=True,
            prefetch=PIECE_PREFETCH,
            unacked=whole.count,
        )
        pieces: list[Message] = []
        try:
            while not whole.complete:
                piece = await asyncio.wait_for(side.receive(), self.fragment_timeout)
                if Prop.ABORTED in piece.properties:
                    raise ProtocolError("the caller gave up sending the request")
                whole.add(piece)
                pieces.append(Message(b"", message_id=piece.message_id))  # to acknowledge it
        except (asyncio.TimeoutError, ProtocolError) as exc:
            await side.unsubscribe()
            if isinstance(exc, ProtocolError):
                raise
            raise ProtocolError(
                f"only {len(pieces) + 1} of {whole.count} pieces of the request arrived "
                f"within {self.fragment_timeout:g} s"
            ) from None
        except BaseException:  # the broker failed, or the backend stops: keep the pieces
            with contextlib.suppress(Exception):
                await side.close()
            raise
        return whole.message(), side, pieces

    async def _send(self, topic: str, reply: Message) -> None:
        """Publish a reply, in pieces if the broker needs it."""
        limit = self.transport.max_message_size
        size = self.transport.piece_size
        pieces = split(reply, limit, piece_size=size) if limit is not None else [reply]
        await send_pieces(functools.partial(self.transport.publish, topic), pieces)

    def _progress(self, request: Message) -> SendProgress:
        """Sends progress messages about ``request``; called from its worker thread."""
        loop = asyncio.get_running_loop()

        def send(payload: bytes, status: str) -> None:
            topic, message = reply_to(
                request,
                payload,
                source_topic=self.topic,
                message_type=MessageType.PROGRESS,
                extra={Prop.STATUS: status, Prop.CONTENT_TYPE: JSON},
            )
            self._send_from_worker(loop, topic, message, "a progress message")

        return send

    def _items(
        self, request: Message, control: CallControl, window: int
    ) -> Callable[[bytes], None]:
        """Sends the items of a generator one by one, ``window`` at most on their way."""
        loop = asyncio.get_running_loop()
        deadline = deadline_of(request)
        idle = max(deadline - time.time(), STREAM_IDLE) if deadline else STREAM_IDLE
        sent = 0

        def send(payload: bytes) -> None:
            nonlocal sent
            control.wait_for_room(sent, window, idle)  # raises CallCancelled
            sent += 1
            topic, message = reply_to(
                request,
                payload,
                source_topic=self.topic,
                message_type=MessageType.ITEM,
                extra={Prop.SEQUENCE: str(sent)},
            )
            self._send_from_worker(loop, topic, message, "an item")

        return send

    def _send_from_worker(
        self, loop: asyncio.AbstractEventLoop, topic: str, message: Message, what: str
    ) -> None:
        """Send a message from a worker thread, in order: the next one goes after it."""
        sent = asyncio.run_coroutine_threadsafe(self._send(topic, message), loop)
        try:
            sent.result(PROGRESS_TIMEOUT)
        except concurrent.futures.TimeoutError:
            sent.cancel()
            raise TransportError(
                f"the broker took more than {PROGRESS_TIMEOUT:g} s to take {what}"
            ) from None

    async def _reply(
        self, message: Message, pool: ThreadPoolExecutor
    ) -> tuple[str, Message] | None:
        kind = message.message_type
        if kind == MessageType.REQUEST.value:
            deadline = deadline_of(message)
            late = time.time() - deadline if deadline is not None else 0.0
            if late > CLOCK_SKEW:  # its caller has stopped waiting: do not start the work
                log.info("not running request %s: its deadline passed", message.message_id)
                return self._error(
                    message,
                    "DeadlineExceeded",
                    f"the call's deadline passed {late:.1f} s before a worker was free; "
                    "it was not run",
                    "request",
                )
            key = call_key(message)
            control = self._cancellations.start(key)
            if control is None:
                log.info("not running request %s: its caller cancelled it", message.message_id)
                text = "the caller cancelled the call before it started"
                return self._error(message, "CallCancelled", text, "execution")
            window = message.properties.get(Prop.STREAM, "")
            items = None
            if window.isdigit() and int(window) > 0:
                items = self._items(message, control, min(int(window), MAX_STREAM_WINDOW))
            try:
                outcome = await asyncio.get_running_loop().run_in_executor(
                    pool,
                    self.dispatcher.handle,
                    message.payload,
                    message.properties.get(Prop.CONTENT_TYPE, JSON),
                    self._progress(message),
                    control.cancelled,
                    items,
                )
            finally:
                self._cancellations.done(key)
            extra = {}
            if Prop.API_FINGERPRINT in message.properties and outcome.member:
                extra[Prop.API_FINGERPRINT] = self._fingerprints.get(outcome.member, "")
            if outcome.error is not None:
                return error_reply(message, outcome.error, source_topic=self.topic, extra=extra)
            if outcome.streamed:
                extra[Prop.STREAM] = "end"
            return reply_to(message, outcome.payload, source_topic=self.topic, extra=extra)
        if kind == MessageType.PING.value:  # the pong says which encodings requests may use
            return reply_to(
                message,
                b"",
                source_topic=self.topic,
                message_type=MessageType.PONG,
                extra={Prop.CONTENT_TYPES: ",".join(CODECS)},
            )
        if kind in (MessageType.INFO.value, MessageType.API_INFO.value):
            # as DASF answers: a response whose property named like the request holds the schema
            schema = self._info if kind == MessageType.INFO.value else self._api_info
            return reply_to(message, b"", source_topic=self.topic, extra={kind: schema})
        raise ProtocolError(f"unexpected messageType {kind!r}")


async def serve_until_signal(listener: Listener) -> None:
    """Serve until SIGINT or SIGTERM, finish the calls in flight, close the transport."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, listener.stop)
    try:
        await listener.serve()
    finally:
        await listener.transport.close()


class ListenerThread:
    """Runs a :class:`Listener` on its own event loop in a background thread.

    Parameters
    ----------
    listener
        The listener to run.

    Examples
    --------
    >>> with ListenerThread(listener):  # doctest: +SKIP
    ...     call_it()
    """

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self, timeout: float = 10.0) -> ListenerThread:
        """Start serving; returns once the listener is subscribed (at once if it already is)."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._thread = threading.Thread(target=self._run, name="demessaging-listener", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.listener.ready.wait(0.05):
            if not self._thread.is_alive():
                raise RuntimeError("the listener failed to start") from self._error
            if time.monotonic() > deadline:
                raise TimeoutError(f"the listener did not start within {timeout:g} s")
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self.listener.serve())
        except BaseException as exc:  # reported by start() and stop()
            self._error = exc
        finally:
            loop.run_until_complete(self.listener.transport.close())
            loop.close()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking requests, finish those in flight, and join the thread."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self.listener.stop)
            self._thread.join(timeout)

    def __enter__(self) -> ListenerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
