"""Fragmentation: payloads larger than the broker takes in one message travel in pieces.

Every piece carries the properties of the whole message plus::

    fragment        index of the piece, from 0          (as DASF writes it)
    num_fragments   number of pieces                     (as DASF writes it)
    fragment_offset where the piece starts in the payload (demessaging)
    payload_size    size of the whole payload            (demessaging)

Pieces are cut at multiples of 3 bytes, so that pieces base64-encoded one by one (as on the
WebSocket API) still concatenate to the base64 of the whole payload.

Replies go piece by piece to the caller's own response topic. Requests cannot, because a
shared subscription would scatter the pieces over backend instances: the client first creates
a subscription on a side topic (``fragments_topic``), then publishes piece 0 (the *head*,
naming the side topic; smaller than the others, :data:`HEAD_SIZE`) to the request topic and,
at the same time, pieces 1..n-1 to the side topic, so that a backend reads pieces while later
ones are still being sent. Pieces may differ in size: ``fragment_offset`` places each. A side topic
serves one request; clients subscribe the next one, and make its producer, ahead of need, as
creating either takes tens of milliseconds on Apache Pulsar. The backend that takes the head
reads the rest from the side topic and acknowledges everything only after it replied, so a
crash means redelivery of the head and of the unacknowledged pieces.

A client that gives up sending (a timeout, a cancellation, a broker error) after the head may
have gone out publishes an empty message with the property ``aborted`` to the side topic
(:func:`abort_marker`); the backend then stops waiting, and deletes the side subscription.
A client that dies mid-upload cannot: its backend waits for the pieces until the request's
upload deadline (60 s after it took the head, by default) and then gives the request up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import overload

from ..errors import ProtocolError
from ..serialization.buffers import Buffers, cut
from .envelope import Message, Prop, fragment_count, natural, payload_size_of

__all__ = [
    "check_count",
    "DEFAULT_MAX_PAYLOAD",
    "PIECE_PREFETCH",
    "FRAGMENT_SUBSCRIPTION",
    "HEAD_SIZE",
    "Outgoing",
    "Pieces",
    "Reassembler",
    "Reassembly",
    "abort_marker",
    "is_abort_marker",
    "send_pieces",
    "side_topic",
    "split",
    "whole",
]

#: The subscription that holds the pieces of a request on its side topic.
FRAGMENT_SUBSCRIPTION = "demessaging-fragments"
#: The largest payload sent or reassembled unless configured otherwise (1 GiB).
DEFAULT_MAX_PAYLOAD = 1 << 30
#: How many messages a consumer of pieces lets the broker push ahead. Modest on purpose: what
#: the consumers of one connection let come must stay below pulsar-lite's write-buffer mark
#: (:data:`demessaging.embedded.WRITE_BUFFER`), or pulsar-lite 0.2 holds pieces back until the
#: subscription's next event, which may never come; 16 is as fast as 1000 elsewhere.
PIECE_PREFETCH = 16
_PIECE_PROPS = (Prop.FRAGMENT, Prop.NUM_FRAGMENTS, Prop.FRAGMENT_OFFSET, Prop.PAYLOAD_SIZE)


def side_topic(topic: str, name: str) -> str:
    """A side topic called ``name`` for the pieces of a request sent to ``topic``."""
    return f"{topic}_fragments_{name}"


def check_count(count: int, size: int) -> None:
    """Refuse ``count`` pieces for a payload of ``size`` bytes: each piece carries one at least.

    Raises
    ------
    ProtocolError
        If ``count`` is more than ``size`` allows.
    """
    if count > max(1, size):
        raise ProtocolError(f"{count} pieces for a payload of {size} bytes")


def abort_marker() -> Message:
    """What a client sends to a side topic when it gives up sending the pieces there."""
    return Message(b"", {Prop.ABORTED: "true"})


def is_abort_marker(message: Message) -> bool:
    """Whether a message of a side topic says that the client gave up sending the pieces."""
    return Prop.ABORTED in message.properties


@dataclass(frozen=True)
class Outgoing:
    """A message to send whose payload is a sequence of buffers (:mod:`..serialization.buffers`).

    It goes in pieces cut from the buffers, or, if it goes whole, joined (:meth:`whole`).
    """

    payload: Buffers
    properties: Mapping[str, str] = field(default_factory=dict)

    def whole(self) -> Message:
        """The message with its payload joined into one bytes object."""
        return Message(payload=self.payload.join(), properties=self.properties)


def whole(message: Message | Outgoing) -> Message:
    """``message`` as one message: an :class:`Outgoing` joined, a :class:`Message` as it is."""
    return message.whole() if isinstance(message, Outgoing) else message


class Pieces(Sequence[Message]):
    """The pieces of a message, each cut from it when asked for (no copy of the whole)."""

    def __init__(
        self,
        message: Message | Outgoing,
        limit: int,
        extra: Mapping[str, str] | None,
        head: int | None = None,
    ) -> None:
        self._message = message
        self._payload = message.payload
        self._size = len(self._payload)
        self._step = max(3, limit - limit % 3)
        self._head = self._step if head is None else max(3, min(head - head % 3, self._step))
        self._count = 1 + max(0, -(-(self._size - self._head) // self._step))
        self._extra = extra or {}
        # only the head names the reply topic: dasf-broker-django fails a message whose
        # response_topic answers for another topic (a request's side topic)
        self._rest = {k: v for k, v in message.properties.items() if k != Prop.RESPONSE_TOPIC}

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> Message: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Message]: ...

    def __getitem__(self, index: int | slice) -> Message | Sequence[Message]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._count))]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(index)
        start = 0 if index == 0 else self._head + (index - 1) * self._step
        end = self._head if index == 0 else start + self._step
        properties = {
            **(self._message.properties if index == 0 else self._rest),
            Prop.FRAGMENT: str(index),
            Prop.NUM_FRAGMENTS: str(self._count),
            Prop.FRAGMENT_OFFSET: str(start),
            Prop.PAYLOAD_SIZE: str(self._size),
            **(self._extra if index == 0 else {}),
        }
        piece = cut(self._payload, start, end)
        return Message(payload=piece, properties=properties)


#: The size of a request's head (piece 0): small, so that it reaches a backend, which then
#: reads the side topic, ahead of the pieces sent with it (a full piece behind them came
#: 10-30 ms later on pulsar-lite). A multiple of 3 bytes, as pieces are.
HEAD_SIZE = 3 * 21_845
#: How many pieces are on their way to the broker at once.
SEND_WINDOW = 8


async def send_pieces(
    send: Callable[[Message], Awaitable[None]],
    pieces: Sequence[Message],
    start: int = 0,
    window: int = SEND_WINDOW,
) -> None:
    """Send ``pieces[start:]`` with up to ``window`` sends under way, cutting each when due.

    Raises
    ------
    Exception
        The first error of a send; the other sends under way are cancelled.
    """
    running: set[asyncio.Future[None]] = set()
    try:
        for index in range(start, len(pieces)):
            if len(running) >= window:
                done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                _raise_first(done)
            running.add(asyncio.ensure_future(send(pieces[index])))
        while running:
            done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            _raise_first(done)
    finally:  # after an error or a cancellation: the other sends are not needed any more
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


def _raise_first(done: set[asyncio.Future[None]]) -> None:
    """Raise the first error among finished sends, having looked at every one of them."""
    errors = [task.exception() for task in done if not task.cancelled()]
    for error in errors:
        if error is not None:
            raise error


def split(
    message: Message | Outgoing,
    limit: int,
    extra: Mapping[str, str] | None = None,
    *,
    piece_size: int | None = None,
    head_size: int | None = None,
) -> Sequence[Message]:
    """Cut ``message`` into pieces if it has more than ``limit`` bytes (else it is returned).

    The pieces are cut one by one as they are read, so that a large payload is never held
    twice (nor joined, for an :class:`Outgoing` message: a message that goes whole is).

    Parameters
    ----------
    message
        The whole message.
    limit
        The largest payload sent in one message.
    extra
        Properties for piece 0 only (the head of a request names its side topic).
    piece_size
        The size of the pieces, at most ``limit``; ``limit`` by default.
    head_size
        The size of piece 0, if smaller than the others (cut at a multiple of 3 bytes).
    """
    if len(message.payload) <= limit:
        return [whole(message)]
    return Pieces(message, min(limit, piece_size or limit), extra, head_size)


@dataclass
class Reassembly:
    """The pieces of one payload, put together as they come.

    Memory grows with the bytes received, never ahead of them: pieces in order extend one
    buffer, pieces ahead of it wait aside until the gap before them is filled. The buffer
    becomes the payload, without a copy at the end.

    Parameters
    ----------
    size
        The payload's size, or None for peers that do not send ``payload_size`` (DASF): then the
        pieces are kept apart and joined in order at the end.
    count
        The number of pieces.

    Raises
    ------
    ProtocolError
        If ``count`` is more than ``size`` allows (every piece carries at least one byte).
    """

    size: int | None
    count: int
    properties: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    _buffer: bytearray | None = None
    _pieces: dict[int, bytes | bytearray] = field(default_factory=dict)
    _seen: set[int] = field(default_factory=set)
    received: int = 0

    def __post_init__(self) -> None:
        if self.size is not None:
            check_count(self.count, self.size)
            self._buffer = bytearray()

    def add(self, piece: Message) -> bool:
        """Take one piece; returns True once all have come.

        Raises
        ------
        ProtocolError
            If the piece does not fit the payload, or overlaps another piece.
        """
        props = piece.properties
        index = natural(props.get(Prop.FRAGMENT, "0"), Prop.FRAGMENT)
        if not 0 <= index < self.count:
            raise ProtocolError(f"fragment {index} of {self.count} is out of range")
        if index in self._seen:
            return self.complete  # a redelivered piece
        if self.count > 1 and not piece.payload:
            raise ProtocolError(f"fragment {index} is empty")
        if self._buffer is not None:
            self._place(index, props, piece.payload)
        else:
            self._pieces[index] = piece.payload
        if index == 0:
            self.properties = {k: v for k, v in props.items() if k not in _PIECE_PROPS}
        self._seen.add(index)
        self.received += len(piece.payload)
        if self.complete and self._buffer is not None and len(self._buffer) != self.size:
            raise ProtocolError("the pieces of the payload overlap or leave gaps")
        return self.complete

    def _place(self, index: int, props: Mapping[str, str], payload: bytes | bytearray) -> None:
        """Append a piece to the buffer, or keep it aside until the pieces before it came."""
        assert self._buffer is not None
        assert self.size is not None
        try:
            offset = natural(props[Prop.FRAGMENT_OFFSET], Prop.FRAGMENT_OFFSET)
        except (KeyError, ProtocolError):
            raise ProtocolError("a fragment lacks a valid fragment_offset") from None
        if offset + len(payload) > self.size:
            raise ProtocolError(f"fragment {index} overflows the payload of {self.size} bytes")
        if offset < len(self._buffer) or offset in self._pieces:
            raise ProtocolError(f"fragment {index} overlaps another")
        if offset > len(self._buffer):  # ahead of the buffer: aside
            self._pieces[offset] = payload
            return
        self._buffer += payload
        while len(self._buffer) in self._pieces:  # the gap is filled: what waited follows
            self._buffer += self._pieces.pop(len(self._buffer))

    @property
    def complete(self) -> bool:
        """Whether every piece has come."""
        return len(self._seen) == self.count

    def message(self) -> Message:
        """The whole message (once complete); its payload is the buffer itself, not a copy."""
        payload: bytes | bytearray
        if self._buffer is not None:
            payload = self._buffer
        else:
            payload = b"".join(self._pieces[i] for i in range(self.count))
        return Message(payload=payload, properties=self.properties)


class Reassembler:
    """Partial payloads by key, within a bound on the memory they take.

    Parameters
    ----------
    max_bytes
        The most bytes held for all partial payloads together.
    timeout
        Seconds after which an incomplete payload is dropped (see :meth:`expire`).
    """

    def __init__(self, max_bytes: int, timeout: float = 300.0) -> None:
        self.max_bytes = max_bytes
        self.timeout = timeout
        self._partial: dict[str, Reassembly] = {}

    @property
    def held(self) -> int:
        """Bytes counted against the bound.

        The sizes the partial payloads declare (memory itself grows with the bytes received),
        or the bytes received for those that declare none.
        """
        return sum(r.size if r.size is not None else r.received for r in self._partial.values())

    def add(self, key: str, piece: Message) -> Message | None:
        """Take a piece of the payload ``key``; returns the whole message once complete.

        Raises
        ------
        ProtocolError
            If the piece is malformed, or the payload would break the memory bound (the
            partial payload is dropped).
        """
        count = fragment_count(piece)
        if count == 1:
            return piece
        partial = self._partial.get(key)
        if partial is None:
            size = payload_size_of(piece)
            if size is not None and self.held + size > self.max_bytes:
                raise ProtocolError(
                    f"a payload of {size} bytes does not fit in the {self.max_bytes} bytes "
                    f"reserved for reassembly ({self.held} in use)"
                )
            if size is None and count > self.max_bytes:
                raise ProtocolError(f"{count} pieces for at most {self.max_bytes} bytes")
            partial = self._partial[key] = Reassembly(size, count)
        try:
            done = partial.add(piece)
            if partial.size is None and self.held > self.max_bytes:
                raise ProtocolError(f"partial payloads exceed {self.max_bytes} bytes")
        except ProtocolError:
            self._partial.pop(key, None)
            raise
        if not done:
            return None
        del self._partial[key]
        return partial.message()

    def discard(self, key: str) -> None:
        """Drop a partial payload."""
        self._partial.pop(key, None)

    def expire(self) -> list[str]:
        """Drop partial payloads older than the timeout; returns their keys."""
        now = time.monotonic()
        old = [k for k, r in self._partial.items() if now - r.started > self.timeout]
        for key in old:
            del self._partial[key]
        return old
