"""A bounded memory of calls by key: the requests answered, the calls cancelled before they came.

A request answered is remembered by :func:`repeat_key`, which names the request itself (its
call, its ``messageType`` and a digest of its payload), so that a redelivery of it is
acknowledged without running again, while another message naming the same reply topic and
context (a forgery, or a mistake) is not taken for it. A cancel names only the call (see
:attr:`~demessaging.protocol.envelope.Address.key`): it cannot know the payload.
"""

from __future__ import annotations

import zlib

from ..message import Message, Prop
from ..protocol.recent import REMEMBERED, Recent

__all__ = ["DIGESTED", "REMEMBERED", "Recent", "repeat_key"]

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
