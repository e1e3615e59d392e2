"""An in-process broker, for unit tests and for trying things out in one process.

It mimics a Pulsar namespace: topics keep no messages until a subscription exists, a
subscription keeps its messages until they are acknowledged, consumers of a shared
subscription take turns, and unacknowledged messages return to the subscription when their
consumer closes or nacks them. It is thread-safe, so a backend and a client running on
different event loops in different threads can share one broker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import replace

from typing_extensions import override

from ..errors import TransportError
from ..message import Message
from .base import Subscription, Transport

__all__ = ["MemoryBroker", "MemoryTransport"]

#: Seconds past its timeout a thread's receive waits for a consumer's event loop that is busy.
STUCK = 5.0


class _Consumer:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[Message] = asyncio.Queue()
        self.unacked: dict[str, Message] = {}


class _SubscriptionState:
    def __init__(self, shared: bool) -> None:
        self.shared = shared
        self.backlog: deque[Message] = deque()
        self.consumers: list[_Consumer] = []
        self.turn = itertools.count()

    def deliver(self) -> None:
        """Hand the backlog to the consumers, in turn (call with the broker lock held)."""
        while self.backlog and self.consumers:
            message = self.backlog.popleft()
            consumer = self.consumers[next(self.turn) % len(self.consumers)]
            assert message.message_id is not None
            consumer.unacked[message.message_id] = message
            try:
                consumer.loop.call_soon_threadsafe(consumer.queue.put_nowait, message)
            except RuntimeError:  # the consumer's event loop is closed: it is gone
                self.consumers.remove(consumer)
                self.backlog.extendleft(reversed(consumer.unacked.values()))
                consumer.unacked.clear()


class MemoryBroker:
    """A thread-safe in-process broker. :meth:`named` returns one shared per name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._topics: dict[str, dict[str, _SubscriptionState]] = {}
        self._ids = itertools.count(1)

    @classmethod
    def named(cls, name: str = "") -> MemoryBroker:
        """The process-wide broker called ``name`` (``memory://name``)."""
        with _NAMED_LOCK:
            return _NAMED.setdefault(name, cls())

    def publish(self, topic: str, message: Message) -> str:
        """Store ``message`` in every subscription of ``topic``; returns its id."""
        with self._lock:
            message_id = str(next(self._ids))
            # as a real broker: a copy, not the sender's buffer (bytes are kept as they are)
            payload = bytes(message.payload)
            stored = replace(
                message, payload=payload, properties=dict(message.properties), message_id=message_id
            )
            for state in self._topics.get(topic, {}).values():
                state.backlog.append(stored)
                state.deliver()
        return message_id

    def attach(self, topic: str, name: str, shared: bool, consumer: _Consumer) -> None:
        """Add a consumer to a subscription, creating the subscription if needed."""
        with self._lock:
            state = self._topics.setdefault(topic, {}).setdefault(name, _SubscriptionState(shared))
            if state.consumers and not (shared and state.shared):
                raise TransportError(
                    f"subscription {name!r} on topic {topic!r} already has an exclusive consumer"
                )
            state.consumers.append(consumer)
            state.deliver()

    def detach(self, topic: str, name: str, consumer: _Consumer) -> None:
        """Remove a consumer; its unacknowledged messages go back to the subscription."""
        with self._lock:
            state = self._topics[topic][name]
            if consumer in state.consumers:
                state.consumers.remove(consumer)
            state.backlog.extendleft(reversed(list(consumer.unacked.values())))
            consumer.unacked.clear()
            state.deliver()

    def delete(self, topic: str, name: str) -> None:
        """Remove a subscription and everything it holds."""
        with self._lock:
            self._topics.get(topic, {}).pop(name, None)

    def settle(
        self, topic: str, name: str, consumer: _Consumer, message_id: str, redeliver: bool
    ) -> None:
        """Acknowledge a message, or with ``redeliver`` put it back for redelivery."""
        with self._lock:
            message = consumer.unacked.pop(message_id, None)
            if message is not None and redeliver:
                state = self._topics[topic][name]
                state.backlog.append(
                    replace(message, redelivery_count=message.redelivery_count + 1)
                )
                state.deliver()

    def subscriptions(self) -> dict[str, list[str]]:
        """Topic -> the names of its subscriptions."""
        with self._lock:
            return {topic: list(subs) for topic, subs in self._topics.items() if subs}

    def backlog(self, topic: str, name: str) -> int:
        """Messages of a subscription not yet acknowledged (queued or in flight)."""
        with self._lock:
            state = self._topics.get(topic, {}).get(name)
            if state is None:
                return 0
            return len(state.backlog) + sum(len(c.unacked) for c in state.consumers)


