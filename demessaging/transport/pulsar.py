"""Apache Pulsar's binary protocol, through the official ``pulsar-client`` (``pulsar.asyncio``).

Works with Apache Pulsar and with pulsar-lite. Short topic names are expanded to
``persistent://<tenant>/<namespace>/<name>``; full names are used as they are. Errors of the
library are raised as :class:`~demessaging.errors.TransportError` (authentication failures as
:class:`~demessaging.errors.AuthenticationError`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pulsar
import pulsar.asyncio as pulsar_asyncio
from typing_extensions import override

from ..errors import AuthenticationError, TransportError
from ..message import Message
from .base import Subscription, Transport
from .handshake import check_credentials
from .producers import ProducerPool

__all__ = ["PulsarOptions", "PulsarTransport", "full_topic"]

log = logging.getLogger("demessaging.transport")
#: pulsar.asyncio raises an exception class of its own, unrelated to pulsar.PulsarException.
_LIBRARY_ERRORS = (pulsar.PulsarException, pulsar_asyncio.PulsarException)
#: Seconds left to pulsar-client's own closing thread after a client is closed.
_CLOSE_GRACE = 0.1
T = TypeVar("T")

#: The largest payload sent in one message. Below the brokers' limit (5 MiB), as pulsar-lite
#: 0.2 loses messages close to its limit.
DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024
#: The size of the pieces of larger payloads: 1 MiB pieces were the fastest measured on
#: pulsar-lite, and on Apache Pulsar as fast as larger ones.
DEFAULT_PIECE_SIZE = 1024 * 1024


@dataclass(frozen=True)
class PulsarOptions:
    """How to reach a Pulsar broker.

    Attributes
    ----------
    tenant, namespace
        Where short topic names live.
    persistent
        Whether short topic names are persistent topics.
    token
        A JWT for Pulsar's token authentication.
    oauth2
        JSON parameters of Pulsar's OAuth2 client-credentials authentication.
    tls_trust_certs
        A CA bundle to verify the broker with (``pulsar+ssl://`` URLs).
    tls_certificate, tls_key
        A client certificate and key, for TLS authentication.
    operation_timeout
        Seconds the library waits for the broker in each operation.
    max_producers
        Producers kept open, one per topic; the least recently used ones are closed beyond
        (a backend publishes to one reply topic per client).
    max_message_size
        The largest payload sent in one message, in bytes; larger ones go in pieces.
    piece_size
        The size of those pieces, in bytes.
    pulsar_lite
        Work around two faults of pulsar-lite 0.2. It refuses a consumer of a shared
        subscription whose id another process's consumer already has ("Consumer 0 already
        exists"), while every pulsar-client process numbers its consumers from 0: before its
        first shared subscription, the transport creates and closes ``pid % 1024`` consumers of
        a scratch topic (about 0.5 ms each), so that backends on one machine get distinct ids.
        And deleting a subscription redelivers messages of other consumers whose
        acknowledgement is still on its way: subscriptions are closed instead of deleted
        (pulsar-lite never deletes data anyway).
    """

    tenant: str = "public"
    namespace: str = "default"
    persistent: bool = True
    token: str = ""
    oauth2: str = ""
    tls_trust_certs: str = ""
    tls_certificate: str = ""
    tls_key: str = ""
    operation_timeout: int = 30
    max_producers: int = 64
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    piece_size: int = DEFAULT_PIECE_SIZE
    pulsar_lite: bool = False

    def authentication(self) -> Any:
        """The pulsar-client authentication object, or None."""
        if self.token:
            return pulsar.AuthenticationToken(self.token)
        if self.oauth2:
            return pulsar.AuthenticationOauth2(self.oauth2)
        if self.tls_certificate:
            return pulsar.AuthenticationTLS(self.tls_certificate, self.tls_key)
        return None

    async def check(self, url: str) -> None:
        """Raise :class:`AuthenticationError` at once if the broker refuses the credentials.

        Only for no credentials or a token: OAuth2 and TLS authentication are left to the
        library (see :mod:`.handshake`).
        """
        if self.oauth2 or self.tls_certificate:
            return
        tls = None
        if url.startswith("pulsar+ssl://"):
            try:
                tls = ssl.create_default_context(cafile=self.tls_trust_certs or None)
            except (OSError, ssl.SSLError):  # a bad CA bundle: the library reports it
                return
            tls.check_hostname = False  # as pulsar-client, which does not validate host names
        token = ("token", self.token.encode()) if self.token else ("", b"")
        await check_credentials(url, *token, tls=tls, timeout=min(10, self.operation_timeout))


def full_topic(name: str, tenant: str, namespace: str, *, persistent: bool = True) -> str:
    """``name`` as a full topic name; a full name is returned as it is."""
    if "://" in name:
        return name
    kind = "persistent" if persistent else "non-persistent"
    return f"{kind}://{tenant}/{namespace}/{name}"


async def _guard(operation: Awaitable[T], what: str) -> T:
    """Await a pulsar-client operation, mapping its errors to ours."""
    try:
        return await operation
    except _LIBRARY_ERRORS as exc:
        text = f"{what} failed: {exc}"
        if (
            "Authentication" in type(exc).__name__
            or "Authorization" in type(exc).__name__
            or ("authentication" in str(exc).lower() or "authorization" in str(exc).lower())
        ):
            raise AuthenticationError(text) from exc
        raise TransportError(text) from exc


class _PulsarSubscription(Subscription):
    def __init__(
        self,
        consumer: pulsar_asyncio.Consumer,
        topic: str,
        delete: bool,
        closed: Callable[[_PulsarSubscription], None],
    ) -> None:
        self._closed = closed
        self._consumer = consumer
        self._topic = topic
        self._delete = delete
        self._received: dict[str, Any] = {}

    @override
    async def receive(self) -> Message:
        raw = await _guard(self._consumer.receive(), f"receiving from {self._topic}")
        message_id = str(raw.message_id())
        self._received[message_id] = raw.message_id()  # enough to acknowledge; not the data
        return Message(payload=raw.data(), properties=raw.properties(), message_id=message_id)

    @override
    async def ack(self, message: Message) -> None:
        raw = self._received.pop(message.message_id or "", None)
        if raw is not None:
            await _guard(self._consumer.acknowledge(raw), f"acknowledging on {self._topic}")

    @override
    async def nack(self, message: Message) -> None:
        raw = self._received.pop(message.message_id or "", None)
        if raw is not None:
            await _guard(self._consumer.negative_acknowledge(raw), f"negative ack on {self._topic}")

    @override
    async def unsubscribe(self) -> None:
        self._received.clear()
        if self._delete:
            await _guard(self._consumer.unsubscribe(), f"unsubscribing from {self._topic}")
        await self.close()

    @override
    async def close(self) -> None:
        self._received.clear()
        self._closed(self)
        try:
            await self._consumer.close()
        except _LIBRARY_ERRORS as exc:  # already closed, or the broker is gone
            log.debug("closing the consumer of %s: %s", self._topic, exc)


class PulsarTransport(Transport):
    """A connection to a Pulsar broker (``pulsar://`` or ``pulsar+ssl://``).

    Parameters
    ----------
    url
        The broker's service URL.
    options
        Topics, authentication and limits.
    """

    def __init__(self, url: str, options: PulsarOptions | None = None) -> None:
        self.url = url
        self.options = options or PulsarOptions()
        self.max_message_size = self.options.max_message_size
        self.piece_size = self.options.piece_size
        self._client: pulsar_asyncio.Client | None = None
        self._producers = ProducerPool(
            self._new_producer, _close_producer, self.options.max_producers
        )
        self._subscriptions: set[_PulsarSubscription] = set()
        self._ids_spread = not self.options.pulsar_lite

    def topic(self, name: str) -> str:
        """The full name of a topic."""
        o = self.options
        return full_topic(name, o.tenant, o.namespace, persistent=o.persistent)

    async def _connect(self) -> pulsar_asyncio.Client:
        if self._client is None:
            await self.options.check(self.url)
        if self._client is None:
            o = self.options
            self._client = pulsar_asyncio.Client(
                self.url,
                authentication=o.authentication(),
                operation_timeout_seconds=o.operation_timeout,
                connection_timeout_ms=min(10_000, o.operation_timeout * 1000),
                tls_trust_certs_file_path=o.tls_trust_certs or None,
                logger=_quiet_logger(),
            )
        return self._client

    async def _new_producer(self, topic: str) -> pulsar_asyncio.Producer:
        return await _guard(
            (await self._connect()).create_producer(
                topic,
                batching_enabled=False,
                block_if_queue_full=True,
                send_timeout_millis=self.options.operation_timeout * 1000,
            ),
            f"creating a producer on {topic}",
        )

    @override
    async def prepare(self, topic: str) -> None:
        await self._producers.prepare(self.topic(topic))

    @override
    async def release(self, topic: str) -> None:
        await self._producers.release(self.topic(topic))

    @override
    async def publish(self, topic: str, message: Message) -> None:
        full = self.topic(topic)
        async with self._producers.use(full) as producer:
            await _guard(
                producer.send(bytes(message.payload), properties=dict(message.properties)),
                f"publishing to {full}",
            )

    async def _spread_consumer_ids(self) -> None:
        o = self.options
        scratch = f"non-persistent://{o.tenant}/{o.namespace}/demessaging-consumer-ids"
        for n in range(os.getpid() % 1024):
            consumer = await _guard(
                (await self._connect()).subscribe(scratch, f"id-{os.getpid()}-{n}"),
                "spreading consumer ids",
            )
            await consumer.close()
        self._ids_spread = True

    @override
    async def subscribe(
        self,
        topic: str,
        subscription: str,
        *,
        shared: bool = True,
        prefetch: int = 1000,
        unacked: int = 0,
    ) -> Subscription:
        full = self.topic(topic)
        if shared and not self._ids_spread:
            await self._spread_consumer_ids()
        consumer = await _guard(
            (await self._connect()).subscribe(
                full,
                subscription,
                consumer_type=pulsar.ConsumerType.Shared
                if shared
                else pulsar.ConsumerType.Exclusive,
                receiver_queue_size=max(1, prefetch),
                negative_ack_redelivery_delay_ms=1000,
            ),
            f"subscribing to {full}",
        )
        sub = _PulsarSubscription(
            consumer, full, not self.options.pulsar_lite, self._subscriptions.discard
        )
        self._subscriptions.add(sub)
        return sub

    @override
    async def close(self) -> None:
        for sub in list(self._subscriptions):
            await sub.close()
        self._subscriptions.clear()
        await self._producers.close()
        if self._client is not None:
            try:
                await self._client.close()
            except _LIBRARY_ERRORS as exc:
                log.debug("closing the client: %s", exc)
            self._client = None
            # pulsar-client ends its close on a thread of its own, after telling us it is done;
            # a process that exits before that thread does aborts ("terminate called without
            # an active exception", apache/pulsar-client-python#256): give it time to end
            await asyncio.sleep(_CLOSE_GRACE)


async def _close_producer(producer: pulsar_asyncio.Producer) -> None:
    try:
        await producer.close()
    except _LIBRARY_ERRORS as exc:  # already closed, or the broker is gone
        log.debug("closing a producer: %s", exc)


def _quiet_logger() -> Any:
    """pulsar-client's own logger, warnings and errors only, on stderr.

    Not a Python logger: pulsar-client would call it from its threads, also while the
    interpreter shuts down, which aborts the process. Not its console logger either, which
    writes to stdout, where command output goes.
    """
    if os.path.exists("/dev/stderr"):
        return pulsar.FileLogger(pulsar.LoggerLevel.Warn, "/dev/stderr")
    return pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn)
