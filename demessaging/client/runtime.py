"""The client runtime: sends requests to a backend's topic and waits for the replies.

Each :class:`Client` listens on a response topic of its own (``<topic>_<8 random letters>``,
as DASF clients do) and correlates replies to calls by ``requestContext``. Every call has a
deadline; remote errors are raised as :class:`~demessaging.errors.RemoteError`.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import dataclasses
import itertools
import json as _json
import logging
import random
import string
import threading
import time
import uuid
import warnings
import weakref
from asyncio import FIRST_COMPLETED as FIRST
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Generator, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from ..config import Settings
from ..errors import (
    CallTimeoutError,
    ConfigurationError,
    DemessagingError,
    DemessagingWarning,
    PayloadTooLargeError,
    ProtocolError,
    RemoteError,
    TransportError,
)
from ..protocol.control import control_topic, make_control
from ..protocol.envelope import (
    JSON,
    MAX_STREAM_WINDOW,
    Message,
    MessageType,
    Prop,
    Status,
    parse_error,
)
from ..protocol.fragments import (
    DEFAULT_MAX_PAYLOAD,
    PIECE_PREFETCH,
    Reassembler,
)
from ..protocol.outgoing import make_request
from ..protocol.pieces import Uploads
from ..serialization import ENCODINGS, codec_for
from ..serialization import msgpack as msgpack_codec
from ..transport.base import Subscription, Transport
from . import bars
from .portal import Portal

__all__ = ["Client", "Progress"]

log = logging.getLogger("demessaging.client")
#: Seconds closing a client waits for the clean-up after failed uploads.
CLEANUP_TIMEOUT = 10.0
#: Seconds a client tries to tell a backend that it cancelled a call.
CANCEL_TIMEOUT = 5.0
#: Items of a stream on their way at most, by default.
STREAM_WINDOW = 16
#: Seconds between the messages that tell a backend a stream's caller is still there.
STREAM_KEEPALIVE = 10.0
_ANY: TypeAdapter[Any] = TypeAdapter(Any)
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class Progress:
    """A progress message about a running call.

    Attributes
    ----------
    status
        ``running``, ``success`` or ``error``: where the reported step stands.
    payload
        What the backend sent: for DASF progress reports, the JSON of the whole report tree.
    """

    status: str
    payload: bytes

    @property
    def report(self) -> Any:
        """The payload decoded from JSON (a DASF report: ``step_message``, ``children``...)."""
        return _json.loads(self.payload)


@dataclasses.dataclass(frozen=True)
class _Extras:
    """What a call may add to its request and reply handling."""

    on_progress: Callable[[Progress], None] | None = None
    fingerprint: str | None = None
    window: int | None = None  # a stream: this many items on their way at most
    on_item: Callable[[Message], None] | None = None


class Client:
    """Calls the backend serving a topic; safe to use from many threads and tasks at once.

    Parameters
    ----------
    topic
        The backend's request topic; defaults to the ``topic`` setting.
    broker_url
        The broker; defaults to the ``broker_url`` setting.
    timeout
        Default deadline of a call in seconds; defaults to the ``timeout`` setting.
    transport
        A transport to use instead of connecting to ``broker_url``.
    settings
        Settings to start from instead of the environment.
    max_payload
        The largest request this client sends and the most memory it holds for replies
        arriving in pieces, in bytes.
    """

    def __init__(
        self,
        topic: str | None = None,
        *,
        broker_url: str | None = None,
        timeout: float | None = None,
        transport: Transport | None = None,
        settings: Settings | None = None,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
    ) -> None:
        base = settings or Settings.from_env()
        self.settings = dataclasses.replace(
            base,
            broker_url=broker_url or base.broker_url,
            topic=topic or base.topic,
            timeout=timeout or base.timeout,
        )
        if not self.settings.topic:
            raise ConfigurationError("no topic: pass one or set DEMESSAGING_TOPIC")
        self.topic = self.settings.topic
        suffix = "".join(random.choices(string.ascii_lowercase, k=8))
        self.response_topic = f"{self.topic}_{suffix}"
        self._transport = transport
        self._portal: Portal | None = None
        self._changed: set[str] = set()  # members the backend changed, warned about
        self._portal_lock = threading.Lock()
        self._subscription: Subscription | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[str, asyncio.Future[Message]] = {}
        self._watchers: dict[str, Callable[[Progress], None]] = {}
        self._streams: dict[str, Callable[[Message], None]] = {}
        self.max_payload = max_payload
        self._reassembler = Reassembler(max_payload)
        self._connecting: asyncio.Lock | None = None
        #: Sends requests, in pieces where needed; made with the transport.
        self._uploads: Uploads | None = None
        #: The encoding the backend's pong offered (for the ``auto`` setting).
        self._negotiated: str | None = None
        #: Request contexts: numbers, as dasf-broker-django stores them in an integer column.
        self._contexts = itertools.count(1)
        #: What is left to do after failed uploads; finished before closing.
        self._cleanups: set[asyncio.Future[None]] = set()

    # -- sync face ---------------------------------------------------------------------------

    def call(
        self,
        request: Mapping[str, Any] | BaseModel | bytes,
        *,
        returns: TypeAdapter[Any] | None = None,
        timeout: float | None = None,
        member: str = "",
        on_progress: Callable[[Progress], None] | None = None,
        fingerprint: str | None = None,
    ) -> Any:
        """Send a request and return the backend's result.

        Parameters
        ----------
        request
            The request object (``{"func_name": ..., ...}``), a request model, or its JSON.
        returns
            Validates the result; by default it is returned as decoded JSON.
        timeout
            The deadline in seconds; defaults to the client's.
        member
            What is called, for error messages.
        on_progress
            Called with each :class:`Progress` message the backend sends about the call,
            in the client's event loop thread: keep it short.
        fingerprint
            The called member's fingerprint as the caller knows it
            (:mod:`demessaging.core.versions`); a backend whose member differs is warned
            about once, with a :class:`~demessaging.errors.DemessagingWarning`.

        Raises
        ------
        CallTimeoutError
            If no reply arrives in time.
        RemoteError
            If the backend answers with an error.
        """
        return self.run(
            self.acall(
                request,
                returns=returns,
                timeout=timeout,
                member=member,
                on_progress=on_progress,
                fingerprint=fingerprint,
            )
        )

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine of the async face to its end, from synchronous code."""
        return self._get_portal().run(coro)

    def ping(self, timeout: float | None = None) -> float:
        """Round-trip a ``ping``; returns the seconds it took."""
        return self.run(self.aping(timeout))

    def info(self, timeout: float | None = None) -> dict[str, Any]:
        """The backend's module schema (DASF's ``info``)."""
        return self.run(self.ainfo(timeout))

    def api_info(self, timeout: float | None = None) -> dict[str, Any]:
        """The backend's schemas in DASF's ``api_info`` layout."""
        return self.run(self.aapi_info(timeout))

    def close(self) -> None:
        """Close the response subscription, the transport and the background loop."""
        with self._portal_lock:
            portal, self._portal = self._portal, None
        if portal is not None:
            with contextlib.suppress(RuntimeError):
                portal.run(self._aclose())
            portal.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- async face --------------------------------------------------------------------------

    async def acall(
        self,
        request: Mapping[str, Any] | BaseModel | bytes,
        *,
        returns: TypeAdapter[Any] | None = None,
        timeout: float | None = None,
        member: str = "",
        on_progress: Callable[[Progress], None] | None = None,
        fingerprint: str | None = None,
    ) -> Any:
        """Async version of :meth:`call`; works on any event loop."""
        deadline = timeout if timeout is not None else self.settings.timeout
        started = time.monotonic()
        if isinstance(request, bytes):
            payload: bytes | bytearray = request
            content_type = JSON
        else:
            codec = ENCODINGS[await self._encoding(deadline, member)]
            payload, content_type = codec.encode(request), codec.CONTENT_TYPE
        left = max(deadline - (time.monotonic() - started), 0.001)
        bar = None
        if on_progress is None and bars.wanted(self.settings.progress):
            bar = on_progress = bars.Bar(member)
        exchange = self._exchange(
            MessageType.REQUEST,
            payload,
            left,
            member,
            content_type,
            deadline=deadline,
            extras=_Extras(on_progress=on_progress, fingerprint=fingerprint),
        )
        try:
            reply = await self._on_portal(exchange)
        finally:
            if bar is not None:
                bar.close()
        self._warn_if_changed(reply, member, fingerprint)
        self._check(reply)
        try:
            codec = codec_for(reply.properties.get(Prop.CONTENT_TYPE, JSON))
            return codec.decode(reply.payload, returns or _ANY)
        except (ValidationError, ValueError) as exc:
            raise ProtocolError(
                f"the reply to {member or 'the call'} does not match what the client expects: {exc}"
            ) from exc

    def stream(
        self,
        request: Mapping[str, Any] | BaseModel,
        *,
        returns: TypeAdapter[Any] | None = None,
        timeout: float | None = None,
        member: str = "",
        window: int = STREAM_WINDOW,
        on_progress: Callable[[Progress], None] | None = None,
        fingerprint: str | None = None,
    ) -> Generator[Any, None, None]:
        """Call a generator function of the backend; yields its items as they come.

        Parameters
        ----------
        request, returns, member, on_progress, fingerprint
            As for :meth:`call`; ``returns`` validates each item.
        timeout
            The longest wait for the next item, in seconds; defaults to the client's.
        window
            Items on their way at most: the backend's generator waits while this many are not
            taken yet.

        Stopping early (``break``, closing the iterator) cancels the call in the backend.
        """
        items = self.astream(
            request,
            returns=returns,
            timeout=timeout,
            member=member,
            window=window,
            on_progress=on_progress,
            fingerprint=fingerprint,
        )
        return self.iterate(items)

    def iterate(self, items: AsyncGenerator[T, None]) -> Generator[T, None, None]:
        """Iterate an async generator of the async face from synchronous code.

        Closing the returned generator (or leaving a ``for`` loop early) closes ``items``.
        """
        portal = self._get_portal()

        async def step() -> T:
            return await items.__anext__()

        async def stop() -> None:
            await items.aclose()

        try:
            while True:
                try:
                    item = portal.run(step())
                except StopAsyncIteration:
                    return
                yield item
        finally:
            with contextlib.suppress(RuntimeError):  # the client was closed first
                portal.run(stop())

    async def astream(
        self,
        request: Mapping[str, Any] | BaseModel,
        *,
        returns: TypeAdapter[Any] | None = None,
        timeout: float | None = None,
        member: str = "",
        window: int = STREAM_WINDOW,
        on_progress: Callable[[Progress], None] | None = None,
        fingerprint: str | None = None,
    ) -> AsyncGenerator[Any, None]:
        """Async version of :meth:`stream`; works on any event loop."""
        idle = timeout if timeout is not None else self.settings.timeout
        codec = ENCODINGS[await self._encoding(idle, member)]
        payload = codec.encode(request)
        loop = asyncio.get_running_loop()
        arrived: asyncio.Queue[Message] = asyncio.Queue()

        def on_item(message: Message) -> None:  # in the client's loop thread
            loop.call_soon_threadsafe(arrived.put_nowait, message)

        window = min(max(1, window), MAX_STREAM_WINDOW)  # what the backend grants at most
        extras = _Extras(on_progress, fingerprint, window, on_item)
        exchange = self._exchange(
            MessageType.REQUEST, payload, idle, member, codec.CONTENT_TYPE, extras=extras
        )
        final = asyncio.ensure_future(self._on_portal(exchange))
        taken = credited = 0
        alive: asyncio.Task[None] | None = None

        async def keep_alive(context: str) -> None:  # a caller busy with an item is not gone
            while True:
                await asyncio.sleep(STREAM_KEEPALIVE)
                await self._on_portal(self._send_control(context, taken))

        try:
            while True:
                if arrived.empty():
                    get = asyncio.ensure_future(arrived.get())
                    done, _ = await asyncio.wait({get, final}, timeout=idle, return_when=FIRST)
                    if get not in done:
                        get.cancel()
                        if final not in done:
                            raise CallTimeoutError(self.topic, idle, member)
                        if arrived.empty():  # the call ended: items came before its reply
                            self._end_of_stream(final.result(), member, fingerprint)
                            return
                        continue
                    message = get.result()
                else:
                    message = arrived.get_nowait()
                context = message.properties.get(Prop.REQUEST_CONTEXT, "")
                alive = alive or asyncio.ensure_future(keep_alive(context))
                item_codec = codec_for(message.properties.get(Prop.CONTENT_TYPE, JSON))
                yield item_codec.decode(message.payload, returns or _ANY)
                taken += 1
                if taken - credited >= max(1, window // 2):
                    credited = taken
                    await self._on_portal(self._send_control(context, taken))
        finally:
            if alive is not None:
                alive.cancel()
            if not final.done():  # stopped early, or timed out: the backend stops too
                final.cancel()
                with contextlib.suppress(asyncio.CancelledError, DemessagingError):
                    await final

    def _end_of_stream(self, reply: Message, member: str, fingerprint: str | None) -> None:
        """Check the reply that ends a stream: an error, or a backend that did not stream."""
        self._check(reply)
        if reply.properties.get(Prop.STREAM) != "end":
            raise ProtocolError(
                f"the backend did not stream {member or 'the call'}: it is not a generator "
                "function there"
            )
        self._warn_if_changed(reply, member, fingerprint)

    def _warn_if_changed(self, reply: Message, member: str, fingerprint: str | None) -> None:
        theirs = reply.properties.get(Prop.API_FINGERPRINT)
        if fingerprint and theirs and theirs != fingerprint and member not in self._changed:
            self._changed.add(member)
            warnings.warn(
                f"the backend's {member or 'member'} has changed since this client was "
                "generated (this call still worked); regenerate the client",
                DemessagingWarning,
                stacklevel=3,
            )

    def _check(self, reply: Message) -> None:
        """Raise the error a reply carries, if it carries one."""
        if reply.properties.get(Prop.STATUS) == Status.ERROR.value:
            info = parse_error(reply)
            raise RemoteError(info.type, info.message, info.stage, info.traceback, info.declared)

    async def aping(self, timeout: float | None = None) -> float:
        """Async version of :meth:`ping`."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        exchange = self._exchange(MessageType.PING, b"", timeout, "ping")
        await self._on_portal(exchange)
        return loop.time() - start

    async def _encoding(self, timeout: float, member: str) -> str:
        """The encoding of requests: as set, or for ``auto`` what the backend's pong offers.

        demessaging backends list the content types they read in their pong; DASF backends
        list none and get JSON. The backend is asked once, before the first request.
        """
        if self.settings.encoding != "auto":
            return self.settings.encoding
        if self._negotiated is None:
            pong = await self._on_portal(self._exchange(MessageType.PING, b"", timeout, member))
            offered = pong.properties.get(Prop.CONTENT_TYPES, "").split(",")
            self._negotiated = "msgpack" if msgpack_codec.CONTENT_TYPE in offered else "json"
            log.debug("requests to %s go as %s", self.topic, self._negotiated)
        return self._negotiated

    async def ainfo(self, timeout: float | None = None) -> dict[str, Any]:
        """Async version of :meth:`info`."""
        return await self._schema(MessageType.INFO, Prop.INFO, timeout)

    async def aapi_info(self, timeout: float | None = None) -> dict[str, Any]:
        """Async version of :meth:`api_info`."""
        return await self._schema(MessageType.API_INFO, Prop.API_INFO, timeout)

    async def _schema(self, kind: MessageType, prop: str, timeout: float | None) -> dict[str, Any]:
        exchange = self._exchange(kind, b"", timeout, kind.value)
        reply = await self._on_portal(exchange)
        try:
            result: dict[str, Any] = _json.loads(reply.properties[prop])
        except (KeyError, ValueError) as exc:
            raise ProtocolError(
                f"the {kind.value} reply carries no valid {prop!r} property"
            ) from exc
        return result

    # -- core (runs on the portal's loop) -----------------------------------------------------

    def _get_portal(self) -> Portal:
        # one loop per client, even when many threads make their first call at once
        with self._portal_lock:
            if self._portal is None:
                self._portal = Portal()
                close = weakref.WeakMethod(self.close)
                atexit.register(lambda: (method := close()) is not None and method())
            return self._portal

    async def _on_portal(self, coro: Coroutine[Any, Any, T]) -> T:
        portal = self._get_portal()
        if asyncio.get_running_loop() is portal.loop:
            return await coro
        return await portal.arun(coro)

    async def _exchange(
        self,
        kind: MessageType,
        payload: bytes | bytearray,
        timeout: float | None,
        member: str,
        content_type: str = JSON,
        *,
        deadline: float | None = None,
        extras: _Extras | None = None,
    ) -> Message:
        """Send a request and wait for its reply, ``timeout`` seconds at most.

        ``deadline`` is the call's whole deadline, for the error message, when part of it has
        been spent already. A stream (``extras.window``) has no overall limit: its items are
        awaited one by one.
        """
        extras = extras or _Extras()
        limit = timeout if timeout is not None else self.settings.timeout
        sent = asyncio.Event()
        expires = time.time() + limit  # travels with the request: late work is not started
        waiting = self._send_and_wait(kind, payload, content_type, sent, expires, extras)
        try:
            return await asyncio.wait_for(waiting, None if extras.window else limit)
        except asyncio.TimeoutError:
            broker = "" if sent.is_set() else self.settings.broker_url
            raise CallTimeoutError(self.topic, deadline or limit, member, broker) from None

    async def _send_and_wait(
        self,
        kind: MessageType,
        payload: bytes | bytearray,
        content_type: str,
        sent: asyncio.Event,
        expires: float,
        extras: _Extras,
    ) -> Message:
        await self._connect()
        assert self._transport is not None
        if len(payload) > self.max_payload:
            raise PayloadTooLargeError(
                f"the request has {len(payload)} bytes, more than this client sends "
                f"({self.max_payload} bytes; see max_payload)"
            )
        context = str(next(self._contexts))
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
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
            )
            assert self._uploads is not None
            await self._uploads.publish(message)
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

    async def _send_control(self, context: str, received: int | None = None) -> None:
        """Send ``cancel`` (or, with ``received``, ``more``) about a call to its backend."""
        assert self._transport is not None
        message = make_control(
            context=context, response_topic=self.response_topic, received=received
        )
        try:
            await asyncio.wait_for(
                self._transport.publish(control_topic(self.topic), message), CANCEL_TIMEOUT
            )
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
                self._uploads = Uploads(self._transport, self.topic, self._later)
            if self._subscription is not None:  # a reader that stopped: drop its subscription
                await self._drop_subscription()
            # Shared although this client is the topic's only consumer: replies in pieces are
            # put together by offset, so order does not matter, and shared subscriptions are
            # the ones every broker gets right (pulsar-lite's exclusive ones repeat messages).
            self._subscription = await self._transport.subscribe(
                self.response_topic,
                f"demessaging-client-{uuid.uuid4().hex[:12]}",
                shared=True,
                prefetch=PIECE_PREFETCH,
            )
            self._reader = asyncio.ensure_future(self._read(self._subscription))

    async def _read(self, subscription: Subscription) -> None:
        try:
            while True:
                message = await subscription.receive()
                context = message.properties.get(Prop.REQUEST_CONTEXT)
                future = self._pending.get(str(context))
                if Prop.RESPONSE_TOPIC in message.properties:  # a request, not a reply
                    log.debug("ignoring a %s request on the reply topic", message.message_type)
                elif future is None or future.done():
                    log.debug("dropping a reply for no pending call (context %r)", context)
                elif message.message_type == MessageType.PROGRESS.value:
                    self._tell(str(context), message)
                else:
                    try:
                        whole = self._reassembler.add(str(context), message)
                    except ProtocolError as exc:
                        future.set_exception(exc)
                    else:
                        on_item = self._streams.get(str(context))
                        if whole is None:
                            pass
                        elif whole.message_type == MessageType.ITEM.value and on_item:
                            on_item(whole)
                        else:
                            future.set_result(whole)
                # after the caller has its reply: the acknowledgement is not on its path
                await subscription.ack(message)
        except Exception as exc:  # the next call reconnects; pending ones learn why
            log.warning("the reply reader stopped: %s", exc)
            error = exc if isinstance(exc, TransportError) else TransportError(str(exc))
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(error)

    def _tell(self, context: str, message: Message) -> None:
        """Hand a progress message to the call's ``on_progress``."""
        watcher = self._watchers.get(context)
        if watcher is None:
            return
        status = message.properties.get(Prop.STATUS, Status.RUNNING.value)
        try:
            watcher(Progress(status, bytes(message.payload)))
        except Exception:  # the caller's bug: the call goes on
            log.exception("on_progress raised")

    async def _aclose(self) -> None:
        if self._cleanups:  # bounded: a broker that is gone does not keep close() waiting
            await asyncio.wait(self._cleanups, timeout=CLEANUP_TIMEOUT)
        if self._uploads is not None:
            await self._uploads.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._subscription is not None:
            await self._drop_subscription()
        if self._transport is not None:
            await self._transport.close()

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
