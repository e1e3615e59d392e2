"""Hostile or broken reply topics: refused before the call runs; replies that cannot go out."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from demessaging.backend import Dispatcher, ListenerThread, Outcome
from demessaging.backend.deadletter import (
    ATTEMPTS,
    ORIGIN_MESSAGE_ID,
    REAL_TOPIC,
    REASON,
    Unsent,
    permanent,
)
from demessaging.backend.listener import DEFAULT_SUBSCRIPTION, Listener
from demessaging.client import Client
from demessaging.config import Settings
from demessaging.errors import (
    AuthenticationError,
    CallTimeoutError,
    ConfigurationError,
    DemessagingError,
    ProtocolError,
    TransportError,
)
from demessaging.message import Message, MessageType, Prop
from demessaging.protocol.envelope import Address, parse_request
from demessaging.protocol.outgoing import make_request
from demessaging.protocol.topics import ReplyTopics, parse_namespaces
from demessaging.transport.base import TransportOptions
from demessaging.transport.memory import MemoryBroker, MemoryTransport

CLIMATE = Path(__file__).resolve().parents[2] / "examples" / "climate.py"
PAYLOAD = b'{"func_name": "total", "values": [1, 2]}'

ACCEPTED = [
    "climate_abcdefgh",  # what demessaging and DASF clients send
    "climate-1.x=y:z",
    "persistent://public/default/climate_abcdefgh",
    "non-persistent://public/default/climate_abcdefgh",
]
REFUSED = [
    "not a valid topic !!",
    "nul\0byte",
    "bang!",
    "persistent://",
    "pulsar://evil",
    "persistent://other/space/replies",
    "persistent://public/default/a/b",
    "persistent://public/default/",
    "http://public/default/x",
    "ümlaut",
    "x" * 256,
]


@pytest.mark.parametrize("topic", ACCEPTED)
def test_short_names_and_own_namespace_are_taken(topic: str) -> None:
    assert ReplyTopics().refusal(topic) is None
    assert (
        parse_request(make_request(PAYLOAD, context="1", response_topic=topic)).response_topic
        == topic
    )


@pytest.mark.parametrize("topic", REFUSED)
def test_other_reply_topics_are_refused(topic: str) -> None:
    message = make_request(PAYLOAD, context="1", response_topic=topic)
    with pytest.raises(ProtocolError, match="reply topic"):
        parse_request(message)
    assert Address.of(message) is None  # nobody to answer: the refusal is not published


def test_configured_namespaces_are_taken() -> None:
    topics = ReplyTopics.of("inst", "backends", "persistent://inst/requests/climate", ["partner/x"])
    assert topics.namespaces == {"inst/backends", "inst/requests", "partner/x"}
    for name in ("persistent://partner/x/r", "persistent://inst/requests/r", "r"):
        assert topics.refusal(name) is None
    assert topics.refusal("persistent://public/default/r") is not None


def test_the_backend_namespace_comes_from_the_transport_options() -> None:
    class Options(MemoryTransport):
        options = TransportOptions(tenant="inst", namespace="backends")

    listener = Listener(Dispatcher.from_module(CLIMATE), Options(MemoryBroker()), "climate")
    assert listener.reply_topics.namespaces == {"inst/backends"}
    assert listener.dead_letter_topic == "climate-DLQ"


def test_reply_namespaces_setting() -> None:
    env = {"DEMESSAGING_REPLY_NAMESPACES": " partner/x, other/y ,"}
    assert parse_namespaces(Settings.from_env(environ=env).reply_namespaces) == [
        "partner/x",
        "other/y",
    ]
    for bad in ("partner", "a/b/c", "a b/c", "/x"):
        with pytest.raises(ConfigurationError, match="TENANT/NAMESPACE"):
            Settings.from_env(environ={"DEMESSAGING_REPLY_NAMESPACES": bad})
    with pytest.raises(ConfigurationError, match="reply_retries"):
        Settings(reply_retries=0)


class Counting(Dispatcher):
    """Counts the requests it runs."""

    runs = 0

    def handle(self, payload: bytes | bytearray, content_type: str = "", *args: object) -> Outcome:
        type(self).runs += 1
        return super().handle(payload, content_type, *args)  # type: ignore[arg-type]


def dispatcher() -> Counting:
    class Fresh(Counting):
        runs = 0

    return Fresh.from_module(CLIMATE)


def publish(broker: MemoryBroker, topic: str, message: Message) -> None:
    asyncio.run(MemoryTransport(broker).publish(topic, message))


def settled(broker: MemoryBroker, topic: str, seconds: float = 5.0) -> bool:
    """Wait (bounded) until the backend's subscription holds nothing unacknowledged."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if broker.backlog(topic, DEFAULT_SUBSCRIPTION) == 0:
            return True
        time.sleep(0.02)
    return False


