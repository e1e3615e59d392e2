"""Apache Pulsar's binary protocol, through the official ``pulsar-client`` (``pulsar.asyncio``).

Works with Apache Pulsar and with pulsar-lite. Short topic names are expanded to
``persistent://<tenant>/<namespace>/<name>``; full names are used as they are. Errors of the
library are raised as :class:`~demessaging.errors.TransportError` (authentication failures as
:class:`~demessaging.errors.AuthenticationError`, refusals of a role's rights as
:class:`~demessaging.errors.AuthorizationError`). On ``pulsar+ssl://`` the broker's certificate
must name the URL's host (see :mod:`.tls`); TLS failures and a scheme that does not fit the
port are named at the first connection, at once (see :mod:`.handshake`). A broker URL where
nothing listens (the connection refused, the host unknown) raises
:class:`~demessaging.errors.BrokerUnreachableError` at the first connection, at once (see
:mod:`.reach`), instead of after the library's retries.

pulsar-client logs on stderr, in its own format, at the level of the
``demessaging.transport.pulsar`` logger when the connection is made: its errors at ERROR, also
its warnings at WARNING and INFO (the command line's default), also its information at DEBUG.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import _pulsar as pulsar_lib
import pulsar
import pulsar.asyncio as pulsar_asyncio
from typing_extensions import override

from ..errors import AuthenticationError, AuthorizationError, ConfigurationError, TransportError
from ..message import Message
from . import bridge, lite
from .base import Subscription, Transport, TransportOptions
from .producers import ProducerPool
from .pulsar_setup import authentication, full_topic
from .pulsar_setup import check as _check
from .pulsar_setup import library_logger as _library_logger
from .reach import check_reachable

__all__ = ["CLOSE_TIMEOUT", "PulsarTransport", "authentication", "full_topic"]

log = logging.getLogger("demessaging.transport.pulsar")
#: pulsar.asyncio raises an exception class of its own, unrelated to pulsar.PulsarException.
_LIBRARY_ERRORS = (pulsar.PulsarException, pulsar_asyncio.PulsarException)
#: Seconds closing a transport takes at most; then the connection is dropped (see ``close``).
CLOSE_TIMEOUT = 5.0
#: Seconds closing one consumer or producer waits for the broker's confirmation.
_CONSUMER_CLOSE_TIMEOUT = 2.0
#: Seconds left to pulsar-client's own closing thread after a client is closed.
_CLOSE_GRACE = 0.1
T = TypeVar("T")
Done = Callable[[BaseException | None], None]
#: What pulsar.Client takes (a client certificate next to a token came in later versions).
_CLIENT_PARAMETERS = frozenset(inspect.signature(pulsar.Client.__init__).parameters)

#: The largest payload sent in one message. Below the brokers' limit (5 MiB), as pulsar-lite
#: 0.2 loses messages close to its limit.
DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024
#: The size of the pieces of larger payloads: 1 MiB pieces were the fastest measured on
#: pulsar-lite, and on Apache Pulsar as fast as larger ones.
DEFAULT_PIECE_SIZE = 1024 * 1024


async def _guard(operation: Awaitable[T], what: str) -> T:
    """Await a pulsar-client operation, mapping its errors to ours."""
    try:
        return await operation
    except _LIBRARY_ERRORS as exc:
        text = f"{what} failed: {exc}"
        if "Authorization" in type(exc).__name__ or "authorization" in str(exc).lower():
            raise AuthorizationError(
                f"{text}: the role may not do this; it needs a grant on the namespace"
            ) from exc
        if "Authentication" in type(exc).__name__ or "authentication" in str(exc).lower():
            raise AuthenticationError(text) from exc
        raise TransportError(text) from exc


class _PulsarSubscription(Subscription):
    blocking = True

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
        # Threads take turns to wait in receive_within: pulsar-client wakes one waiting
        # receiver when a message comes to an empty queue, none for the ones that follow, so
        # with several threads waiting, messages that came together waited for a thread to
        # come back or time out (8 calls of 0.5 s at once on 8 idle workers started up to
        # 0.2 s late). The thread whose turn it is takes the next message and hands it on.
        self._turn = threading.Lock()
        #: Whether the broker left closing unanswered (frozen or gone).
        self.unanswered = False

    @override
    async def receive(self) -> Message:
        # pulsar-client's own consumer, without pulsar.asyncio's wake-up per message (see
        # bridge): a message already in the receiver queue comes without a turn of the loop
        received = bridge.prepare()
        self._consumer._consumer.receive_async(functools.partial(_settle, received))
        return self._taken(await _guard(received, f"receiving from {self._topic}"))

    @override
    def receive_within(self, timeout: float) -> Message | None:
        # pulsar-client's blocking receive lets go of the GIL while it waits (as does the turn)
        deadline = time.monotonic() + timeout
        if not self._turn.acquire(timeout=max(timeout, 0.0)):
            return None
        try:
            left = deadline - time.monotonic()
            raw = self._consumer._consumer.receive(max(1, int(left * 1000)))
        except pulsar.Timeout:
            return None
        except _LIBRARY_ERRORS as exc:
            raise TransportError(f"receiving from {self._topic} failed: {exc}") from exc
        finally:
            self._turn.release()
        return self._taken(raw)

    def _taken(self, raw: Any) -> Message:  # remembered until it is acknowledged
        key = str(message_id := raw.message_id())
        self._received[key] = message_id  # enough to acknowledge; not the data
        data, properties, count = raw.data(), raw.properties(), raw.redelivery_count()
        return Message(payload=data, properties=properties, message_id=key, redelivery_count=count)

    @override
    async def ack(self, message: Message) -> None:
        raw = self._received.pop(message.message_id or "", None)
        if raw is not None:
            # pulsar-client groups acknowledgements (100 ms) and confirms this one at once
            acked = bridge.prepare()
            self._consumer._consumer.acknowledge_async(raw, functools.partial(_settle, acked))
            await _guard(acked, f"acknowledging on {self._topic}")

    @override
    def ack_soon(self, message: Message) -> bool:
        raw = self._received.pop(message.message_id or "", None)
        if raw is not None:
            self._consumer._consumer.acknowledge_async(raw, _ignore)
        return raw is not None  # not if closed meanwhile: it comes again

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
        try:  # bounded: a frozen broker would keep it for the operation timeout
            await asyncio.wait_for(self._consumer.close(), _CONSUMER_CLOSE_TIMEOUT)
        except asyncio.TimeoutError:  # the broker redelivers what it had pushed to it
            self.unanswered = True
            log.debug("the broker did not confirm closing the consumer of %s", self._topic)
        except _LIBRARY_ERRORS as exc:  # already closed, or the broker is gone
            self.unanswered = lite.timed_out(exc)
            log.debug("closing the consumer of %s: %s", self._topic, exc)


class PulsarTransport(Transport):
    """A connection to a Pulsar broker (``pulsar://`` or ``pulsar+ssl://``).

    Parameters
    ----------
    url
        The broker's service URL.
    options
        Topics, authentication and limits.
    pulsar_lite
        Work around two faults of pulsar-lite 0.2. It refuses a consumer of a shared
        subscription whose id another connection's consumer of it has, also one a killed
        process left: the transport skips a random number of consumer ids, and tries a
        refused consumer again on another id within seconds (see :mod:`.lite`). And
        deleting a subscription redelivers messages of other consumers whose
        acknowledgement is still on its way: subscriptions are closed instead of deleted
        (pulsar-lite never deletes data anyway).
    max_message_size
        The largest payload sent in one message, in bytes; larger ones go in pieces.
    piece_size
        The size of those pieces, in bytes.
    """

    def __init__(
        self,
        url: str,
        options: TransportOptions | None = None,
        *,
        pulsar_lite: bool = False,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
        piece_size: int = DEFAULT_PIECE_SIZE,
    ) -> None:
        self.url = url
        self.options = options or TransportOptions()
        self.pulsar_lite = pulsar_lite
        self.max_message_size = max_message_size
        self.piece_size = piece_size
        self._client: pulsar_asyncio.Client | None = None
        self._producers = ProducerPool(
            self._new_producer, self._close_producer, self.options.max_producers
        )
        self._subscriptions: set[_PulsarSubscription] = set()
        self._ids_spread = not pulsar_lite
        #: Whether the broker left closing a producer unanswered (frozen or gone).
        self._unanswered = False

    def topic(self, name: str) -> str:
        """The full name of a topic."""
        o = self.options
        return full_topic(name, o.tenant, o.namespace, persistent=o.persistent)

    async def _connect(self) -> pulsar_asyncio.Client:
        if self._client is None:
            # the URL as given: a pulsar-lite:// one is pulsar:// here
            shown = f"pulsar-lite{self.url[len('pulsar') :]}" if self.pulsar_lite else self.url
            ssl_port = self.url.startswith("pulsar+ssl:")
            await check_reachable(self.url, 6651 if ssl_port else 6650, shown=shown)
            await _check(self.url, self.options)
        if self._client is None:
            o = self.options
            timeout = max(1, math.ceil(o.operation_timeout))
            if self.pulsar_lite:
                timeout = min(timeout, lite.OPERATION_TIMEOUT)
            auth = authentication(o)
            tls: dict[str, Any] = {}
            if self.url.startswith("pulsar+ssl:"):
                # _check has warned if it is off
                tls["tls_validate_hostname"] = not o.tls_insecure_skip_hostname_check
                if o.tls_certificate and not isinstance(auth, pulsar.AuthenticationTLS):
                    # a token names the role; the certificate is for the handshake
                    if "tls_certificate_file_path" not in _CLIENT_PARAMETERS:
                        raise ConfigurationError(
                            "this pulsar-client cannot present a client certificate next to a "
                            "token or OAuth2: upgrade it, or leave DEMESSAGING_TLS_CERTIFICATE "
                            "for TLS authentication alone"
                        )
                    tls["tls_certificate_file_path"] = o.tls_certificate
                    tls["tls_private_key_file_path"] = o.tls_key
            self._client = pulsar_asyncio.Client(
                self.url,
                authentication=auth,
                operation_timeout_seconds=timeout,
                connection_timeout_ms=min(10_000, int(o.operation_timeout * 1000)),
                tls_trust_certs_file_path=o.tls_trust_certs or None,
                logger=_library_logger(),
                **tls,
            )
        return self._client

    async def _new_producer(self, topic: str) -> pulsar_asyncio.Producer:
        async def attempt() -> pulsar_asyncio.Producer:
            return await (await self._connect()).create_producer(
                topic,
                batching_enabled=False,
                block_if_queue_full=True,
                send_timeout_millis=int(self.options.operation_timeout * 1000),
            )

        return await self._patiently(attempt, f"creating a producer on {topic}")

    async def _patiently(
        self,
        attempt: Callable[[], Awaitable[T]],
        what: str,
        again: Callable[[], Awaitable[None]] | None = None,
    ) -> T:
        """``attempt()``; on pulsar-lite, again while it times out (see :mod:`.lite`)."""
        if not self.pulsar_lite:
            return await _guard(attempt(), what)
        timeout = self.options.operation_timeout
        return await _guard(lite.patiently(attempt, what, timeout, again), what)

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
            sent = bridge.prepare()  # the receipt, without pulsar.asyncio's wake-up per message
            producer._producer.send_async(_built(message), functools.partial(_settle, sent))
            await _guard(sent, f"publishing to {full}")

    @override
    def publish_soon(self, topic: str, message: Message, done: Done) -> bool:
        # from any thread (a worker's reply, a client's request) without a turn of the loop
        # (pulsar-client's producers are thread-safe); to a topic whose producer is made
        full = self.topic(topic)
        producer = self._producers.ready(full)
        if producer is None:
            return False
        failed = functools.partial(self._producers.failed, full, producer)
        producer._producer.send_async(_built(message), functools.partial(_receipt, done, failed))
        return True

    async def _skip_consumer_ids(self) -> None:
        o = self.options
        await _guard(lite.skip_ids(await self._connect(), o.tenant, o.namespace), "skipping ids")

    async def _consumer(self, full: str, subscription: str, **options: Any) -> Any:
        """A consumer of ``full``; on pulsar-lite, tried again on another id if refused."""
        shared = options["consumer_type"] == pulsar.ConsumerType.Shared
        if shared and not self._ids_spread:
            await self._skip_consumer_ids()
            self._ids_spread = True

        async def attempt() -> Any:
            return await (await self._connect()).subscribe(full, subscription, **options)

        # refused (its id is taken, maybe by a killed process's consumer) or slow
        again = self._skip_consumer_ids if shared else None
        return await self._patiently(attempt, f"subscribing to {full}", again)

    @override
    async def subscribe(
        self,
        topic: str,
        subscription: str,
        *,
        shared: bool = True,
        prefetch: int = 1000,
    ) -> Subscription:
        full = self.topic(topic)
        consumer = await self._consumer(
            full,
            subscription,
            consumer_type=pulsar.ConsumerType.Shared if shared else pulsar.ConsumerType.Exclusive,
            receiver_queue_size=max(1, prefetch),
            negative_ack_redelivery_delay_ms=1000,
        )
        sub = _PulsarSubscription(consumer, full, not self.pulsar_lite, self._subscriptions.discard)
        self._subscriptions.add(sub)
        return sub

    async def _close_producer(self, producer: pulsar_asyncio.Producer) -> None:
        if self._unanswered:  # the broker is frozen or gone: shutdown() drops it
            return
        try:  # bounded, and below pulsar-client's operation timeout (see _close_gracefully)
            await asyncio.wait_for(producer.close(), _CONSUMER_CLOSE_TIMEOUT)
        except asyncio.TimeoutError:
            self._unanswered = True
        except _LIBRARY_ERRORS as exc:  # already closed, or the broker is gone
            self._unanswered = self._unanswered or lite.timed_out(exc)
            log.debug("closing a producer: %s", exc)

    async def _close_gracefully(self, client: pulsar_asyncio.Client | None) -> None:
        for sub in list(self._subscriptions):
            await sub.close()
            if sub.unanswered:
                self._unanswered = True
                break
        self._subscriptions.clear()
        await self._producers.close()
        if client is not None and self._unanswered:
            # once a request of ours timed out in pulsar-client, closing (or shutting down)
            # the client waits for the broker 10 s (pulsar-client 3.13): drop it before
            log.debug("the broker did not answer while closing: connection dropped")
            client.shutdown()
        elif client is not None:
            try:
                await client.close()
            except _LIBRARY_ERRORS as exc:
                log.debug("closing the client: %s", exc)

    @override
    async def close(self) -> None:
        """Close the consumers, the producers and the connection, in ``CLOSE_TIMEOUT`` s at most.

        A broker that does not answer (frozen) would keep every step waiting for its
        operation timeout: at the deadline, or when a caller cancels it sooner, the
        connection is dropped at once, without telling the broker.
        """
        client, self._client = self._client, None
        try:
            await asyncio.wait_for(self._close_gracefully(client), CLOSE_TIMEOUT)
        except asyncio.TimeoutError:
            log.debug("the broker did not answer while closing: connection dropped")
            if client is not None:
                client.shutdown()
        except BaseException:
            # cancelled (the broker does not answer) or failed: shutdown() closes the
            # connections at once, and pulsar-client's threads end without waiting for the
            # broker; without it they would hold the program's exit
            if client is not None:
                client.shutdown()
            raise
        if client is not None:
            # pulsar-client ends its close on a thread of its own, after telling us it is done;
            # a process that exits before that thread does aborts ("terminate called without
            # an active exception", apache/pulsar-client-python#256): give it time to end
            await asyncio.sleep(_CLOSE_GRACE)


def _built(message: Message) -> Any:
    builder = pulsar_lib.MessageBuilder().content(bytes(message.payload))
    for key, value in message.properties.items():
        builder.property(key, value)
    return builder.build()


def _settle(future: asyncio.Future[Any], result: Any, value: Any = None) -> None:
    """pulsar-client's callback: complete ``future`` on its loop (see :mod:`.bridge`)."""
    if result == pulsar.Result.Ok:
        bridge.settle(future, value)
    else:
        bridge.settle(future, error=pulsar_asyncio.PulsarException(result))


def _receipt(done: Done, failed: Callable[[], None], result: Any, value: Any) -> None:
    """pulsar-client's callback of ``publish_soon``, on its thread; it must never raise."""
    error = None if result == pulsar.Result.Ok else TransportError(f"publishing failed: {result}")
    try:
        if error is not None:  # the next send makes a new producer
            failed()
        done(error)
    except BaseException:  # an exception here would end the process
        log.exception("handling a send receipt failed")


def _ignore(result: Any, value: Any = None) -> None:
    """pulsar-client's callback of an acknowledgement nobody waits for."""
