"""A backend's worker sends its call's reply itself where the transport can send from any
thread, and the request is acknowledged from the send receipt: a plain call does not go back
through the listener's event loop. A reply the broker refused is sent again from the loop."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from demessaging.backend import ListenerThread
from demessaging.backend.dispatcher import Dispatcher
from demessaging.backend.listener import Listener
from demessaging.client import Client
from demessaging.errors import TransportError
from demessaging.message import Message
from demessaging.transport.base import Subscription
from demessaging.transport.memory import MemoryBroker, MemoryTransport

CLIMATE = Path(__file__).resolve().parents[2] / "examples" / "climate.py"


class _Acking(Subscription):
    """A memory subscription that acknowledges from any thread, noting where."""

    def __init__(self, inner: Any, events: list[tuple[str, str]]) -> None:
        self.inner = inner
        self.events = events

    async def receive(self) -> Message:
        message: Message = await self.inner.receive()
        return message

    async def ack(self, message: Message) -> None:
        self.events.append(("ack", threading.current_thread().name))
        await self.inner.ack(message)

    def ack_soon(self, message: Message) -> bool:
        self.events.append(("ack soon", threading.current_thread().name))
        inner = self.inner
        assert message.message_id is not None
        inner._broker.settle(inner._topic, inner._name, inner._consumer, message.message_id, False)
        return True

    async def nack(self, message: Message) -> None:
        await self.inner.nack(message)

    async def close(self) -> None:
        await self.inner.close()

    async def unsubscribe(self) -> None:
        await self.inner.unsubscribe()


class _FromAnyThread(MemoryTransport):
    """A memory transport that sends from any thread, or refuses such sends (``refuse``)."""

    def __init__(self, broker: MemoryBroker, refuse: bool = False) -> None:
        super().__init__(broker)
        self.refuse = refuse
        self.events: list[tuple[str, str]] = []

    async def publish(self, topic: str, message: Message) -> None:
        self.events.append(("publish", threading.current_thread().name))
        await super().publish(topic, message)

    def publish_soon(
        self, topic: str, message: Message, done: Callable[[BaseException | None], None]
    ) -> bool:
        self.events.append(("publish soon", threading.current_thread().name))
        if self.refuse:
            done(TransportError("the broker refused it"))
        else:
            self.broker.publish(topic, message)
            done(None)
        return True

    async def subscribe(
        self, topic: str, subscription: str, *, shared: bool = True, prefetch: int = 1000
    ) -> Subscription:
        inner = await super().subscribe(topic, subscription, shared=shared, prefetch=prefetch)
        return _Acking(inner, self.events)


def _call(transport: _FromAnyThread, broker: MemoryBroker, topic: str) -> float:
    listener = Listener(Dispatcher.from_module(CLIMATE), transport, topic, workers=2)
    with ListenerThread(listener), Client(topic, transport=MemoryTransport(broker)) as client:
        client.call({"func_name": "total", "values": [0.0]})  # pings first, on the loop
        transport.events.clear()
        result = float(client.call({"func_name": "total", "values": [1.0, 2.0]}))
    assert broker.backlog(topic, listener.subscription) == 0
    return result


def test_a_worker_sends_the_reply_and_acknowledges_from_the_receipt() -> None:
    broker = MemoryBroker()
    transport = _FromAnyThread(broker)
    assert _call(transport, broker, "from-workers") == 3.0
    kinds = [kind for kind, _ in transport.events]
    assert kinds == ["publish soon", "ack soon"]  # the reply first, then the acknowledgement
    assert all(thread.startswith("demessaging-worker") for _, thread in transport.events)


def test_a_reply_the_broker_refused_from_a_worker_is_sent_again_from_the_loop() -> None:
    broker = MemoryBroker()
    transport = _FromAnyThread(broker, refuse=True)
    assert _call(transport, broker, "refused-once") == 3.0
    assert [kind for kind, _ in transport.events] == ["publish soon", "publish", "ack"]
    assert not transport.events[1][1].startswith("demessaging-worker")
