"""Cutting payloads into pieces and putting them back together."""

from __future__ import annotations

import asyncio
import base64
import random

import pytest

from demessaging.errors import ProtocolError
from demessaging.protocol import Message, Prop
from demessaging.protocol.envelope import fragment_count
from demessaging.protocol.fragments import (
    HEAD_SIZE,
    Reassembler,
    Reassembly,
    send_pieces,
    split,
)


def message(size: int) -> Message:
    return Message(payload=random.Random(size).randbytes(size), properties={"requestContext": "x"})


@pytest.mark.parametrize("size", [0, 1, 99, 100, 101, 299, 300, 1000, 4097])
@pytest.mark.parametrize("limit", [3, 100, 128])
def test_split_and_reassemble_in_any_order(size: int, limit: int) -> None:
    whole = message(size)
    pieces = list(split(whole, limit))
    assert all(len(p.payload) <= limit for p in pieces)
    if size <= limit:
        assert pieces == [whole]
        return
    assert all(len(p.payload) % 3 == 0 for p in pieces[:-1])
    assert {fragment_count(p) for p in pieces} == {len(pieces)}
    random.Random(limit).shuffle(pieces)
    reassembler = Reassembler(max_bytes=10_000)
    results = [reassembler.add("k", p) for p in pieces]
    assert results[:-1] == [None] * (len(pieces) - 1)
    assert results[-1] == whole
    assert reassembler.held == 0


def test_pieces_base64_encoded_one_by_one_concatenate() -> None:
    whole = message(1000)
    text = "".join(base64.b64encode(p.payload).decode() for p in split(whole, 100))
    assert base64.b64decode(text) == whole.payload


def test_only_the_head_gets_the_extra_properties() -> None:
    heads = [
        p
        for p in split(message(500), 100, extra={Prop.FRAGMENTS_TOPIC: "side"})
        if Prop.FRAGMENTS_TOPIC in p.properties
    ]
    assert [p.properties[Prop.FRAGMENT] for p in heads] == ["0"]


def test_a_redelivered_piece_is_taken_once() -> None:
    pieces = split(message(300), 100)
    reassembly = Reassembly(300, len(pieces))
    assert not reassembly.add(pieces[0])
    assert not reassembly.add(pieces[0])
    for piece in pieces[1:]:
        reassembly.add(piece)
    assert reassembly.message().payload == message(300).payload


def test_pieces_without_offsets_are_joined_in_order() -> None:
    """As DASF sends them: fragment and num_fragments only."""
    payload = b"abcdefghij"
    pieces = [
        Message(
            payload=payload[i : i + 4], properties={Prop.FRAGMENT: str(n), Prop.NUM_FRAGMENTS: "3"}
        )
        for n, i in enumerate(range(0, 10, 4))
    ]
    reassembler = Reassembler(max_bytes=100)
    assert reassembler.add("k", pieces[2]) is None
    assert reassembler.add("k", pieces[0]) is None
    result = reassembler.add("k", pieces[1])
    assert result is not None
    assert result.payload == payload


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({Prop.FRAGMENT: "7"}, "out of range"),
        ({Prop.FRAGMENT: "x"}, "not a number"),
        ({Prop.FRAGMENT_OFFSET: "290"}, "overflows"),
        ({Prop.NUM_FRAGMENTS: "0"}, "not positive"),
        ({Prop.NUM_FRAGMENTS: "many"}, "not a number"),
    ],
)
def test_malformed_pieces_are_refused(change: dict[str, str], error: str) -> None:
    piece = split(message(300), 100)[1]
    bad = Message(payload=piece.payload, properties={**piece.properties, **change})
    reassembler = Reassembler(max_bytes=1000)
    with pytest.raises(ProtocolError, match=error):
        reassembler.add("k", bad)
    assert reassembler.held == 0


