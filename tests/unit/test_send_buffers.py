"""Requests with arrays are sent in pieces cut from their buffers: the same bytes on the wire,
and no whole copy of the payload in the client."""

from __future__ import annotations

import asyncio
import threading
import tracemalloc
import zlib
from typing import Any

import numpy as np
import pytest

from demessaging.backend.replies import Replies
from demessaging.client import Client
from demessaging.message import Message, MessageType, Prop
from demessaging.protocol.envelope import Query, Request, parse_request
from demessaging.protocol.fragments import HEAD_SIZE, Outgoing, split
from demessaging.protocol.outgoing import reply_to
from demessaging.serialization import msgpack
from demessaging.serialization.buffers import Buffers, cut, joined
from demessaging.transport.memory import MemoryBroker, MemoryTransport

MIB = 1 << 20


def values() -> list[Any]:
    """Arrays of several dtypes, byte orders and layouts, alone and mixed with other values."""
    grid = np.arange(60, dtype="<f8").reshape(6, 10)
    return [
        np.arange(1000.0),
        np.arange(24, dtype=">i4").reshape(2, 3, 4),
        np.asfortranarray(grid),  # sent as the transpose, without a copy
        grid[::2, ::3],  # not contiguous: the encoder copies it
        grid.T[1:4],  # not contiguous either
        np.array([True, False, True]),
        np.arange(7).astype("M8[ns]"),
        np.array([15, -2], dtype="m8[s]"),
        np.array(["a", "bcd"]),
        np.array([b"x", b"yz"]),
        np.arange(5, dtype=np.complex64),
        np.float32(2.5) * np.ones(()),  # zero dimensions
        np.zeros((0, 3)),  # no bytes at all
        {"func_name": "f", "a": np.arange(3.0), "b": [np.zeros(0), np.arange(9, dtype="u1")]},
        {"func_name": "f", "empty_last": np.zeros(0, dtype="i2")},
        {"func_name": "f", "values": [1, 2.5, "text", None]},  # no arrays
    ]


@pytest.mark.parametrize("value", values(), ids=range(len(values())))
def test_buffers_hold_the_bytes_of_the_one_piece_encoding(value: Any) -> None:
    expected = bytes(msgpack.encode(value))
    buffers = msgpack.encode_buffers(value)
    assert len(buffers) == len(expected)
    assert buffers.join() == bytes(buffers) == joined(buffers) == expected
    np.testing.assert_equal(msgpack.decode(buffers.join()), msgpack.decode(expected))
    for step in (1, 5, 63, 64, 1000):  # cut anywhere, across buffers or within one
        assert b"".join(cut(buffers, i, i + step) for i in range(0, len(buffers), step)) == expected


@pytest.mark.parametrize("value", values(), ids=range(len(values())))
@pytest.mark.parametrize("limit", [30, 64, 999])
def test_the_pieces_on_the_wire_are_those_of_the_joined_payload(value: Any, limit: int) -> None:
    properties = {Prop.REQUEST_CONTEXT: "c", Prop.RESPONSE_TOPIC: "r"}
    extra = {Prop.FRAGMENTS_TOPIC: "side"}
    joined_pieces = split(Message(bytes(msgpack.encode(value)), properties), limit, extra)
    cut_pieces = split(Outgoing(msgpack.encode_buffers(value), properties), limit, extra)
    assert [(p.payload, dict(p.properties)) for p in cut_pieces] == [
        (p.payload, dict(p.properties)) for p in joined_pieces
    ]
    assert all(isinstance(p.payload, bytes) for p in cut_pieces)


