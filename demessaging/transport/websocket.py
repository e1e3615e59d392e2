"""The Pulsar WebSocket API (``ws://``, ``wss://``) of Apache Pulsar and dasf-broker-django.

Every producer and every consumer is one WebSocket; all frames are JSON text:

- a producer sends ``{"payload": <base64>, "properties": {...}, "context": <id>}`` and the
  broker answers ``{"result": "ok", "messageId": ..., "context": <id>}``; any other ``result``
  is a refusal, raised as :class:`~demessaging.errors.TransportError` (never a hang: each
  answer is awaited for ``operation_timeout`` seconds at most);
- a consumer receives ``{"messageId": ..., "payload": <base64>, "properties": {...}}`` and
  acknowledges with ``{"messageId": ...}`` (Apache Pulsar also takes negative
  acknowledgements and ``{"type": "unsubscribe"}``).

Two URL layouts, told apart by the broker URL's path:

- **Apache Pulsar** (``ws://HOST:8080``, the web service, or any URL whose path ends in
  ``/ws/v2``): ``/ws/v2/producer/persistent/TENANT/NAMESPACE/TOPIC`` and
  ``/ws/v2/consumer/persistent/TENANT/NAMESPACE/TOPIC/SUBSCRIPTION?subscriptionType=Shared``;
- **dasf-broker-django** (any other path, such as ``ws://HOST:8000/ws``): ``PATH/TOPIC`` and
  ``PATH/TOPIC/SUBSCRIPTION``. That broker ignores subscription names and gives every message
  to every consumer of the topic, and it has no negative acknowledgement.

On Apache Pulsar a consumer is in *pull mode* (``pullMode=true``): the broker delivers only
the messages asked for with ``{"type": "permit", "permitMessages": n}``, however many are
unacknowledged. A subscription asks for messages as :meth:`~Subscription.receive` is called:
when at most half of ``prefetch`` are on their way, it asks for as many more as make
``prefetch`` (one at a time for a ``prefetch`` of 1). So a backend, which calls ``receive``
only when it can start a request, holds no more than that, and a request waiting for its
pieces holds no place in a window (in push mode the broker stopped delivering to a consumer
holding ``receiverQueueSize`` messages unacknowledged). ``receiverQueueSize`` is ``prefetch``:
the broker's own prefetch for the consumer, ahead of the permits.

Authentication goes in HTTP headers of the handshake: ``Authorization: Bearer <token>`` for a
token, and any headers given (DASF's ``DE_BACKEND_HEADER``, a JSON object); over ``wss://`` a
client certificate is presented (see :mod:`.tls`). A refusal of the handshake is an
:class:`~demessaging.errors.AuthenticationError` (HTTP 401) or an
:class:`~demessaging.errors.AuthorizationError` (403); a refused connection or an unknown host
a :class:`~demessaging.errors.BrokerUnreachableError`, at once.

A frame carries a payload base64-encoded, so a payload takes 4/3 of its size in a frame; the
transport takes payloads up to ``max_message_size`` (derived from ``frame_size``, the
broker's frame limit, 1 MiB by default on both brokers) and refuses frames over
``frame_size`` with a clear error instead of letting the broker drop the connection.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import ssl
from collections.abc import Mapping
from urllib.parse import quote, urlsplit

import websockets
from typing_extensions import override
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from ..errors import (
    AuthenticationError,
    AuthorizationError,
    BrokerUnreachableError,
    ConfigurationError,
    TransportError,
)
from ..message import Message
from . import tls
from .base import Subscription, Transport, TransportOptions
from .producers import ProducerPool
from .reach import unreachable_reason
from .websocket_producer import Producer

__all__ = ["WebSocketTransport", "frame_for", "payload_limit"]

log = logging.getLogger("demessaging.transport")

#: Room kept in a frame for properties and the JSON around the payload.
_FRAME_RESERVE = 64 * 1024


def payload_limit(frame_size: int) -> int:
    """The largest payload whose frame fits in ``frame_size`` bytes: base64 takes 4/3."""
    room = max(frame_size - _FRAME_RESERVE, frame_size // 2)
    return room * 3 // 4 // 3 * 3


def frame_for(payload: int) -> int:
    """The smallest frame limit, in whole MiB, that lets a payload of ``payload`` bytes go."""
    mib = 1024 * 1024
    frame = -(-(payload * 4 // 3 + _FRAME_RESERVE + 4) // mib) * mib
    while payload_limit(frame) < payload:
        frame += mib
    return frame


#: How to raise the frame limit of the brokers with a WebSocket API.
BROKER_FRAME_SETTINGS = (
    "dasf-broker-django: its daphne server's --websocket-max-message-size and "
    "--websocket-max-frame-size, 1 MiB by default; Apache Pulsar: webSocketMaxTextFrameSize "
    "in broker.conf or standalone.conf, and maxMessageSize"
)


class _Layout:
    """Where a topic's producer and consumer sockets are."""

    def __init__(self, url: str, options: TransportOptions) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.netloc:
            raise ConfigurationError(f"not a WebSocket URL: {url!r}; expected ws://HOST:PORT")
        path = parts.path.rstrip("/")
        self.pulsar = path == "" or path.endswith("/ws/v2")
        self.base = f"{parts.scheme}://{parts.netloc}{path or '/ws/v2'}"
        self.options = options

    def _pulsar_topic(self, topic: str) -> str:
        if "://" in topic:
            kind, rest = topic.split("://", 1)
            return f"{kind}/{rest}"
        o = self.options
        kind = "persistent" if o.persistent else "non-persistent"
        return f"{kind}/{o.tenant}/{o.namespace}/{quote(topic)}"

    def producer(self, topic: str) -> str:
        if self.pulsar:
            return f"{self.base}/producer/{self._pulsar_topic(topic)}"
        return f"{self.base}/{quote(topic)}"

    def consumer(self, topic: str, subscription: str, shared: bool, prefetch: int) -> str:
        if self.pulsar:
            kind = "Shared" if shared else "Exclusive"
            return (
                f"{self.base}/consumer/{self._pulsar_topic(topic)}/{quote(subscription)}"
                f"?subscriptionType={kind}&receiverQueueSize={prefetch}"
                # as the binary transport: a nacked message comes again after 1 s, not 60 s
                "&negativeAckRedeliveryDelay=1000&pullMode=true"
            )
        return f"{self.base}/{quote(topic)}/{quote(subscription)}"