def test_the_memory_bound_holds_across_payloads() -> None:
    reassembler = Reassembler(max_bytes=500)
    assert reassembler.add("a", split(message(300), 100)[0]) is None
    with pytest.raises(ProtocolError, match="300 bytes does not fit in the 500 bytes"):
        reassembler.add("b", split(message(300), 100)[0])
    assert reassembler.held == 300
    reassembler.discard("a")
    assert reassembler.add("b", split(message(300), 100)[0]) is None


def test_stale_partial_payloads_expire() -> None:
    reassembler = Reassembler(max_bytes=1000, timeout=0.0)
    reassembler.add("old", split(message(300), 100)[0])
    assert reassembler.expire() == ["old"]
    assert reassembler.held == 0


def test_pieces_are_sent_with_a_bounded_number_under_way() -> None:
    pieces = split(message(3000), 100)
    sent: list[int] = []
    running = peak = 0

    async def send(piece: Message) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.001 * (int(piece.properties[Prop.FRAGMENT]) % 3))
        sent.append(int(piece.properties[Prop.FRAGMENT]))
        running -= 1

    asyncio.run(send_pieces(send, pieces, start=1, window=4))
    assert sorted(sent) == list(range(1, len(pieces)))
    assert peak == 4


def test_a_failed_send_stops_the_others() -> None:
    pieces = split(message(3000), 100)
    cancelled = 0

    async def send(piece: Message) -> None:
        nonlocal cancelled
        if piece.properties[Prop.FRAGMENT] == "2":
            raise OSError("broker gone")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled += 1
            raise

    with pytest.raises(OSError, match="broker gone"):
        asyncio.run(asyncio.wait_for(send_pieces(send, pieces, window=4), 5))
    assert cancelled == 3  # the other three under way


@pytest.mark.parametrize("size", [100, 128, 129, 1000])
def test_pieces_of_their_own_size_above_the_limit(size: int) -> None:
    whole = message(size)
    pieces = list(split(whole, 128, piece_size=30))
    if size <= 128:  # fits in one message: not cut, although larger than a piece
        assert pieces == [whole]
        return
    assert [len(p.payload) for p in pieces[:-1]] == [30] * (len(pieces) - 1)
    assert b"".join(p.payload for p in pieces) == whole.payload
    assert list(split(whole, 128, piece_size=1000)) == list(split(whole, 128))  # at most limit


@pytest.mark.parametrize("size", [129, 130, 131, 400, 1000])
@pytest.mark.parametrize("head", [1, 3, 10, 30, 500])
def test_a_smaller_head_and_the_pieces_reassemble_in_any_order(size: int, head: int) -> None:
    whole = message(size)
    pieces = list(split(whole, 128, piece_size=30, head_size=head))
    expected_head = max(3, min(head - head % 3, 30))  # a multiple of 3, at most a piece
    assert len(pieces[0].payload) == expected_head
    assert [len(p.payload) for p in pieces[1:-1]] == [30] * (len(pieces) - 2)
    assert 0 < len(pieces[-1].payload) <= 30
    assert [int(p.properties[Prop.FRAGMENT_OFFSET]) % 3 for p in pieces] == [0] * len(pieces)
    assert {fragment_count(p) for p in pieces} == {len(pieces)}
    random.Random(size + head).shuffle(pieces)
    reassembler = Reassembler(max_bytes=10_000)
    results = [reassembler.add("k", p) for p in pieces]
    assert results[-1] == whole
    assert results[:-1] == [None] * (len(pieces) - 1)


def test_a_request_in_pieces_goes_with_a_small_head() -> None:
    size = 3 * (1 << 20)
    pieces = split(
        message(size), 1 << 20, extra={Prop.FRAGMENTS_TOPIC: "side"}, head_size=HEAD_SIZE
    )
    assert len(pieces[0].payload) == HEAD_SIZE < 1 << 20
    assert [len(p.payload) for p in pieces[1:-1]] == [(1 << 20) - (1 << 20) % 3] * (len(pieces) - 2)
    assert b"".join(p.payload for p in pieces) == message(size).payload