class Watch:
    """Messages published on a topic of the memory broker (it keeps none without a subscriber)."""

    def __init__(self, broker: MemoryBroker, topic: str) -> None:
        self.messages: list[Message] = []
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._run(broker, topic),))
        self._thread.start()
        assert self.ready.wait(5)

    async def _run(self, broker: MemoryBroker, topic: str) -> None:
        sub = await MemoryTransport(broker).subscribe(topic, "watch")
        self.ready.set()
        while not self._stop.is_set():
            try:
                message = await asyncio.wait_for(sub.receive(), 0.05)
            except asyncio.TimeoutError:
                continue
            self.messages.append(message)
            await sub.ack(message)
        await sub.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.mark.parametrize("topic", REFUSED)
def test_a_request_with_a_refused_reply_topic_is_not_run(broker: MemoryBroker, topic: str) -> None:
    handler = dispatcher()
    watch = Watch(broker, topic)
    try:
        with ListenerThread(Listener(handler, MemoryTransport(broker), "refusing")):
            publish(broker, "refusing", make_request(PAYLOAD, context="1", response_topic=topic))
            assert settled(broker, "refusing")
    finally:
        watch.close()
    assert handler.runs == 0
    assert watch.messages == []


def test_a_request_without_request_context_is_not_run(broker: MemoryBroker) -> None:
    handler = dispatcher()
    watch = Watch(broker, "replies_abcdefgh")
    message = make_request(PAYLOAD, context="1", response_topic="replies_abcdefgh")
    properties = {k: v for k, v in message.properties.items() if k != Prop.REQUEST_CONTEXT}
    try:
        with ListenerThread(Listener(handler, MemoryTransport(broker), "nocontext")):
            publish(broker, "nocontext", Message(message.payload, properties))
            assert settled(broker, "nocontext")
    finally:
        watch.close()
    assert handler.runs == 0
    assert watch.messages == []


class Refusing(MemoryTransport):
    """Fails to publish responses ``failures`` times with ``error``, then publishes them."""

    def __init__(
        self, broker: MemoryBroker, error: Callable[[], DemessagingError], failures: int
    ) -> None:
        super().__init__(broker)
        self.error = error
        self.failures = failures
        self.tries = 0

    async def publish(self, topic: str, message: Message) -> None:
        if message.properties.get(Prop.MESSAGE_TYPE) == MessageType.RESPONSE.value:
            self.tries += 1
            if self.tries <= self.failures:
                raise self.error()
        await super().publish(topic, message)


def serve_one(
    broker: MemoryBroker, transport: MemoryTransport, topic: str, **options: object
) -> tuple[Counting, list[Message], list[Message]]:
    """Serve one request replying to ``replies_x``; the runs, the replies, the dead letters."""
    handler = dispatcher()
    replies, letters = Watch(broker, "replies_x"), Watch(broker, f"{topic}-DLQ")
    try:
        with ListenerThread(Listener(handler, transport, topic, **options)):  # type: ignore[arg-type]
            publish(broker, topic, make_request(PAYLOAD, context="1", response_topic="replies_x"))
            assert settled(broker, topic)
            time.sleep(0.2)  # a redelivery would run it again by now
    finally:
        replies.close()
        letters.close()
    return handler, replies.messages, letters.messages


