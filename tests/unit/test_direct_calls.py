"""Calls made on the caller's event loop go from the caller's thread and are answered on its
loop, without a turn of the client's own loop, where the transport sends from any thread. A
request the transport refuses so is sent again the usual way; a reader that stops, or a client
closed meanwhile, fails the waiting calls at once."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from demessaging.backend import ListenerThread
from demessaging.backend.dispatcher import Dispatcher
from demessaging.backend.listener import Listener
from demessaging.client import Client
from demessaging.config import Settings
from demessaging.errors import CallTimeoutError, TransportError
from demessaging.message import Message, Prop
from demessaging.transport.base import Subscription
from demessaging.transport.memory import MemoryBroker, MemoryTransport

from .test_worker_replies import _Acking

CLIMATE = Path(__file__).resolve().parents[2] / "examples" / "climate.py"
CALL = {"func_name": "total", "values": [1.0, 2.0]}
#: Requests in JSON without asking the backend first: a call to a topic nobody serves yet.
JSON = dataclasses.replace(Settings.from_env(), encoding="json")


class _Watched(MemoryTransport):
    """Notes the threads that send from outside the loop; refuses the first ``refuse`` such
    sends (nothing reaches the broker then), noting their contexts."""

    def __init__(self, broker: MemoryBroker, refuse: int = 0) -> None:
        super().__init__(broker)
        self.refuse = refuse
        self.threads: list[str] = []
        self.refused: list[str] = []
        self.subscriptions: list[_Breakable] = []

    def publish_soon(
        self, topic: str, message: Message, done: Callable[[BaseException | None], None]
    ) -> bool:
        self.threads.append(threading.current_thread().name)
        if self.refuse:
            self.refuse -= 1
            self.refused.append(message.properties[Prop.REQUEST_CONTEXT])
            done(TransportError("the broker refused it"))
            return True
        return super().publish_soon(topic, message, done)

    async def subscribe(
        self, topic: str, subscription: str, *, shared: bool = True, prefetch: int = 1000
    ) -> Subscription:
        inner = await super().subscribe(topic, subscription, shared=shared, prefetch=prefetch)
        breakable = _Breakable(inner, [])
        self.subscriptions.append(breakable)
        return breakable


class _Breakable(_Acking):
    """A subscription that fails the first receive to end once :attr:`broken` is set."""

    broken = False

    async def receive(self) -> Message:
        message = await super().receive()
        if self.broken:
            raise TransportError("the connection to the broker broke")
        return message

    def receive_within(self, timeout: float) -> Message | None:
        message = super().receive_within(timeout)
        if self.broken:
            raise TransportError("the connection to the broker broke")
        return message


@pytest.fixture
def served() -> Iterator[MemoryBroker]:
    broker = MemoryBroker()
    listener = Listener(Dispatcher.from_module(CLIMATE), MemoryTransport(broker), "direct")
    with ListenerThread(listener):
        yield broker


def _tasks_on(client: Client) -> list[str]:
    """The tasks the client's own loop makes from now on (their coroutines' names)."""
    made: list[str] = []

    def counting(loop: asyncio.AbstractEventLoop, coro: Any, **options: Any) -> asyncio.Task[Any]:
        made.append(getattr(coro, "__qualname__", repr(coro)))
        return asyncio.Task(coro, loop=loop, **options)

    async def install() -> None:
        asyncio.get_running_loop().set_task_factory(counting)

    client.run(install())
    return made


def test_calls_on_the_callers_loop_do_not_pass_through_the_clients_loop(
    served: MemoryBroker,
) -> None:
    transport = _Watched(served)
    with Client("direct", transport=transport) as client:
        assert client.call(CALL) == 3.0  # connects and asks the backend's encoding
        made = _tasks_on(client)

        async def many() -> list[Any]:
            calls = (client.acall({"func_name": "total", "values": [i, 1.0]}) for i in range(20))
            return await asyncio.gather(*calls)

        assert asyncio.run(many()) == [i + 1.0 for i in range(20)]
        # none for the calls (the in-process broker's receive from a thread runs on the loop
        # its subscription was made on: the client's)
        assert [name for name in made if not name.startswith("_MemorySubscription.")] == []
    assert transport.threads == ["MainThread"] * 20


def test_a_request_refused_from_the_callers_thread_goes_again_with_its_context(
    served: MemoryBroker,
) -> None:
    transport = _Watched(served, refuse=1)
    with Client("direct", transport=transport) as client:
        assert client.call(CALL) == 3.0
        seen = _Watched(served)
        contexts: list[str] = []

        async def call_and_watch() -> Any:
            watch = await seen.subscribe("direct", "watching")  # every request from now on
            result = await client.acall(CALL)
            message = await asyncio.wait_for(watch.receive(), 5)
            contexts.append(message.properties[Prop.REQUEST_CONTEXT])
            await watch.unsubscribe()
            return result

        assert asyncio.run(call_and_watch()) == 3.0
    assert transport.refused == contexts  # the same call, sent once


def test_a_reader_that_stops_fails_the_waiting_calls_and_the_next_call_reconnects() -> None:
    broker = MemoryBroker()  # nobody serves "direct" at first
    transport = _Watched(broker)
    client = Client("direct", transport=transport, settings=JSON, timeout=30)

    async def scenario() -> None:
        with pytest.raises(CallTimeoutError):  # connects
            await client.acall(CALL, timeout=0.2)
        waiting = asyncio.ensure_future(client.acall(CALL))
        await asyncio.sleep(0.2)
        transport.subscriptions[-1].broken = True
        broker.publish(client.response_topic, Message(payload=b"", properties={}))  # wakes it
        started = time.monotonic()
        with pytest.raises(TransportError, match="broke"):
            await waiting
        assert time.monotonic() - started < 2.0

    listener = Listener(Dispatcher.from_module(CLIMATE), MemoryTransport(broker), "direct")
    with client:
        asyncio.run(scenario())
        with ListenerThread(listener):
            assert asyncio.run(client.acall(CALL)) == 3.0
            assert len(transport.subscriptions) == 2  # a new reply subscription


def test_closing_the_client_fails_a_waiting_call_at_once() -> None:
    broker = MemoryBroker()
    client = Client("direct", transport=_Watched(broker), settings=JSON, timeout=30)
    failed: list[BaseException] = []

    async def scenario() -> None:
        with pytest.raises(CallTimeoutError):  # connects
            await client.acall(CALL, timeout=0.2)
        closing = threading.Timer(0.2, client.close)
        closing.start()
        try:
            await client.acall(CALL)
        except TransportError as exc:
            failed.append(exc)
        finally:
            closing.join()

    started = time.monotonic()
    asyncio.run(scenario())
    assert time.monotonic() - started < 5.0
    assert [str(error) for error in failed] == ["the client was closed during the call"]


def test_calls_from_many_threads_each_get_their_own_reply(served: MemoryBroker) -> None:
    with Client("direct", transport=_Watched(served)) as client:
        assert client.call(CALL) == 3.0
        results: dict[int, list[Any]] = {}

        def calls(n: int) -> None:
            async def some() -> list[Any]:
                values = [{"func_name": "total", "values": [n, i]} for i in range(10)]
                return await asyncio.gather(*(client.acall(v) for v in values))

            results[n] = asyncio.run(some())

        threads = [threading.Thread(target=calls, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert results == {n: [n + i for i in range(10)] for n in range(6)}