_NAMED: dict[str, MemoryBroker] = {}
_NAMED_LOCK = threading.Lock()


class _MemorySubscription(Subscription):
    def __init__(
        self,
        broker: MemoryBroker,
        topic: str,
        name: str,
        consumer: _Consumer,
        blocking: bool,
    ) -> None:
        self.blocking = blocking
        self._broker = broker
        self._topic = topic
        self._name = name
        self._consumer = consumer
        self._closed = False

    @override
    async def receive(self) -> Message:
        if self._closed:
            raise TransportError(f"subscription {self._name!r} on {self._topic!r} is closed")
        return await self._consumer.queue.get()

    @override
    def receive_within(self, timeout: float) -> Message | None:
        if not self.blocking:
            return super().receive_within(timeout)
        lock = threading.Lock()
        taken = gone = False

        async def take() -> Message | None:  # on the consumer's loop
            nonlocal taken
            try:
                message = await asyncio.wait_for(self.receive(), timeout)
            except asyncio.TimeoutError:
                return None
            with lock:
                if gone:  # the thread stopped waiting: the message is for the next receive
                    self._consumer.queue.put_nowait(message)
                    return None
                taken = True
            return message

        try:
            future = asyncio.run_coroutine_threadsafe(take(), self._consumer.loop)
        except RuntimeError as exc:  # the consumer's loop is closed
            raise TransportError(f"subscription {self._name!r} is gone: {exc}") from exc
        try:
            return future.result(timeout + STUCK)  # bounded, should the loop be stuck
        except concurrent.futures.TimeoutError:
            with lock:
                gone = not taken
            return None if gone else future.result()  # taken: on its way

    @override
    async def ack(self, message: Message) -> None:
        self.ack_soon(message)

    @override
    def ack_soon(self, message: Message) -> bool:
        assert message.message_id is not None
        self._broker.settle(self._topic, self._name, self._consumer, message.message_id, False)
        return True

    @override
    async def nack(self, message: Message) -> None:
        assert message.message_id is not None
        self._broker.settle(self._topic, self._name, self._consumer, message.message_id, True)

    @override
    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._broker.detach(self._topic, self._name, self._consumer)

    @override
    async def unsubscribe(self) -> None:
        await self.close()
        self._broker.delete(self._topic, self._name)


class MemoryTransport(Transport):
    """A transport to a :class:`MemoryBroker` (by default the process-wide unnamed one).

    With ``blocking`` its subscriptions can be received from threads too
    (:meth:`~demessaging.transport.base.Subscription.receive_within`), and it sends from any
    thread (:meth:`~demessaging.transport.base.Transport.publish_soon`), as Pulsar's can; a
    subclass that overrides :meth:`publish` sends everything through it.
    """

    def __init__(self, broker: MemoryBroker | None = None, *, blocking: bool = True) -> None:
        self.broker = broker or MemoryBroker.named()
        self.blocking = blocking
        self._subscriptions: list[_MemorySubscription] = []

    @override
    async def publish(self, topic: str, message: Message) -> None:
        self.broker.publish(topic, message)

    @override
    def publish_soon(
        self, topic: str, message: Message, done: Callable[[BaseException | None], None]
    ) -> bool:
        if not self.blocking or type(self).publish is not MemoryTransport.publish:
            return False  # as a transport whose loop alone sends; all through a changed publish
        self.broker.publish(topic, message)
        done(None)
        return True

    @override
    async def subscribe(
        self,
        topic: str,
        subscription: str,
        *,
        shared: bool = True,
        prefetch: int = 1000,
    ) -> Subscription:
        consumer = _Consumer(asyncio.get_running_loop())
        self.broker.attach(topic, subscription, shared, consumer)
        sub = _MemorySubscription(self.broker, topic, subscription, consumer, self.blocking)
        self._subscriptions.append(sub)
        return sub

    @override
    async def close(self) -> None:
        for sub in self._subscriptions:
            await sub.close()
        self._subscriptions.clear()
