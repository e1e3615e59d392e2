"""Reassembly of payloads in pieces: memory grows with the bytes that came, claims are checked."""

from __future__ import annotations

import random
import tracemalloc
from collections.abc import Iterator

import pytest

from demessaging.errors import ProtocolError
from demessaging.protocol import Message, Prop
from demessaging.protocol.fragments import Reassembler, Reassembly, split

MIB = 1 << 20


def whole(size: int) -> Message:
    return Message(payload=random.Random(size).randbytes(size), properties={"requestContext": "x"})


def claim(size: int, count: int) -> Message:
    """A head claiming a payload of ``size`` bytes in ``count`` pieces, with 100 bytes of it."""
    return Message(
        payload=b"x" * 100,
        properties={
            Prop.FRAGMENT: "0",
            Prop.NUM_FRAGMENTS: str(count),
            Prop.FRAGMENT_OFFSET: "0",
            Prop.PAYLOAD_SIZE: str(size),
        },
    )


class Traced:
    """Bytes allocated (now and at the peak) since the block began, by tracemalloc."""

    def __init__(self) -> None:
        self.peak = self.current = 0

    def snap(self) -> int:
        self.current, self.peak = tracemalloc.get_traced_memory()
        return self.current


@pytest.fixture
def traced() -> Iterator[Traced]:
    tracemalloc.start()
    try:
        yield Traced()
    finally:
        tracemalloc.stop()


def test_a_claimed_size_is_not_allocated_before_its_bytes_come(traced: Traced) -> None:
    reassembly = Reassembly(256 * MIB, 1 << 20)
    assert not reassembly.add(claim(256 * MIB, 1 << 20))
    traced.snap()
    assert traced.peak < MIB  # not the 256 MiB claimed


def test_the_clients_reassembler_allocates_nothing_ahead_either(traced: Traced) -> None:
    reassembler = Reassembler(max_bytes=1 << 30)
    assert reassembler.add("k", claim(256 * MIB, 1 << 20)) is None
    traced.snap()
    assert traced.peak < MIB
    assert reassembler.held == 256 * MIB  # what it counts against its bound: the claim


@pytest.mark.parametrize("order", ["in order", "reversed", "shuffled"])
def test_memory_grows_with_the_bytes_received_and_the_end_is_not_copied(
    traced: Traced, order: str
) -> None:
    size = 8 * MIB
    message = whole(size)
    pieces = list(split(message, MIB // 8))  # 65 pieces, made before tracing starts
    if order == "reversed":
        pieces.reverse()
    elif order == "shuffled":
        random.Random(1).shuffle(pieces)
    tracemalloc.reset_peak()
    start = traced.snap()
    reassembly = Reassembly(size, len(pieces))
    half = len(pieces) // 2
    for piece in pieces[:half]:
        assert not reassembly.add(piece)
    # half the bytes came: about half the payload is held, not all of it
    assert traced.snap() - start < 0.6 * size
    assert reassembly.received == sum(len(p.payload) for p in pieces[:half])
    for piece in pieces[half:]:
        reassembly.add(piece)
    assert reassembly.complete
    result = reassembly.message()
    traced.snap()
    assert traced.peak - start < 1.35 * size  # never twice the payload
    assert result.payload == message.payload
    assert len(result.payload) == size


@pytest.mark.parametrize(
    ("size", "count"),
    [(1024, 1_000_000_000), (1024, 1025), (0, 2), (10, 11)],
)
def test_more_pieces_than_the_payload_has_bytes_are_refused_at_once(size: int, count: int) -> None:
    with pytest.raises(ProtocolError, match=f"{count} pieces for a payload of {size} bytes"):
        Reassembly(size, count)
    reassembler = Reassembler(max_bytes=1 << 30)
    with pytest.raises(ProtocolError, match=f"{count} pieces for a payload of {size} bytes"):
        reassembler.add("k", claim(size, count))
    assert reassembler.held == 0


def test_pieces_without_a_size_may_not_outnumber_the_bound() -> None:
    """DASF sends no payload_size; a claimed count still has to fit the reassembler's bound."""
    reassembler = Reassembler(max_bytes=1000)
    piece = Message(b"abc", {Prop.FRAGMENT: "0", Prop.NUM_FRAGMENTS: "1001"})
    with pytest.raises(ProtocolError, match="1001 pieces for at most 1000 bytes"):
        reassembler.add("k", piece)


def piece(index: int, count: int, offset: int, payload: bytes, size: int) -> Message:
    return Message(
        payload=payload,
        properties={
            Prop.FRAGMENT: str(index),
            Prop.NUM_FRAGMENTS: str(count),
            Prop.FRAGMENT_OFFSET: str(offset),
            Prop.PAYLOAD_SIZE: str(size),
        },
    )


@pytest.mark.parametrize(
    ("pieces", "error"),
    [
        ([(0, 0, b"abcd"), (1, 2, b"cdef")], "fragment 1 overlaps another"),
        ([(2, 6, b"gh"), (1, 2, b"cdef"), (0, 0, b"abcd")], "overlap"),
        ([(1, 4, b"ef"), (2, 4, b"efgh")], "fragment 2 overlaps another"),
        ([(0, 0, b"ab"), (1, 4, b"ef"), (2, 6, b"gh")], "leave gaps"),
        ([(0, 0, b"abcd"), (1, 4, b"efgh"), (2, 8, b"")], "fragment 2 is empty"),
    ],
)
def test_pieces_that_overlap_or_leave_gaps_are_refused(
    pieces: list[tuple[int, int, bytes]], error: str
) -> None:
    reassembly = Reassembly(8, 3)
    *first, (index, offset, payload) = pieces
    for earlier in first:
        reassembly.add(piece(earlier[0], 3, earlier[1], earlier[2], 8))
    with pytest.raises(ProtocolError, match=error):
        reassembly.add(piece(index, 3, offset, payload, 8))


def test_pieces_out_of_order_are_put_in_place() -> None:
    reassembly = Reassembly(8, 3)
    assert not reassembly.add(piece(2, 3, 6, b"gh", 8))
    assert not reassembly.add(piece(0, 3, 0, b"abc", 8))
    assert not reassembly.add(piece(2, 3, 6, b"gh", 8))  # redelivered
    assert reassembly.add(piece(1, 3, 3, b"def", 8))
    assert bytes(reassembly.message().payload) == b"abcdefgh"
