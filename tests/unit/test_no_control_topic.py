"""A backend whose control topic cannot be used reads cancel and ``more`` on its request topic.

As on dasf-broker-django as installed, where an admin makes a backend's topic and nothing else:
publishing to ``<topic>_control`` is refused there. The backend learns it as it starts (its
check message is refused), warns once, and reads control messages on its request topic; its
pong and its stream's items say so, and its callers send them there. Streams keep their
window, and cancelled calls stop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
from typing_extensions import override

from demessaging.backend import Dispatcher, Listener, ListenerThread
from demessaging.backend import replies as replies_module
from demessaging.client import Client
from demessaging.config import Settings
from demessaging.core.loader import load_module
from demessaging.errors import CallTimeoutError, ProtocolError, TransportError
from demessaging.message import Message, MessageType, Prop
from demessaging.protocol.control import CHECK, control_target
from demessaging.protocol.envelope import parse_request
from demessaging.protocol.outgoing import reply_to
from demessaging.transport.base import Subscription
from demessaging.transport.memory import MemoryBroker, MemoryTransport

MODULE = '''
import threading
import time
from collections.abc import Iterator

from demessaging import Reporter
from demessaging.errors import CallCancelled

PRODUCED = []
STARTED = threading.Event()
CANCELLED = []


def numbers(n: int) -> Iterator[int]:
    """Count to n, one number at a time."""
    for i in range(n):
        PRODUCED.append(i)
        yield i


def work(seconds: float, progress: Reporter) -> float:
    """Work in small steps, each a cancellation point."""
    STARTED.set()
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            time.sleep(0.02)
            progress.advance()
    except CallCancelled:
        CANCELLED.append(seconds)
        raise
    return seconds
'''


class NoControlTopic(MemoryTransport):
    """A broker where nobody made the control topic, and publishing makes none."""

    def __init__(self, broker: MemoryBroker) -> None:
        super().__init__(broker)
        self.refused: list[Message] = []
        self.sent: list[tuple[str, Message]] = []

    @override
    async def publish(self, topic: str, message: Message) -> None:
        if topic.endswith("_control"):
            self.refused.append(message)
            raise TransportError(  # as the WebSocket transport says it, with its hint
                f"the broker refused a message to {topic}: User is not allowed to create topics.",
                hint=f"; there is no topic {topic} there (manage.py dasf_topic {topic} --new)",
            )
        self.sent.append((topic, message))
        await super().publish(topic, message)


class NoSubscriptions(NoControlTopic):
    """Nor may the backend read its request topic twice."""

    @override
    async def subscribe(
        self, topic: str, subscription: str, *, shared: bool = True, prefetch: int = 1000
    ) -> Subscription:
        if not shared:
            raise TransportError(f"no second subscription on {topic}")
        return await super().subscribe(topic, subscription, shared=shared, prefetch=prefetch)


@pytest.fixture
def module(write_backend: Callable[[str], Path]) -> ModuleType:
    return load_module(write_backend(MODULE))


def listen(module: ModuleType, transport: MemoryTransport, workers: int = 1) -> ListenerThread:
    dispatcher = Dispatcher.from_module(module)  # type: ignore[arg-type]
    return ListenerThread(Listener(dispatcher, transport, "t", workers=workers))


@pytest.fixture
def backend(module: ModuleType, broker: MemoryBroker) -> Iterator[NoControlTopic]:
    transport = NoControlTopic(broker)
    with listen(module, transport):
        yield transport


@pytest.fixture
def caller(broker: MemoryBroker) -> Iterator[tuple[Client, NoControlTopic]]:
    transport = NoControlTopic(broker)
    client = Client("t", transport=transport, timeout=10)
    try:
        yield client, transport
    finally:
        client.close()


@pytest.fixture(autouse=True)
def patient_for_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    """A backend waiting for credit gives up after a second, not the default half-minute."""
    monkeypatch.setattr(replies_module, "STREAM_IDLE", 1.0)


def test_the_backend_warns_once_naming_the_command_that_makes_the_topic(
    module: ModuleType, broker: MemoryBroker, caplog: pytest.LogCaptureFixture
) -> None:
    transport = NoControlTopic(broker)
    with (
        caplog.at_level(logging.WARNING, "demessaging"),
        listen(module, transport, workers=2),
        Client("t", transport=NoControlTopic(broker), timeout=10) as client,
    ):
        assert client.call({"func_name": "work", "seconds": 0}) == 0
        assert list(client.stream({"func_name": "numbers", "n": 5}, window=1)) == list(range(5))
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings  # and no warning for the control messages it read
    assert "manage.py dasf_topic t_control --new --anonymous" in warnings[0]
    assert "come on the request topic t instead" in warnings[0]
    assert "not allowed to create topics" in warnings[0]  # the broker's reason, once,
    assert warnings[0].count("manage.py") == 1  # and the command named once, not the hint too
    # what it learnt from: its check, refused
    assert [m.properties[Prop.MESSAGE_TYPE] for m in transport.refused] == [CHECK]


def test_a_stream_longer_than_its_window_completes_and_keeps_its_window(
    module: ModuleType, backend: NoControlTopic, caller: tuple[Client, NoControlTopic]
) -> None:
    client, transport = caller
    taken, ahead = [], 0
    for item in client.stream({"func_name": "numbers", "n": 200}, window=4):
        taken.append(item)
        ahead = max(ahead, len(module.PRODUCED) - len(taken))  # type: ignore[attr-defined]
        if item == 10:
            time.sleep(0.5)  # a slow caller: the generator waits instead of running ahead
            assert len(module.PRODUCED) <= 11 + 4 + 1  # type: ignore[attr-defined]
    assert taken == list(range(200))
    assert ahead <= 4 + 1
    assert transport.refused == []  # told by the items, the caller sent no `more` there
    more = [t for t, m in transport.sent if m.properties[Prop.MESSAGE_TYPE] == "more"]
    assert more
    assert set(more) == {"t"}


def test_a_cancelled_call_stops_in_the_backend(
    module: ModuleType, backend: NoControlTopic, caller: tuple[Client, NoControlTopic]
) -> None:
    client, transport = caller
    started = time.monotonic()
    with pytest.raises(CallTimeoutError):
        client.call({"func_name": "work", "seconds": 30.0}, timeout=0.5)
    assert client.call({"func_name": "work", "seconds": 0}) == 0  # the one worker is free
    assert time.monotonic() - started < 3
    assert module.CANCELLED == [30.0]  # type: ignore[attr-defined]
    assert transport.refused == []  # the pong said where cancel goes


def test_stopping_a_stream_early_stops_the_generator_and_close_stays_bounded(
    module: ModuleType, backend: NoControlTopic, caller: tuple[Client, NoControlTopic]
) -> None:
    client, _ = caller
    items = client.stream({"func_name": "numbers", "n": 1_000_000}, window=4)
    assert [next(items) for _ in range(5)] == [0, 1, 2, 3, 4]
    items.close()
    assert client.call({"func_name": "work", "seconds": 0}) == 0
    assert len(module.PRODUCED) < 20  # type: ignore[attr-defined]
    started = time.monotonic()
    client.close()
    assert time.monotonic() - started < 6


def test_pong_and_items_say_where_control_messages_go(
    module: ModuleType, backend: NoControlTopic, broker: MemoryBroker
) -> None:
    async def exchange(kind: MessageType, payload: bytes, stream: str = "") -> list[Message]:
        transport = MemoryTransport(broker)
        replies = await transport.subscribe(f"raw-{kind.value}", "me", shared=False)
        properties = {
            Prop.MESSAGE_TYPE: kind.value,
            Prop.REQUEST_CONTEXT: "c1",
            Prop.RESPONSE_TOPIC: f"raw-{kind.value}",
        }
        if stream:
            properties[Prop.STREAM] = stream
        await transport.publish("t", Message(payload, properties))
        received: list[Message] = []
        while not received or received[-1].properties[Prop.MESSAGE_TYPE] == "item":
            received.append(await asyncio.wait_for(replies.receive(), 5))
        await transport.close()
        return received

    (pong,) = asyncio.run(exchange(MessageType.PING, b""))
    assert control_target("t", pong.properties) == "t"
    received = asyncio.run(exchange(MessageType.REQUEST, b'{"func_name": "numbers", "n": 1}', "4"))
    assert [m.properties[Prop.MESSAGE_TYPE] for m in received] == ["item", "response"]
    assert control_target("t", received[0].properties) == "t"


def test_a_backend_that_can_read_no_control_message_streams_without_credit(
    module: ModuleType, broker: MemoryBroker, caplog: pytest.LogCaptureFixture
) -> None:
    transport = NoSubscriptions(broker)
    with (
        caplog.at_level(logging.WARNING, "demessaging.backend"),
        listen(module, transport),
        Client("t", transport=NoControlTopic(broker), timeout=10) as client,
    ):
        items = client.stream({"func_name": "numbers", "n": 50}, window=2)
        taken = []
        for item in items:
            taken.append(item)
            if item == 3:
                time.sleep(1.5)  # longer than the backend's patience: it waits for no credit
        assert taken == list(range(50))
    assert any("calls cannot be cancelled" in r.getMessage() for r in caplog.records)


def test_a_backend_with_its_control_topic_says_nothing_of_it(
    module: ModuleType, serve: Callable[..., ListenerThread], broker: MemoryBroker
) -> None:
    serve(module)
    with Client("t", transport=MemoryTransport(broker), timeout=10) as client:
        client.ping()
        assert client._connection.control == "t_control"
        assert list(client.stream({"func_name": "numbers", "n": 3}, window=1)) == [0, 1, 2]
        assert client._connection.control == "t_control"


def test_an_item_the_broker_dropped_is_a_clear_error_and_a_repeated_one_is_taken_once(
    broker: MemoryBroker,
) -> None:
    """A broker that drops messages (dasf-broker-django does, when a consumer lags far behind)
    must not shorten a stream silently; one that delivers a message again must not repeat it."""

    async def backend(requests: Subscription, transport: MemoryTransport) -> None:
        request = parse_request(await requests.receive())
        for sequence in (1, 1, 2, 4):  # 2 again, 3 lost
            topic, item = reply_to(
                request,
                str(sequence * 10).encode(),
                source_topic="t",
                message_type=MessageType.ITEM,
                extra={Prop.SEQUENCE: str(sequence), Prop.CONTENT_TYPE: "application/json"},
            )
            await transport.publish(topic, item)

    async def scenario() -> list[int]:
        transport = MemoryTransport(broker)
        requests = await transport.subscribe("t", "fake-backend")
        serving = asyncio.ensure_future(backend(requests, transport))
        taken: list[int] = []
        settings = Settings(broker_url="memory://", encoding="json", timeout=5)

        async def take(client: Client) -> None:
            async for item in client.astream({"func_name": "numbers", "n": 9}):
                taken.append(item)

        with (
            Client("t", transport=MemoryTransport(broker), settings=settings) as client,
            pytest.raises(ProtocolError, match=r"item 3 of the stream .* was lost"),
        ):
            await take(client)
        await serving
        await transport.close()
        return taken

    assert asyncio.run(scenario()) == [10, 20]
