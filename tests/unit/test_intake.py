"""Where the loop receives, it does so in one long-lived task: a request costs the task that
handles it, and no task or wait of its own for receiving it. Where the workers receive, a
plain call costs the loop nothing."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from demessaging.backend import ListenerThread
from demessaging.backend.dispatcher import Dispatcher
from demessaging.backend.listener import Listener
from demessaging.backend.receivers import Receivers
from demessaging.client import Client
from demessaging.errors import TransportError
from demessaging.message import Message
from demessaging.transport import memory
from demessaging.transport.memory import MemoryBroker, MemoryTransport

CLIMATE = Path(__file__).resolve().parents[2] / "examples" / "climate.py"
CALL = {"func_name": "total", "values": [1.0, 2.0]}


class _SendsFromThreads(MemoryTransport):
    """A memory transport that sends from any thread, as pulsar-client does."""

    def publish_soon(
        self, topic: str, message: Message, done: Callable[[BaseException | None], None]
    ) -> bool:
        self.broker.publish(topic, message)
        done(None)
        return True


@contextlib.contextmanager
def _serving(listener: Listener) -> Iterator[list[str]]:
    """Serve ``listener`` in a thread whose loop notes each task it makes; stop it after."""
    created: list[str] = []
    loops: list[asyncio.AbstractEventLoop] = []

    def counting(loop: asyncio.AbstractEventLoop, coro: Any, **options: Any) -> asyncio.Task[Any]:
        created.append(getattr(coro, "__qualname__", repr(coro)))
        return asyncio.Task(coro, loop=loop, **options)

    async def serve() -> None:
        loops.append(asyncio.get_running_loop())
        loops[0].set_task_factory(counting)
        await listener.serve()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    try:
        assert listener.ready.wait(10)
        yield created
    finally:
        if loops:
            loops[0].call_soon_threadsafe(listener.stop)
        thread.join(10)
    assert not thread.is_alive()


def test_a_request_costs_the_listener_one_task() -> None:
    broker = MemoryBroker()
    transport = MemoryTransport(broker, blocking=False)  # the loop receives
    listener = Listener(Dispatcher.from_module(CLIMATE), transport, "tasks")
    with (
        _serving(listener) as created,
        Client("tasks", transport=MemoryTransport(broker)) as client,
    ):
        assert client.call(CALL) == 3.0  # the first call also pings
        before = len(created)
        for _ in range(10):
            assert client.call(CALL) == 3.0
        made = created[before:]
    assert len(made) == 10, made
    assert all(name.endswith("_handle") for name in made), made


def test_where_the_workers_receive_a_plain_call_costs_the_loop_no_task() -> None:
    broker = MemoryBroker()
    listener = Listener(Dispatcher.from_module(CLIMATE), _SendsFromThreads(broker), "direct")
    with (
        _serving(listener) as created,
        Client("direct", transport=MemoryTransport(broker)) as client,
    ):
        assert client.call(CALL) == 3.0  # the first call also pings: the loop answers that
        before = len(created)
        for _ in range(10):
            assert client.call(CALL) == 3.0
        deadline = time.monotonic() + 10  # counted after the reply, from its receipt
        while listener.handled < 12 and time.monotonic() < deadline:  # ping, 1 call, 10
            time.sleep(0.01)
        assert listener.handled == 12
        made = created[before:]
    # the memory broker's blocking receive waits on its loop; nothing else runs there
    handling = [name for name in made if "MemorySubscription.receive" not in name]
    assert not [name for name in handling if name != "wait_for"], made
    assert broker.backlog("direct", listener.subscription) == 0


class _Failing(MemoryTransport):
    """Its subscriptions fail on the first blocking receive, as a broker gone for good."""

    async def subscribe(self, topic: str, subscription: str, **options: Any) -> Any:
        inner = await super().subscribe(topic, subscription, **options)

        def fail(timeout: float) -> Message | None:
            raise TransportError("the broker is gone")

        inner.receive_within = fail  # type: ignore[method-assign]
        return inner


def test_a_worker_that_cannot_receive_stops_the_listener_with_the_error() -> None:
    listener = Listener(Dispatcher.from_module(CLIMATE), _Failing(MemoryBroker()), "gone")
    with pytest.raises(TransportError, match="the broker is gone"):
        asyncio.run(asyncio.wait_for(listener.serve(), 10))
    assert not listener.ready.is_set()


def test_a_thread_that_stops_waiting_on_a_busy_loop_loses_no_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(memory, "STUCK", 0.05)
    broker = MemoryBroker()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        transport = MemoryTransport(broker)
        sub = asyncio.run_coroutine_threadsafe(transport.subscribe("busy", "s"), loop).result(5)
        loop.call_soon_threadsafe(time.sleep, 0.5)  # the loop is busy past the thread's wait
        broker.publish("busy", Message(payload=b"kept"))
        assert sub.receive_within(0.05) is None  # given up: the message must stay for later
        received = sub.receive_within(2.0)
        assert received is not None
        assert received.payload == b"kept"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_a_worker_that_fails_on_a_message_hands_it_to_the_loop_and_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    serve = Receivers._serve
    failures = [RuntimeError("a bug")]

    def failing_once(self: Receivers, message: Message) -> None:
        if failures and b"total" in bytes(message.payload):
            raise failures.pop()
        serve(self, message)

    monkeypatch.setattr(Receivers, "_serve", failing_once)
    broker = MemoryBroker()
    listener = Listener(Dispatcher.from_module(CLIMATE), MemoryTransport(broker), "buggy")
    with ListenerThread(listener), Client("buggy", transport=MemoryTransport(broker)) as client:
        assert client.call(CALL) == 3.0  # the loop answered it
        assert not failures
        assert client.call(CALL) == 3.0  # and the workers go on
    assert "a worker failed on message" in caplog.text
    assert broker.backlog("buggy", listener.subscription) == 0
