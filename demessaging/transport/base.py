"""The transport interface: publish to a topic, subscribe to one, acknowledge, close.

A transport moves :class:`~demessaging.protocol.Message` objects and nothing else; it knows no
request models and no dispatcher. Errors of the library underneath are raised as
:class:`~demessaging.errors.TransportError` at this boundary.
"""

from __future__ import annotations

import abc

from ..message import Message

__all__ = ["Subscription", "Transport"]


class Subscription(abc.ABC):
    """Messages of one topic, as one consumer of a named subscription receives them."""

    @abc.abstractmethod
    async def receive(self) -> Message:
        """Wait for the next message (its ``message_id`` is set)."""

    @abc.abstractmethod
    async def ack(self, message: Message) -> None:
        """Acknowledge a message: it is done and will not be delivered again."""

    @abc.abstractmethod
    async def nack(self, message: Message) -> None:
        """Negatively acknowledge a message: it will be delivered again, maybe elsewhere."""

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
    """

    max_message_size: int | None = None
    piece_size: int | None = None

    @abc.abstractmethod
    async def publish(self, topic: str, message: Message) -> None:
        """Send ``message`` to ``topic``; returns once the broker has it."""

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
        unacked: int = 0,
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
        unacked
            How many received messages the consumer may hold unacknowledged at once. Brokers
            that stop delivering beyond a bound (the WebSocket API's ``receiverQueueSize``)
            are asked for at least this; others ignore it.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Close every producer, consumer and connection."""
