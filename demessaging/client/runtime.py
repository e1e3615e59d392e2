"""The client: sends requests to a backend's topic and returns what it answers.

A :class:`Client` has an async face (``acall``, ``astream``...) that works on any event loop,
and the same again as a sync face (``call``, ``stream``...) made from it with
:func:`~.portal.blocking`. Every call has a deadline; remote errors are raised as
:class:`~demessaging.errors.RemoteError`. The replies reach the calls through the client's
:class:`~.connection.Connection`; streams are :mod:`~.streams`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import json as _json
import logging
import threading
import time
import warnings
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from ..config import Settings
from ..errors import (
    CallTimeoutError,
    ConfigurationError,
    DemessagingWarning,
    ProtocolError,
    RemoteError,
)
from ..message import JSON, MessageType, Prop
from ..observe import tracing
from ..protocol.control import control_target
from ..protocol.envelope import parse_error
from ..protocol.fragments import DEFAULT_MAX_PAYLOAD
from ..protocol.replies import Reply
from ..protocol.topics import reply_topic
from ..serialization import ENCODINGS, codec_for
from ..serialization import msgpack as msgpack_codec
from ..serialization.buffers import Payload
from ..transport.base import Transport
from . import bars, streams
from .bars import Progress
from .connection import CLOSE_TIMEOUT, Connection, Extras
from .portal import Portal, blocking, blocking_iterator
from .streams import STREAM_WINDOW

__all__ = ["Client"]

log = logging.getLogger("demessaging.client")
_ANY: TypeAdapter[Any] = TypeAdapter(Any)


class ReplyMismatchError(ProtocolError):
    """A well-formed reply that does not fit the member as the client knows it.

    A result breaking the return type, or a backend that does not stream a generator: what a
    changed API does, unlike the other protocol errors.
    """


T = TypeVar("T")


class Client:
    """Calls the backend serving a topic; safe to use from many threads and tasks at once.

    Its async methods (``acall``, ``astream``...) work on any event loop; each has a
    blocking form without the leading ``a`` (``call``, ``stream``...).

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
    close_timeout
        Seconds :meth:`close` (and the program's exit) takes at most, whatever the broker
        does (gone, frozen).
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
        close_timeout: float = CLOSE_TIMEOUT,
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
        self.response_topic = reply_topic(
            self.topic,
            self.settings.reply_namespace.strip(),
            persistent=self.settings.transport.persistent,
        )
        self._connection = Connection(
            self.settings,
            self.response_topic,
            transport=transport,
            max_payload=max_payload,
            close_timeout=close_timeout,
        )
        self._changed: set[str] = set()  # members the backend changed, warned about
        #: The properties of the backend's pong, asked once when needed.
        self._pong: dict[str, str] | None = None
        #: Done when the ping in flight is answered or fails (concurrent first calls wait
        #: for it instead of sending a ping each); callers may be on any event loop.
        self._asking: concurrent.futures.Future[None] | None = None
        self._asking_lock = threading.Lock()

    @property
    def max_payload(self) -> int:
        """The largest request this client sends, in bytes."""
        return self._connection.max_payload

    @max_payload.setter
    def max_payload(self, value: int) -> None:
        self._connection.max_payload = value

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
        """Send a request and return the backend's result.

        Parameters
        ----------
        request
            The request object (``{"func_name": ..., ...}``), a request model, or its JSON.
            Its arrays are read as the request is sent: do not change them until this returns.
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
        with tracing.call(self.topic, member) as trace:
            return await self._acall(
                request, returns, timeout, member, on_progress, fingerprint, trace
            )

    async def _acall(
        self,
        request: Mapping[str, Any] | BaseModel | bytes,
        returns: TypeAdapter[Any] | None,
        timeout: float | None,
        member: str,
        on_progress: Callable[[Progress], None] | None,
        fingerprint: str | None,
        trace: tracing.Off,
    ) -> Any:
        deadline = timeout if timeout is not None else self.settings.timeout
        started = time.monotonic()
        if isinstance(request, bytes):
            payload: Payload = request
            content_type = JSON
        else:
            codec = ENCODINGS[await self._encoding(deadline, member)]
            encode = msgpack_codec.encode_buffers if codec is msgpack_codec else codec.encode
            payload, content_type = encode(request), codec.CONTENT_TYPE
        trace.sent(len(payload))
        left = max(deadline - (time.monotonic() - started), 0.001)
        bar = None
        if on_progress is None and bars.wanted(self.settings.progress):
            bar = on_progress = bars.Bar(member)
        exchange = self._connection.exchange(
            MessageType.REQUEST,
            payload,
            left,
            member,
            content_type,
            deadline=deadline,
            extras=Extras(
                on_progress=on_progress,
                fingerprint=fingerprint,
                reads_pieces=lambda: self._reads_pieces(left, member),
                headers=trace.headers,
            ),
        )
        try:
            reply = await exchange
        finally:
            if bar is not None:
                bar.close()
        trace.received(reply.message, reply.status)
        self._warn_if_changed(reply, member, fingerprint)
        self._check(reply)
        try:
            codec = codec_for(reply.content_type)
            return codec.decode(reply.payload, returns or _ANY)
        except (ValidationError, ValueError) as exc:
            raise ReplyMismatchError(
                f"the reply to {member or 'the call'} does not match what the client expects: {exc}"
            ) from exc

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
        """Call a generator function of the backend; yields its items as they come.

        Stopping early (``break``, closing the iterator) cancels the call in the backend.

        Parameters
        ----------
        request, returns, member, on_progress, fingerprint
            As for :meth:`acall`; ``returns`` validates each item.
        timeout
            The longest wait for the next item, in seconds; defaults to the client's.
        window
            Items on their way at most: the backend's generator waits while this many are not
            taken yet.
        """
        idle = timeout if timeout is not None else self.settings.timeout
        with tracing.call(self.topic, member, stream=True) as trace:
            codec = ENCODINGS[await self._encoding(idle, member)]
            payload = codec.encode(request)
            trace.sent(len(payload))
            items = streams.receive(
                self._connection,
                payload,
                codec.CONTENT_TYPE,
                returns=returns or _ANY,
                idle=idle,
                member=member,
                window=window,
                on_progress=on_progress,
                fingerprint=fingerprint,
                check_end=lambda reply: self._end_of_stream(reply, member, fingerprint, trace),
                headers=trace.headers,
            )
            try:
                async for item in items:
                    trace.item()
                    yield item
            finally:
                await items.aclose()

    async def aping(self, timeout: float | None = None) -> float:
        """Round-trip a ``ping``; returns the seconds it took."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        await self._connection.exchange(MessageType.PING, b"", timeout, "ping")
        return loop.time() - start

    async def ainfo(self, timeout: float | None = None) -> dict[str, Any]:
        """The backend's module schema (DASF's ``info``)."""
        return await self._schema(MessageType.INFO, Prop.INFO, timeout)

    async def aapi_info(self, timeout: float | None = None) -> dict[str, Any]:
        """The backend's schemas in DASF's ``api_info`` layout."""
        return await self._schema(MessageType.API_INFO, Prop.API_INFO, timeout)

    # -- sync face ---------------------------------------------------------------------------

    call = blocking(acall)
    stream = blocking_iterator(astream)
    ping = blocking(aping)
    info = blocking(ainfo)
    api_info = blocking(aapi_info)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine of the async face to its end, from synchronous code."""
        return self._portal().run(coro)

    def iterate(self, items: AsyncGenerator[T, None]) -> Generator[T, None, None]:
        """Iterate an async generator of the async face from synchronous code.

        Closing the returned generator (or leaving a ``for`` loop early) closes ``items``.
        """
        yield from self._portal().iterate(items)

    def close(self) -> None:
        """Close the response subscription, the transport and the background loop.

        Takes ``close_timeout`` seconds at most, whatever the broker does.
        """
        self._connection.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _portal(self) -> Portal:
        return self._connection.portal()

    # -- requests and replies ----------------------------------------------------------------

    async def _encoding(self, timeout: float, member: str) -> str:
        """The encoding of requests: as set, or for ``auto`` what the backend's pong offers.

        demessaging backends list the content types they read in their pong; DASF backends
        list none and get JSON. The backend is asked once, before the first request.
        """
        if self.settings.encoding != "auto":
            return self.settings.encoding
        offered = (await self._backend_pong(timeout, member)).get(Prop.CONTENT_TYPES, "")
        return "msgpack" if msgpack_codec.CONTENT_TYPE in offered.split(",") else "json"

    async def _reads_pieces(self, timeout: float, member: str) -> bool:
        """Whether the backend reads requests in pieces.

        Not a DASF one, whose pong lists no content types: DASF clients send requests whole,
        and its backends read only the first piece.
        """
        return Prop.CONTENT_TYPES in await self._backend_pong(timeout, member)

    async def _backend_pong(self, timeout: float, member: str) -> dict[str, str]:
        """The backend's pong properties: one ping, whatever the number of callers."""
        end = time.monotonic() + timeout
        while self._pong is None:
            left = end - time.monotonic()
            if left <= 0:
                raise CallTimeoutError(self.topic, timeout, member)
            with self._asking_lock:
                asking, leads = self._asking, self._asking is None
                if leads:
                    asking = self._asking = concurrent.futures.Future()
            assert asking is not None
            if not leads:
                try:  # then ask again if that ping failed and time is left
                    await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(asking)), left)
                except asyncio.TimeoutError:
                    raise CallTimeoutError(self.topic, timeout, member) from None
                continue
            try:
                pong = await self._connection.exchange(MessageType.PING, b"", left, member)
                self._pong = dict(pong.properties)
                # where its cancel and more go, if not to <topic>_control
                where = control_target(self._connection.topic, self._pong)
                self._connection.control = where or self._connection.control
                offered = self._pong.get(Prop.CONTENT_TYPES) or "nothing (a DASF backend)"
                log.debug("the backend of %s reads %s", self.topic, offered)
            finally:
                with self._asking_lock:
                    self._asking = None
                asking.set_result(None)
        return self._pong

    async def _schema(self, kind: MessageType, prop: str, timeout: float | None) -> dict[str, Any]:
        reply = await self._connection.exchange(kind, b"", timeout, kind.value)
        try:
            result: dict[str, Any] = _json.loads(reply.properties[prop])
        except (KeyError, ValueError) as exc:
            raise ProtocolError(
                f"the {kind.value} reply carries no valid {prop!r} property"
            ) from exc
        return result

    def _end_of_stream(
        self, reply: Reply, member: str, fingerprint: str | None, trace: tracing.Off
    ) -> None:
        """Check the reply that ends a stream: an error, or a backend that did not stream."""
        trace.received(reply.message, reply.status)
        self._check(reply)
        if not reply.stream_end:
            raise ReplyMismatchError(
                f"the backend did not stream {member or 'the call'}: it is not a generator "
                "function there"
            )
        self._warn_if_changed(reply, member, fingerprint)

    def _warn_if_changed(self, reply: Reply, member: str, fingerprint: str | None) -> None:
        theirs = reply.api_fingerprint
        if fingerprint and theirs and theirs != fingerprint and member not in self._changed:
            self._changed.add(member)
            warnings.warn(
                f"the backend's {member or 'member'} has changed since this client was "
                "generated (this call still worked); regenerate the client",
                DemessagingWarning,
                stacklevel=3,
            )

    def _check(self, reply: Reply) -> None:
        """Raise the error a reply carries, if it carries one."""
        if reply.failed:
            info = parse_error(reply.message)
            raise RemoteError(
                info.type,
                info.message,
                info.stage,
                info.traceback,
                info.declared,
                reply.api_fingerprint or None,
            )