def test_a_reply_refused_for_good_is_dropped_after_one_run(broker: MemoryBroker) -> None:
    transport = Refusing(
        broker, lambda: AuthenticationError("publishing: AuthorizationError"), 10**6
    )
    handler, replies, letters = serve_one(broker, transport, "forbidden")
    assert (handler.runs, transport.tries, replies, letters) == (1, 1, [], [])


def test_a_reply_that_keeps_failing_goes_to_the_dead_letter_topic(broker: MemoryBroker) -> None:
    transport = Refusing(broker, lambda: TransportError("publishing: 5 Timeout"), 10**6)
    handler, replies, letters = serve_one(broker, transport, "stuck", reply_retries=3)
    assert (handler.runs, transport.tries, replies) == (1, 3, [])
    [letter] = letters
    assert letter.payload == PAYLOAD
    assert letter.properties[REAL_TOPIC] == "stuck"
    assert letter.properties[ATTEMPTS] == "3"
    assert "Timeout" in letter.properties[REASON]
    assert letter.properties[Prop.RESPONSE_TOPIC] == "replies_x"


def test_a_reply_that_fails_for_a_while_is_sent_again_without_running_again(
    broker: MemoryBroker,
) -> None:
    transport = Refusing(broker, lambda: TransportError("broker went away"), 2)
    handler, replies, letters = serve_one(broker, transport, "flaky-replies")
    assert (handler.runs, transport.tries, letters) == (1, 3, [])
    [reply] = replies
    assert reply.properties[Prop.REQUEST_CONTEXT] == "1"
    assert reply.payload == b"3.0"


def test_failures_are_classified() -> None:
    assert permanent(AuthenticationError("x"))
    assert permanent(TransportError("creating a producer failed: 21 InvalidTopicName"))
    assert permanent(TransportError("TopicNotFound"))
    assert permanent(ProtocolError("x"))
    assert not permanent(TransportError("5 Timeout"))
    assert not permanent(TransportError("connection closed"))


def test_unsent_replies_are_bounded() -> None:
    unsent = Unsent(size=3, budget=10)
    reply = ("t", Message(b"12345"))
    for key in "abcd":
        assert unsent.failed(key, reply) == 1
    assert len(unsent) == 3
    assert unsent.reply("a") is None  # over the byte budget
    assert unsent.reply("b") is None
    assert unsent.reply("d") == reply
    assert unsent.failed("d", reply) == 2
    unsent.forget("d")
    assert unsent.reply("d") is None
    assert unsent.failed("d", reply) == 1


def test_a_request_in_pieces_goes_whole_to_the_dead_letter_topic(broker: MemoryBroker) -> None:
    transport = Refusing(broker, lambda: TransportError("publishing: 5 Timeout"), 10**6)
    handler = dispatcher()
    letters = Watch(broker, "chunked-DLQ")
    sender = MemoryTransport(broker)
    sender.max_message_size = 64
    values = [float(v) for v in range(300)]
    try:
        with ListenerThread(Listener(handler, transport, "chunked", reply_retries=2)):
            settings = Settings(encoding="json")
            client = Client("chunked", transport=sender, settings=settings, timeout=3)
            with client, pytest.raises(CallTimeoutError):
                client.call({"func_name": "total", "values": values})
            assert settled(broker, "chunked")
    finally:
        letters.close()
    [letter] = letters.messages
    assert (handler.runs, transport.tries) == (1, 2)
    assert json.loads(letter.payload) == {"func_name": "total", "values": values}
    assert Prop.NUM_FRAGMENTS not in letter.properties
    assert letter.properties[ORIGIN_MESSAGE_ID]
    assert {t for t in broker.subscriptions() if "_fragments_" in t} == set()