class _DisconnectedError(TransportError):
    """A producer socket closed while idle (retired by the pool, then made again)."""


class _WebSocketSubscription(Subscription):
    def __init__(self, transport: WebSocketTransport, url: str, topic: str, prefetch: int) -> None:
        self._transport = transport
        self._url = url
        self._topic = topic
        self._socket: ClientConnection | None = None
        self._closed = False
        self._pulsar = transport.layout.pulsar
        self._prefetch = prefetch
        #: messages asked for on the current socket and not delivered yet (pull mode)
        self._permits = 0

    async def open(self) -> _WebSocketSubscription:
        self._socket = await self._transport.open_socket(self._url, f"subscribing to {self._topic}")
        return self

    @override
    async def receive(self) -> Message:
        while True:
            socket = self._socket
            if socket is None:
                raise TransportError(f"the subscription to {self._topic} is closed")
            try:
                await self._ask(socket)
                frame = await socket.recv()
            except websockets.ConnectionClosed as exc:
                if self._socket is socket:  # not closed by us: the broker or the network
                    await self._reconnect(exc)
                continue
            self._permits = max(0, self._permits - 1)  # a malformed frame took a permit too
            message = _parse_delivery(frame, self._topic)
            if message is not None:
                return message

    async def _ask(self, socket: ClientConnection) -> None:
        """In pull mode, ask for messages when at most half of ``prefetch`` are on their way.

        The permits are counted once sent: a send cancelled before it went out asks again.
        """
        if not self._pulsar or self._permits > self._prefetch // 2:
            return
        more = self._prefetch - self._permits
        await socket.send(json.dumps({"type": "permit", "permitMessages": more}))
        if self._socket is socket:
            self._permits += more

    async def _reconnect(self, cause: Exception) -> None:
        """Open the consumer socket again, trying for ``operation_timeout`` seconds.

        Messages delivered but not acknowledged come again on the new socket.
        """
        log.warning("the connection of the subscription to %s closed (%s)", self._topic, cause)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._transport.options.operation_timeout
        delay = 0.2
        while True:
            try:
                socket = await self._transport.open_socket(
                    self._url, f"subscribing to {self._topic} again"
                )
                if self._closed:  # closed meanwhile
                    await socket.close()
                    return
                self._socket = socket
                self._permits = 0  # a new consumer: nothing asked for yet
                log.info("subscribed to %s again", self._topic)
                return
            except (AuthenticationError, AuthorizationError):
                raise
            except TransportError:
                if loop.time() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _send(self, command: Mapping[str, str], what: str) -> None:
        if self._socket is None:
            return
        try:
            await self._socket.send(json.dumps(command))
        except websockets.ConnectionClosed as exc:
            raise TransportError(
                f"{what} on {self._topic}: the connection closed ({exc})"
            ) from None

    @override
    async def ack(self, message: Message) -> None:
        if message.message_id is not None:
            await self._send({"messageId": message.message_id}, "acknowledging")

    @override
    async def nack(self, message: Message) -> None:
        if message.message_id is None:
            return
        if self._pulsar:
            command = {"type": "negativeAcknowledge", "messageId": message.message_id}
            await self._send(command, "negative ack")
        # dasf-broker-django has no negative acknowledgement: the message is not redelivered

    @override
    async def unsubscribe(self) -> None:
        if self._pulsar:
            with contextlib.suppress(TransportError):
                await self._send({"type": "unsubscribe"}, "unsubscribing")
        await self.close()

    @override
    async def close(self) -> None:
        socket, self._socket = self._socket, None
        self._closed = True
        self._transport.forget(self)
        if socket is not None:
            await socket.close()


