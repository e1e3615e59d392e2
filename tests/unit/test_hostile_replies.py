"""A client survives malformed messages on its reply topic: each is dropped alone."""

from __future__ import annotations

import asyncio
import logging

import pytest

from demessaging.client import Client
from demessaging.config import Settings
from demessaging.errors import ProtocolError
from demessaging.message import JSON, Message, MessageType, Prop, Status
from demessaging.protocol.replies import parse_reply
from demessaging.transport.memory import MemoryBroker, MemoryTransport

#: Replies a buggy or hostile peer may send for a pending call (its context is filled in).
HOSTILE: list[dict[str, str]] = [
    {Prop.MESSAGE_TYPE: "response", Prop.NUM_FRAGMENTS: "2", Prop.PAYLOAD_SIZE: "²"},
    {Prop.MESSAGE_TYPE: "response", Prop.NUM_FRAGMENTS: "²"},
    {Prop.MESSAGE_TYPE: "response", Prop.NUM_FRAGMENTS: "0"},
    {Prop.MESSAGE_TYPE: "response", Prop.NUM_FRAGMENTS: "2", Prop.FRAGMENT: "²"},
    {Prop.MESSAGE_TYPE: "response", Prop.NUM_FRAGMENTS: "2", Prop.FRAGMENT: "7"},
    {Prop.MESSAGE_TYPE: "response", Prop.NUM_FRAGMENTS: "2", Prop.FRAGMENT_OFFSET: "-1"},
    {Prop.MESSAGE_TYPE: "response", Prop.NUM_FRAGMENTS: "9" * 40},
    {Prop.MESSAGE_TYPE: "item", Prop.SEQUENCE: "²"},
    {Prop.MESSAGE_TYPE: "nonsense"},
    {},  # no messageType: not a reply at all
    {Prop.MESSAGE_TYPE: "cancel"},
    {Prop.MESSAGE_TYPE: "log"},
]


def test_hostile_replies_fail_no_pending_call_and_leave_the_reader_alive(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = MemoryBroker()
    settings = Settings(topic="hostile", encoding="json")
    client = Client(settings=settings, transport=MemoryTransport(broker), timeout=10.0)

    async def scenario() -> tuple[list[object], list[str]]:
        backend = MemoryTransport(broker)
        requests = await backend.subscribe("hostile", "backend", shared=True)
        calls = [asyncio.ensure_future(client.acall({"func_name": "f", "x": i})) for i in (1, 2)]
        received = [await asyncio.wait_for(requests.receive(), 5) for _ in calls]
        for request in received:
            context = request.properties[Prop.REQUEST_CONTEXT]
            topic = request.properties[Prop.RESPONSE_TOPIC]
            for props in HOSTILE:
                hostile = Message(b"\xff" * 8, {**props, Prop.REQUEST_CONTEXT: context})
                await backend.publish(topic, hostile)
        await asyncio.sleep(0.2)  # the reader has seen every hostile message
        assert not any(call.done() for call in calls)
        for request in received:
            context = request.properties[Prop.REQUEST_CONTEXT]
            reply = Message(
                f'"answer {context}"'.encode(),
                {
                    Prop.MESSAGE_TYPE: MessageType.RESPONSE.value,
                    Prop.REQUEST_CONTEXT: context,
                    Prop.STATUS: Status.SUCCESS.value,
                },
            )
            await backend.publish(request.properties[Prop.RESPONSE_TOPIC], reply)
        results = await asyncio.wait_for(asyncio.gather(*calls), 5)
        await backend.close()
        return results, [r.properties[Prop.REQUEST_CONTEXT] for r in received]

    try:
        with caplog.at_level(logging.DEBUG, logger="demessaging.client"):
            results, contexts = client.run(scenario())
        assert sorted(map(str, results)) == sorted(f"answer {context}" for context in contexts)
        reader = client._connection._reader
        assert reader is not None
        assert not reader.done()
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        client.close()


def test_a_reply_is_parsed_into_its_fields() -> None:
    reply = parse_reply(
        Message(
            b"x",
            {
                Prop.MESSAGE_TYPE: "item",
                Prop.REQUEST_CONTEXT: "7",
                Prop.STATUS: "success",
                Prop.CONTENT_TYPE: "application/vnd.demessaging.msgpack",
                Prop.API_FINGERPRINT: "abc",
                Prop.STREAM: "end",
                Prop.SEQUENCE: "3",
                Prop.NUM_FRAGMENTS: "4",
                Prop.FRAGMENT: "2",
                Prop.FRAGMENT_OFFSET: "6",
                Prop.PAYLOAD_SIZE: "12",
            },
        )
    )
    assert (reply.kind, reply.context, reply.status, reply.failed) == (
        MessageType.ITEM,
        "7",
        "success",
        False,
    )
    assert (reply.content_type, reply.api_fingerprint, reply.stream_end) == (
        "application/vnd.demessaging.msgpack",
        "abc",
        True,
    )
    assert (reply.sequence, reply.count, reply.fragment) == (3, 4, 2)
    assert (reply.fragment_offset, reply.payload_size) == (6, 12)
    whole = reply.whole(Message(b"whole", {}))
    assert (whole.count, whole.payload_size, whole.payload) == (1, None, b"whole")


def test_a_plain_dasf_reply_has_defaults() -> None:
    reply = parse_reply(Message(b"", {Prop.MESSAGE_TYPE: "pong", Prop.REQUEST_CONTEXT: "1"}))
    assert (reply.status, reply.content_type, reply.count, reply.sequence) == (None, JSON, 1, None)


@pytest.mark.parametrize("properties", HOSTILE[:-1], ids=repr)
def test_malformed_replies_are_refused(properties: dict[str, str]) -> None:
    with pytest.raises(ProtocolError):
        parse_reply(Message(b"", {**properties, Prop.REQUEST_CONTEXT: "1"}))


@pytest.mark.parametrize(
    "properties",
    [
        {Prop.MESSAGE_TYPE: "response"},  # no requestContext
        {Prop.MESSAGE_TYPE: "request", Prop.REQUEST_CONTEXT: "1", Prop.RESPONSE_TOPIC: "t"},
        {Prop.MESSAGE_TYPE: "response", Prop.REQUEST_CONTEXT: "1", Prop.FRAGMENT: "1"},
    ],
)
def test_what_is_not_a_reply_is_refused(properties: dict[str, str]) -> None:
    with pytest.raises(ProtocolError):
        parse_reply(Message(b"", properties))
