"""A backend's worker sends its call's reply itself where the transport can send from any
thread, and the request is acknowledged from the send receipt: a plain call does not go back
through the listener's event loop. A reply the broker refused is sent again from the loop.
Whether the workers receive their requests themselves or the loop hands them over."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from demessaging.backend import ListenerThread
from demessaging.backend.dispatcher import Dispatcher
from demessaging.backend.intake import LENT_PER_WORKER
from demessaging.backend.listener import Listener
from demessaging.client import Client
from demessaging.errors import TransportError
from demessaging.message import Message
from demessaging.transport.base import Subscription
from demessaging.transport.memory import MemoryBroker, MemoryTransport

CLIMATE = Path(__file__).resolve().parents[2] / "examples" / "climate.py"
#: Both intakes: the workers receive (blocking), or the event loop receives for them.
BOTH = pytest.mark.parametrize("blocking", [True, False], ids=["workers-receive", "loop-receives"])


class _Acking(Subscription):
    """A memory subscription that acknowledges from any thread, noting where."""

    def __init__(self, inner: Any, events: list[tuple[str, str]]) -> None:
        self.inner = inner
        self.events = events
        self.blocking = inner.blocking

    async def receive(self) -> Message:
        message: Message = await self.inner.receive()
        return message

    def receive_within(self, timeout: float) -> Message | None:
        message: Message | None = self.inner.receive_within(timeout)
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

    def __init__(self, broker: MemoryBroker, refuse: bool = False, blocking: bool = True) -> None:
        super().__init__(broker, blocking=blocking)
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


@BOTH
def test_a_worker_sends_the_reply_and_acknowledges_from_the_receipt(blocking: bool) -> None:
    broker = MemoryBroker()
    transport = _FromAnyThread(broker, blocking=blocking)
    assert _call(transport, broker, "from-workers") == 3.0
    kinds = [kind for kind, _ in transport.events]
    assert kinds == ["publish soon", "ack soon"]  # the reply first, then the acknowledgement
    assert all(thread.startswith("demessaging-worker") for _, thread in transport.events)


@BOTH
def test_a_reply_the_broker_refused_from_a_worker_is_sent_again_from_the_loop(
    blocking: bool,
) -> None:
    broker = MemoryBroker()
    transport = _FromAnyThread(broker, refuse=True, blocking=blocking)
    assert _call(transport, broker, "refused-once") == 3.0
    assert [kind for kind, _ in transport.events] == ["publish soon", "publish", "ack"]
    assert not transport.events[1][1].startswith("demessaging-worker")


class _Receipts(_FromAnyThread):
    """Holds the broker's receipts of replies sent from workers until :meth:`deliver`."""

    def __init__(self, broker: MemoryBroker, blocking: bool) -> None:
        super().__init__(broker, blocking=blocking)
        self.holding = False
        self.held: list[tuple[str, Message, Callable[[BaseException | None], None]]] = []
        self._lock = threading.Lock()

    def publish_soon(
        self, topic: str, message: Message, done: Callable[[BaseException | None], None]
    ) -> bool:
        with self._lock:
            if self.holding:
                self.held.append((topic, message, done))
                return True
        return super().publish_soon(topic, message, done)

    def waiting(self) -> int:
        with self._lock:
            return len(self.held)

    def deliver(self) -> None:
        with self._lock:
            held, self.held, self.holding = self.held, [], False
        for topic, message, done in held:
            self.broker.publish(topic, message)
            done(None)


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@BOTH
def test_a_call_whose_reply_waits_for_its_receipt_gives_its_worker_to_the_next(
    blocking: bool,
) -> None:
    broker = MemoryBroker()
    transport = _Receipts(broker, blocking)
    topic = "lent-workers"
    listener = Listener(Dispatcher.from_module(CLIMATE), transport, topic, workers=1)
    calls = 3 + LENT_PER_WORKER
    with (
        ListenerThread(listener),
        Client(topic, transport=MemoryTransport(broker)) as client,
        ThreadPoolExecutor(calls) as pool,
    ):
        client.call({"func_name": "total", "values": [0.0]})  # pings first
        transport.holding = True
        futures = [
            pool.submit(client.call, {"func_name": "total", "values": [float(i)]})
            for i in range(calls)
        ]
        try:  # one worker ran the lent calls and one more, which keeps its slot: the rest wait
            _wait_for(lambda: transport.waiting() == LENT_PER_WORKER + 1)
            time.sleep(0.3)
            assert transport.waiting() == LENT_PER_WORKER + 1
            # nothing is acknowledged before the broker has its reply
            assert broker.backlog(topic, listener.subscription) == calls
        finally:
            transport.deliver()
        assert sorted(float(f.result(10)) for f in futures) == [float(i) for i in range(calls)]
    assert broker.backlog(topic, listener.subscription) == 0


@BOTH
def test_stopping_waits_for_the_receipts_of_lent_calls(blocking: bool) -> None:
    broker = MemoryBroker()
    transport = _Receipts(broker, blocking)
    topic = "lent-drain"
    listener = Listener(Dispatcher.from_module(CLIMATE), transport, topic, workers=1)
    with (
        ListenerThread(listener) as running,
        ThreadPoolExecutor(2) as pool,
        Client(topic, transport=MemoryTransport(broker)) as client,
    ):
        client.call({"func_name": "total", "values": [0.0]})
        transport.holding = True
        futures = [
            pool.submit(client.call, {"func_name": "total", "values": [value]})
            for value in (1.0, 2.0)
        ]
        try:
            _wait_for(lambda: transport.waiting() == 2)
        finally:
            timer = threading.Timer(0.3, transport.deliver)
        timer.start()
        running.stop()  # returns once the calls in flight are done: after their receipts
        assert transport.waiting() == 0
        assert sorted(float(f.result(10)) for f in futures) == [1.0, 2.0]
    assert broker.backlog(topic, listener.subscription) == 0
