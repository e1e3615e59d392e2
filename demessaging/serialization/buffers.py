"""A payload as a sequence of buffers, so that a large one is never joined into one copy.

:func:`.msgpack.encode_buffers` gives one: the msgpack head as bytes, then views of the array
buffers (and of the padding between them). Pieces are cut from it one by one
(:meth:`Buffers.cut`: a piece that straddles two buffers is joined, only that piece); a
payload small enough to go whole is joined (:meth:`Buffers.join`). The views are of the
caller's arrays: they must not change until the payload is sent.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

__all__ = ["Buffers", "Payload", "cut", "joined"]


class Buffers:
    """The bytes of a payload as a sequence of buffers, in order.

    Parameters
    ----------
    parts
        Bytes-like objects, each C-contiguous (their bytes are taken as they lie in memory).
    """

    __slots__ = ("_parts", "_size", "_starts")

    def __init__(self, parts: Iterable[bytes | bytearray | memoryview]) -> None:
        views = [memoryview(part).cast("B") for part in parts]
        self._parts = tuple(view for view in views if len(view))
        self._starts: list[int] = []
        size = 0
        for view in self._parts:
            self._starts.append(size)
            size += len(view)
        self._size = size

    def __len__(self) -> int:
        return self._size

    @property
    def parts(self) -> tuple[memoryview, ...]:
        """The buffers, as byte views (empty ones left out)."""
        return self._parts

    def cut(self, start: int, stop: int) -> bytes:
        """The bytes from ``start`` to ``stop`` (clipped to the payload), as one bytes object."""
        start, stop = max(0, start), min(stop, self._size)
        if start >= stop:
            return b""
        first = bisect.bisect_right(self._starts, start) - 1
        chunks = []
        index = first
        while index < len(self._parts) and self._starts[index] < stop:
            base = self._starts[index]
            chunks.append(self._parts[index][max(start - base, 0) : stop - base])
            index += 1
        return bytes(chunks[0]) if len(chunks) == 1 else b"".join(chunks)

    def join(self) -> bytes:
        """The whole payload as one bytes object (a copy, unless it is one bytes object)."""
        if len(self._parts) == 1:
            (only,) = self._parts
            if isinstance(only.obj, bytes) and len(only) == len(only.obj):
                return only.obj  # the head of a payload without arrays, as msgpack made it
        return b"".join(self._parts)

    def __bytes__(self) -> bytes:
        return self.join()

    def __repr__(self) -> str:
        return f"Buffers({self._size} bytes in {len(self._parts)} buffers)"


#: A payload to send: one buffer, or a sequence of them.
Payload = bytes | bytearray | Buffers


def cut(payload: Payload, start: int, stop: int) -> bytes:
    """The bytes of ``payload`` from ``start`` to ``stop``, copied once."""
    if isinstance(payload, Buffers):
        return payload.cut(start, stop)
    with memoryview(payload) as view:
        return bytes(view[start:stop])


def joined(payload: Payload) -> bytes | bytearray:
    """``payload`` as one buffer: a :class:`Buffers` joined, bytes as they are."""
    return payload.join() if isinstance(payload, Buffers) else payload
