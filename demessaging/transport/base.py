"""The transport interface: publish to a topic, subscribe to one, acknowledge, close.

A transport moves :class:`~demessaging.message.Message` objects and nothing else; it knows no
request models and no dispatcher. Errors of the library underneath are raised as
:class:`~demessaging.errors.TransportError` at this boundary. :class:`TransportOptions` says
how to reach a broker, for every transport.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..errors import ConfigurationError
from ..message import Message

__all__ = ["DEFAULT_FRAME_SIZE", "Subscription", "Transport", "TransportOptions"]

#: The frame limit of both WebSocket brokers by default (Pulsar's webSocketMaxTextFrameSize,
#: daphne's --websocket-max-message-size).
DEFAULT_FRAME_SIZE = 1024 * 1024
#: The smallest frame limit taken: room for a message's properties and some payload.
MIN_FRAME_SIZE = 4096


@dataclass(frozen=True)
class TransportOptions:
    """How to reach a broker: where short topic names live, credentials, limits.

    Each transport uses the options that apply to it and leaves the others; empty credentials
    mean none.

    Attributes
    ----------
    tenant, namespace
        Where short topic names live on Pulsar; full names (``persistent://t/n/topic``) are
        used as they are. dasf-broker-django has neither.
    persistent
        Whether short topic names are persistent topics.
    token
        A JWT for Pulsar's token authentication; over WebSocket it is sent as
        ``Authorization: Bearer <token>``.
    oauth2
        JSON parameters of Pulsar's OAuth2 client-credentials authentication (``pulsar://``,
        ``pulsar+ssl://``).
    tls_trust_certs
        A CA bundle (PEM) that verifies the broker (``pulsar+ssl://``, ``wss://``, the admin
        API over ``https://``); the system's bundle if empty.
    tls_certificate, tls_key
        A client certificate and its key (PEM), presented in the TLS handshake
        (``pulsar+ssl://``, ``wss://``, ``https://``); on ``pulsar+ssl://`` without a token it
        is the credential (TLS authentication).
    tls_insecure_skip_hostname_check
        Take a broker certificate that does not name the URL's host (unsafe: a man in the
        middle with any certificate of the CA gets the traffic); a WARNING is logged each
        time a connection is made with it. Host names are verified by default.
    headers
        HTTP headers for the WebSocket handshake (``ws://``, ``wss://``), such as
        ``{"authorization": "Token <key>"}`` for dasf-broker-django.
    frame_size
        The largest WebSocket frame the broker takes, in bytes (``ws://``, ``wss://``), at
        least 4096; larger payloads go in pieces.
    operation_timeout
        Seconds to wait for the broker: for a connection, and for each operation (Pulsar) or
        for the broker's answer to each message sent (WebSocket).
    max_producers
        Producers kept open, one per topic; the least recently used idle ones are closed
        beyond (a backend publishes to one reply topic per client).

    Raises
    ------
    ConfigurationError
        If ``frame_size`` is below 4096.
    """

    tenant: str = "public"
    namespace: str = "default"
    persistent: bool = True
    token: str = field(default="", repr=False)
    oauth2: str = field(default="", repr=False)
    tls_trust_certs: str = ""
    tls_certificate: str = ""
    tls_key: str = field(default="", repr=False)
    tls_insecure_skip_hostname_check: bool = False
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    frame_size: int = DEFAULT_FRAME_SIZE
    operation_timeout: float = 30.0
    max_producers: int = 64

    def __post_init__(self) -> None:
        if self.frame_size < MIN_FRAME_SIZE:
            raise ConfigurationError(
                f"frame_size must be at least {MIN_FRAME_SIZE}, got {self.frame_size}"
            )


class Subscription(abc.ABC):
    """Messages of one topic, as one consumer of a named subscription receives them.

    Attributes
    ----------
    blocking
        Whether :meth:`receive_within` works: threads may then receive, besides the loop.
    """

    blocking: bool = False

    @abc.abstractmethod
    async def receive(self) -> Message:
        """Wait for the next message (its ``message_id`` is set)."""

    def receive_within(self, timeout: float) -> Message | None:
        """From a thread other than the event loop's: the next message, None after ``timeout`` s.

        Only where :attr:`blocking` is true; several threads may wait at once, and messages
        that come together are taken by as many of them.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot receive from a thread")

    @abc.abstractmethod
    async def ack(self, message: Message) -> None:
        """Acknowledge a message: it is done and will not be delivered again."""

    @abc.abstractmethod
    async def nack(self, message: Message) -> None:
        """Negatively acknowledge a message: it will be delivered again, maybe elsewhere."""

    def ack_soon(self, message: Message) -> bool:
        """Acknowledge ``message`` from any thread, without waiting; False if this cannot."""
        return False

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop receiving; unacknowledged messages go back to the subscription."""

    @abc.abstractmethod
    async def unsubscribe(self) -> None:
        """Delete the subscription, with the messages it still holds, and stop receiving."""


class Transport(abc.ABC):
    """A connection to a broker.

    Attributes
    ----------
    max_message_size
        The largest payload sent in one message, in bytes; None if unlimited. Larger
        payloads go in pieces.
    piece_size
        The size of those pieces, at most ``max_message_size``; None for that size.
    request_pieces
        Whether requests may go in pieces, on side topics made for them. False where making
        a topic needs a right that clients lack (dasf-broker-django, as it is installed):
        requests then go whole, ``max_message_size`` at most.
    """

    max_message_size: int | None = None
    piece_size: int | None = None
    request_pieces: bool = True

    def whole_message_hint(self, size: int, frame_setting: str = "") -> str:
        """How to let ``size`` bytes go in one message, for errors: what limits it, and where.

        ``frame_setting`` names where the client's ``frame_size`` is set (an environment
        variable), if it has one.
        """
        return (
            f"this client sends {self.max_message_size} bytes at most in one message (Apache "
            "Pulsar's maxMessageSize is 5 MB by default)"
        )

    @abc.abstractmethod
    async def publish(self, topic: str, message: Message) -> None:
        """Send ``message`` to ``topic``; returns once the broker has it."""

    def publish_soon(
        self, topic: str, message: Message, done: Callable[[BaseException | None], None]
    ) -> bool:
        """Start sending ``message`` to ``topic`` from any thread, without waiting.

        ``done`` is called, from any thread, with None once the broker has it, or with the
        error. False if this transport cannot send so now (then nothing is sent, and ``done``
        is not called): ``publish`` it instead.
        """
        return False

    async def prepare(self, topic: str) -> None:
        """Get ready to publish to ``topic`` ahead of need (a producer, say); optional."""
        return None

    async def release(self, topic: str) -> None:
        """Free what publishing to ``topic`` holds, once nothing more will be sent there."""
        return None

    @abc.abstractmethod
    async def subscribe(
        self,
        topic: str,
        subscription: str,
        *,
        shared: bool = True,
        prefetch: int = 1000,
    ) -> Subscription:
        """Consume ``topic`` as a member of ``subscription``.

        Parameters
        ----------
        topic
            The topic.
        subscription
            The subscription name. Consumers of one shared subscription share its messages,
            each message going to one of them; separate subscriptions each get every message.
        shared
            True for a shared subscription (competing consumers), False for an exclusive one.
        prefetch
            How many messages the broker may push to this consumer ahead of ``receive``. 1
            shares work most fairly between competing consumers; more is faster for one.
            Messages received and not acknowledged do not count: a consumer that calls
            ``receive`` only when it can take a message more holds no more than it took.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Close every producer, consumer and connection."""
