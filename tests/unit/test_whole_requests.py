"""Requests that go whole, however large: over dasf-broker-django (no side topics may be made
there) and to DASF backends (which read no pieces), refused before sending when one message
cannot take them."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from websockets.asyncio.server import ServerConnection

from demessaging.backend import ListenerThread
from demessaging.backend.dispatcher import Dispatcher
from demessaging.backend.listener import Listener
from demessaging.client import Client
from demessaging.config import Settings
from demessaging.errors import (
    APIChangedError,
    CallTimeoutError,
    PayloadTooLargeError,
    TransportError,
)
from demessaging.protocol import Message, Prop
from demessaging.transport import TransportOptions
from demessaging.transport.memory import MemoryBroker, MemoryTransport
from demessaging.transport.websocket import WebSocketTransport, frame_for, payload_limit
from tests.unit.test_roundtrip import CLIMATE
from tests.unit.test_websocket_transport import Frame, fake_broker, run, within

LIMIT = 300


class Limited(MemoryTransport):
    """A memory transport taking ``LIMIT`` bytes in one message; it may hide what a pong
    offers (a DASF backend), and counts the requests it publishes and the topics it uses."""

    def __init__(self, broker: MemoryBroker, *, dasf: bool = False, pieces: bool = True) -> None:
        super().__init__(broker)
        self.max_message_size = LIMIT
        self.request_pieces = pieces
        self.dasf = dasf
        self.topics: list[str] = []

    async def publish(self, topic: str, message: Message) -> None:
        self.topics.append(topic)
        props = dict(message.properties)
        if self.dasf:
            props.pop(Prop.CONTENT_TYPES, None)
        await super().publish(topic, Message(message.payload, props, message.message_id))


def side_topics(transport: Limited) -> list[str]:
    return [t for t in transport.topics if "_fragments_" in t]


def large() -> dict[str, object]:
    return {"func_name": "total", "values": np.arange(200.0)}  # ~1.6 kB however encoded


@pytest.mark.parametrize("encoding", ["auto", "json", "msgpack"])
def test_a_large_request_to_a_dasf_backend_is_refused_naming_the_limit_not_sent_in_pieces(
    broker: MemoryBroker, encoding: str
) -> None:
    backend = Limited(broker, dasf=True)
    caller = Limited(broker)
    listener = Listener(Dispatcher.from_module(CLIMATE), backend, "dasf")
    settings = Settings(broker_url="memory://", topic="dasf", timeout=10, encoding=encoding)
    with ListenerThread(listener), Client(transport=caller, settings=settings) as c:
        assert c.call({"func_name": "total", "values": [1.0, 2.0]}) == 3.0  # small: whole
        with pytest.raises(PayloadTooLargeError) as info:
            c.call(large())
        assert not isinstance(info.value, APIChangedError)
        text = str(info.value)
        assert "DASF backend" in text
        assert f"{LIMIT} bytes at most" in text
        assert c.call({"func_name": "total", "values": [1.0, 2.0]}) == 3.0
    assert side_topics(caller) == []
    # the backend is asked once what it reads: by auto before the first request, by the others
    # only when a request is too large for one message
    assert listener.handled == 3


def test_a_large_request_to_a_demessaging_backend_still_goes_in_pieces(
    broker: MemoryBroker,
) -> None:
    caller = Limited(broker)
    listener = Listener(Dispatcher.from_module(CLIMATE), Limited(broker), "new")
    settings = Settings(broker_url="memory://", topic="new", timeout=10, encoding="json")
    with ListenerThread(listener), Client(transport=caller, settings=settings) as c:
        assert c.call(large()) == float(np.arange(200.0).sum())
    assert side_topics(caller) != []


def test_where_no_side_topic_may_be_made_requests_go_whole_and_a_large_one_is_refused(
    broker: MemoryBroker,
) -> None:
    caller = Limited(broker, pieces=False)
    listener = Listener(Dispatcher.from_module(CLIMATE), Limited(broker), "stock")
    settings = Settings(broker_url="memory://", topic="stock", timeout=10)
    with ListenerThread(listener), Client(transport=caller, settings=settings) as c:
        assert c.call({"func_name": "total", "values": [1.0, 2.0]}) == 3.0
        with pytest.raises(PayloadTooLargeError, match="takes no requests in pieces"):
            c.call(large())
    assert side_topics(caller) == []
    assert listener.handled == 2  # the pong and the small call: the backend needs not be asked


def test_dasf_broker_django_takes_no_requests_in_pieces_and_apache_pulsar_does() -> None:
    assert not WebSocketTransport("ws://127.0.0.1:8000/ws").request_pieces
    assert WebSocketTransport("ws://127.0.0.1:8080").request_pieces
    assert WebSocketTransport("ws://127.0.0.1:8080/ws/v2").request_pieces


@pytest.mark.parametrize("payload", [1, 700_000, 2**20, 16 * 2**20, 100 * 2**20 + 7])
def test_frame_for_is_the_smallest_whole_mib_frame_that_takes_a_payload(payload: int) -> None:
    frame = frame_for(payload)
    assert frame % 2**20 == 0
    assert payload_limit(frame) >= payload
    assert frame == 2**20 or payload_limit(frame - 2**20) < payload


def test_the_error_over_websocket_names_the_frame_needed_and_the_settings() -> None:
    # what the client says of a 16 MiB request over dasf-broker-django as installed (1 MiB)
    transport = WebSocketTransport("ws://127.0.0.1:8000/ws", TransportOptions())
    hint = transport.whole_message_hint(16 * 2**20)
    assert f"{payload_limit(2**20)} bytes at most" in hint
    assert f"a frame of {frame_for(16 * 2**20)} bytes" in hint
    assert frame_for(16 * 2**20) == 22 * 2**20
    assert "--websocket-max-message-size" in hint
    assert "--websocket-max-frame-size" in hint
    assert "webSocketMaxTextFrameSize" in hint
    assert "frame_size" in hint


def test_the_hint_names_where_the_clients_frame_size_is_set_once() -> None:
    transport = WebSocketTransport("ws://127.0.0.1:8000/ws", TransportOptions())
    hint = transport.whole_message_hint(
        16 * 2**20, "CLIMATE_FRAME_SIZE (or DEMESSAGING_FRAME_SIZE)"
    )
    assert hint.endswith(
        "then the client's frame_size (CLIMATE_FRAME_SIZE (or DEMESSAGING_FRAME_SIZE)) to match"
    )
    assert hint.count("FRAME_SIZE (or") == 1
    assert "frame_size (" not in transport.whole_message_hint(16 * 2**20)


@pytest.mark.parametrize(
    ("reason", "hinted"),
    [
        ("User is not allowed to create topics.", True),
        ("Topic it-x does not exist.", True),
        ("User is not allowed to publish to this topic", False),
    ],
)
def test_a_topic_nobody_made_on_dasf_broker_django_names_the_command_that_makes_it(
    reason: str, hinted: bool
) -> None:
    async def scenario() -> str:
        async def refuse(ws: ServerConnection, frame: Frame) -> Frame | None:
            return {"result": reason, "messageId": "x", "context": frame["context"]}

        async with fake_broker(refuse) as broker:
            transport = WebSocketTransport(broker.url("/ws"))  # dasf-broker-django's layout
            with pytest.raises(TransportError) as info:
                await within(transport.publish("it-x", Message(b"{}")))
            await transport.close()
            return str(info.value)

    text = run(scenario())
    assert reason in text
    assert ("manage.py dasf_topic it-x --new --anonymous" in text) is hinted


class Counting(MemoryTransport):
    """A memory transport that counts what it publishes, by message type."""

    def __init__(self, broker: MemoryBroker) -> None:
        super().__init__(broker)
        self.sent: list[str] = []

    async def publish(self, topic: str, message: Message) -> None:
        self.sent.append(message.properties.get(Prop.MESSAGE_TYPE, ""))
        await super().publish(topic, message)


def test_concurrent_first_calls_ask_the_backend_once_what_it_reads(broker: MemoryBroker) -> None:
    caller = Counting(broker)
    listener = Listener(Dispatcher.from_module(CLIMATE), MemoryTransport(broker), "once")
    settings = Settings(broker_url="memory://", topic="once", timeout=10, encoding="auto")

    async def many(c: Client) -> list[object]:
        calls = [c.acall({"func_name": "total", "values": [1.0, float(i)]}) for i in range(50)]
        return list(await asyncio.gather(*calls))

    with ListenerThread(listener), Client(transport=caller, settings=settings) as c:
        assert asyncio.run(many(c)) == [1.0 + i for i in range(50)]
        assert c.call({"func_name": "total", "values": [2.0, 2.0]}) == 4.0
    assert caller.sent.count("ping") == 1
    assert caller.sent.count("request") == 51


def test_a_failed_first_ping_is_asked_again_by_the_next_call(broker: MemoryBroker) -> None:
    settings = Settings(broker_url="memory://", topic="late", timeout=10, encoding="auto")
    with Client(transport=Counting(broker), settings=settings) as c:
        with pytest.raises(CallTimeoutError):
            c.call({"func_name": "total", "values": [1.0]}, timeout=0.3)  # nobody listens
        listener = Listener(Dispatcher.from_module(CLIMATE), MemoryTransport(broker), "late")
        with ListenerThread(listener):
            assert c.call({"func_name": "total", "values": [1.0, 2.0]}) == 3.0