def _parse_delivery(frame: str | bytes, topic: str) -> Message | None:
    """A delivered message, or None (logged) if the frame is not one."""
    try:
        data = json.loads(frame)
        message_id = str(data["messageId"])
        payload = base64.b64decode(data.get("payload") or "", validate=True)
        properties = {str(k): str(v) for k, v in (data.get("properties") or {}).items()}
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        log.warning("ignoring a malformed frame from %s (%s): %.200r", topic, exc, frame)
        return None
    return Message(payload=payload, properties=properties, message_id=message_id)


class WebSocketTransport(Transport):
    """A connection to a broker's WebSocket API (``ws://`` or ``wss://``).

    Parameters
    ----------
    url
        Apache Pulsar's web service (``ws://HOST:8080``) or dasf-broker-django's WebSocket
        root (``ws://HOST:8000/ws``); see the module's documentation.
    options
        Topics, authentication, timeouts and limits.
    """

    def __init__(self, url: str, options: TransportOptions | None = None) -> None:
        self.url = url
        self.options = options or TransportOptions()
        self.layout = _Layout(url, self.options)
        self.max_message_size = payload_limit(self.options.frame_size)
        # dasf-broker-django lets only users with a right to make topics publish to new ones
        self.request_pieces = self.layout.pulsar
        self._producers = ProducerPool(
            self._new_producer, Producer.close, self.options.max_producers
        )
        self._subscriptions: set[_WebSocketSubscription] = set()
        self._ssl: ssl.SSLContext | None = None
        if url.startswith("wss://"):  # host names verified, a client certificate loaded
            self._ssl = tls.client_context(self.options, url)

    @override
    def whole_message_hint(self, size: int, frame_setting: str = "") -> str:
        frame = self.options.frame_size
        where = f" ({frame_setting})" if frame_setting else ""
        return (
            f"one message takes {self.max_message_size} bytes at most here (base64 in a "
            f"WebSocket frame of {frame} bytes); {size} bytes need a frame of "
            f"{frame_for(size)} bytes: raise the broker's frame limit to that "
            f"({BROKER_FRAME_SETTINGS}), "
            f"then the client's frame_size{where} to match"
        )

    def _headers(self) -> dict[str, str]:
        headers = dict(self.options.headers)
        if self.options.token:
            headers["Authorization"] = f"Bearer {self.options.token}"
        return headers

    async def open_socket(self, url: str, what: str) -> ClientConnection:
        """Open one WebSocket, mapping handshake failures to our errors."""
        try:
            return await ws_connect(
                url,
                additional_headers=self._headers(),
                ssl=self._ssl,
                open_timeout=self.options.operation_timeout,
                max_size=None,  # deliveries are as large as the broker lets them be
                compression=None,
                ping_interval=20,
                ping_timeout=self.options.operation_timeout,
            )
        except websockets.InvalidStatus as exc:
            status = exc.response.status_code
            body = (
                exc.response.body.decode("utf-8", "replace").strip()[:300]
                if exc.response.body
                else ""
            )
            text = f"{what} failed: the broker answered HTTP {status} at {url}"
            text += f": {body}" if body and not body.startswith("<") else ""  # not Jetty's page
            if status == 403:
                raise AuthorizationError(f"{text}: the role may not do this") from None
            if status == 401:
                raise AuthenticationError(
                    f"{text}; check {tls.credentials(self.options)}"
                ) from None
            raise TransportError(text) from None
        except (ssl.SSLError, websockets.InvalidMessage) as exc:  # TLS trouble, named
            raise tls.handshake_failure(url, exc, self.options, what) from None
        except (OSError, asyncio.TimeoutError, websockets.WebSocketException) as exc:
            reason = unreachable_reason(exc, urlsplit(url).hostname or "")
            if reason is not None:  # nothing listens there: say so, and where the URL is set
                raise BrokerUnreachableError(self.url, reason) from None
            raise TransportError(f"{what} failed: cannot reach {url} ({exc!r})") from None

    async def _new_producer(self, topic: str) -> Producer:
        url = self.layout.producer(topic)
        socket = await self.open_socket(url, f"creating a producer on {topic}")
        return Producer(socket, topic, self.options.operation_timeout)

    @override
    async def publish(self, topic: str, message: Message) -> None:
        encoded = base64.b64encode(message.payload).decode("ascii")
        properties = dict(message.properties)
        size = len(encoded) + len(json.dumps(properties)) + 100  # the frame, nearly
        if size > self.options.frame_size:
            raise TransportError(
                f"a message of about {size} bytes to {topic} exceeds the frame size of "
                f"{self.options.frame_size} bytes (its properties take "
                f"{size - len(encoded) - 100}); raise the broker's frame limit "
                f"({BROKER_FRAME_SETTINGS}), then frame_size to match"
            )
        for _ in range(2):  # a producer socket the broker closed while idle is made again
            try:
                async with self._producers.use(topic) as producer:
                    if not producer.alive:
                        raise _DisconnectedError(topic)
                    await producer.send(encoded, properties)
                    return
            except _DisconnectedError:
                continue
        raise TransportError(f"publishing to {topic}: the broker keeps closing the connection")

    @override
    async def prepare(self, topic: str) -> None:
        await self._producers.prepare(topic)

    @override
    async def release(self, topic: str) -> None:
        await self._producers.release(topic)

    @override
    async def subscribe(
        self,
        topic: str,
        subscription: str,
        *,
        shared: bool = True,
        prefetch: int = 1000,
    ) -> Subscription:
        prefetch = max(1, prefetch)
        url = self.layout.consumer(topic, subscription, shared, prefetch)
        sub = await _WebSocketSubscription(self, url, topic, prefetch).open()
        self._subscriptions.add(sub)
        return sub

    def forget(self, sub: _WebSocketSubscription) -> None:
        """Called by a subscription that closes."""
        self._subscriptions.discard(sub)

    @override
    async def close(self) -> None:
        for sub in list(self._subscriptions):
            await sub.close()
        await self._producers.close()