def test_a_contiguous_array_is_not_copied_into_the_buffers() -> None:
    array = np.arange(MIB // 8, dtype=np.float64)
    buffers = msgpack.encode_buffers({"values": array})
    (view,) = [part for part in buffers.parts if len(part) == array.nbytes]
    assert np.shares_memory(np.frombuffer(view, dtype=np.uint8), array)


def test_buffers_cut_within_and_across_their_parts() -> None:
    buffers = Buffers([b"abc", bytearray(b""), memoryview(b"defg"), b"h"])
    assert len(buffers) == 8
    assert buffers.cut(0, 8) == b"abcdefgh"
    assert buffers.cut(2, 5) == b"cde"
    assert buffers.cut(3, 7) == b"defg"
    assert buffers.cut(6, 100) == b"gh"
    assert buffers.cut(5, 5) == buffers.cut(9, 12) == b""
    assert len(buffers.parts) == 3  # the empty one is left out
    only = b"one"
    assert Buffers([only]).join() is only  # a payload without arrays is not copied to go whole


class _Wire(MemoryTransport):
    """A memory transport whose broker takes the pieces of side topics off the wire, as an
    out-of-process broker would: it keeps their CRC-32 by offset and drops them, so that the
    memory measured is the client's alone."""

    def __init__(self, broker: MemoryBroker) -> None:
        super().__init__(broker)
        self.max_message_size = 4 * MIB
        self.piece_size = MIB
        self.pieces: dict[int, int] = {}

    async def publish(self, topic: str, message: Message) -> None:
        if "_fragments_" in topic:
            self.pieces[int(message.properties[Prop.FRAGMENT_OFFSET])] = zlib.crc32(message.payload)
        else:
            await super().publish(topic, message)


class _Backend:
    """Answers the ping, and a request once its head came, in a thread of its own."""

    def __init__(self, broker: MemoryBroker, topic: str) -> None:
        self.transport = MemoryTransport(broker)
        self.topic = topic
        self.head = b""
        self.failure: BaseException | None = None
        self.ready = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._run(),))

    def __enter__(self) -> _Backend:
        self._thread.start()
        assert self.ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._thread.join(30)
        self._loop.close()
        assert not self._thread.is_alive()

    async def _run(self) -> None:
        try:
            requests = await self.transport.subscribe(self.topic, "backend", shared=True)
            self.ready.set()
            while True:
                message = await asyncio.wait_for(requests.receive(), 20)
                await requests.ack(message)
                incoming = parse_request(message)
                if isinstance(incoming, Query):
                    await self._reply(incoming, MessageType.PONG, b"")
                    continue
                self.head = bytes(message.payload)
                await self._reply(incoming, MessageType.RESPONSE, bytes(msgpack.encode(1.0)))
                return
        except BaseException as exc:  # seen by the test
            self.failure = exc
            self.ready.set()

    async def _reply(self, incoming: Request | Query, kind: MessageType, payload: bytes) -> None:
        topic, reply = reply_to(
            incoming,
            payload,
            source_topic=self.topic,
            message_type=kind,
            extra={Prop.CONTENT_TYPES: msgpack.CONTENT_TYPE},
        )
        await self.transport.publish(topic, reply)


def test_a_large_request_is_sent_without_a_whole_copy_of_its_payload() -> None:
    """The client's peak above the array during a call with 64 MiB stays under 0.3 of it (a
    whole copy of the payload would be 1.0): the request goes in 1 MiB pieces cut from views
    of the array, through a broker that takes 4 MiB in one message."""
    broker = MemoryBroker()
    wire = _Wire(broker)
    array = np.random.default_rng(1).random(64 * MIB // 8)
    with _Backend(broker, "big") as backend, Client("big", transport=wire, timeout=60) as client:
        client.ping()
        tracemalloc.start()
        try:
            assert client.call({"func_name": "total", "values": array}) == 1.0
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert backend.failure is None
    sent = bytes(msgpack.encode({"func_name": "total", "values": array}))
    step = MIB - MIB % 3  # pieces are cut at multiples of 3 bytes
    assert backend.head == sent[:HEAD_SIZE]  # the same bytes on the wire; a small head
    rest = range(HEAD_SIZE, len(sent), step)
    assert wire.pieces == {at: zlib.crc32(sent[at : at + step]) for at in rest}
    assert peak < 0.3 * array.nbytes, f"{peak / MIB:.1f} MiB above the array of 64 MiB"


class _Sink(MemoryTransport):
    """Takes every message off the wire, keeping the CRC-32 of each payload by its offset."""

    def __init__(self) -> None:
        super().__init__(MemoryBroker())
        self.max_message_size = 4 * MIB
        self.piece_size = MIB
        self.pieces: dict[int, int] = {}

    async def publish(self, topic: str, message: Message) -> None:
        offset = int(message.properties.get(Prop.FRAGMENT_OFFSET, "0"))
        self.pieces[offset] = zlib.crc32(message.payload)


def test_a_large_reply_goes_in_pieces_cut_from_its_encoding_without_another_copy() -> None:
    """The backend encodes a result once, in the worker that ran the function (so that the
    reply cannot change while it goes), and cuts its pieces from that encoding: sending 64 MiB
    allocates a few pieces at a time, not a second payload."""
    payload = msgpack.encode(np.random.default_rng(2).random(64 * MIB // 8))
    reply = Message(payload, {Prop.REQUEST_CONTEXT: "1", Prop.MESSAGE_TYPE: "response"})
    sink = _Sink()
    tracemalloc.start()
    try:
        asyncio.run(Replies(sink, "topic").send("reply", reply))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    step = MIB - MIB % 3
    assert sink.pieces == {
        at: zlib.crc32(payload[at : at + step]) for at in range(0, len(payload), step)
    }
    assert peak < 0.3 * len(payload), f"{peak / MIB:.1f} MiB to send a reply of 64 MiB"
