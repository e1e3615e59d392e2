"""A bounded memory of calls by key: the requests answered, the calls cancelled before they came.

A request answered is remembered by :func:`repeat_key`, which names the request itself (its
call, its ``messageType`` and a digest of its payload), so that a redelivery of it is
acknowledged without running again, while another message naming the same reply topic and
context (a forgery, or a mistake) is not taken for it. A cancel names only the call (see
:attr:`~demessaging.protocol.envelope.Address.key`): it cannot know the payload.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict

from ..message import Message, Prop

__all__ = ["DIGESTED", "REMEMBERED", "Recent", "repeat_key"]

#: How many keys a :class:`Recent` holds by default; the oldest are forgotten first.
REMEMBERED = 10_000
#: The bytes at the start, and those at the end, of a payload that its digest covers: all of
#: a payload of up to twice as many bytes, so a digest costs at most about a millisecond.
DIGESTED = 1 << 20


def repeat_key(call: str, message: Message) -> str:
    """What names the request ``message`` of the call ``call``, to spot its redeliveries.

    The call's key (reply topic and context), the message's ``messageType``, the length of
    its payload and a CRC-32 of the payload (of its first and last :data:`DIGESTED` bytes
    when longer than twice that). Not a defence by itself: who knows a request's payload and
    context can send it first; callers' contexts are what others cannot guess.
    """
    with memoryview(message.payload) as view:  # released at once: a bytearray stays resizable
        size = len(view)
        crc = zlib.crc32(view[:DIGESTED])
        if size > DIGESTED:
            crc = zlib.crc32(view[max(DIGESTED, size - DIGESTED) :], crc)
    kind = message.properties.get(Prop.MESSAGE_TYPE, "")
    return f"{call}\0{kind}\0{size}:{crc:08x}"


class Recent:
    """The last ``size`` keys added, oldest forgotten first (not thread-safe).

    Parameters
    ----------
    size
        How many keys are remembered.
    """

    def __init__(self, size: int = REMEMBERED) -> None:
        self.size = size
        self._keys: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: str) -> None:
        """Remember ``key`` (a key already remembered keeps its place)."""
        self._keys[key] = None
        if len(self._keys) > self.size:
            self._keys.popitem(last=False)

    def take(self, key: str) -> bool:
        """Forget ``key``; returns whether it was remembered."""
        if key not in self._keys:
            return False
        del self._keys[key]
        return True
