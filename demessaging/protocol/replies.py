"""The replies a client reads on its response topic, parsed once into a :class:`Reply`.

What a reply carries is documented in :mod:`demessaging.protocol.envelope`. A client reads
each message on its response topic with :func:`parse_reply`; a message that is not a reply,
or whose properties are malformed, is refused with
:class:`~demessaging.errors.ProtocolError`, and the client drops it alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from ..errors import ProtocolError
from ..message import JSON, Message, MessageType, Prop, Status
from .envelope import fragment_count, natural

__all__ = ["REPLY_KINDS", "Reply", "parse_reply"]

#: The message types a backend sends to a caller's response topic.
REPLY_KINDS = frozenset(
    {
        MessageType.RESPONSE,
        MessageType.PONG,
        MessageType.PROGRESS,
        MessageType.ITEM,
        MessageType.LOG,
    }
)
_KINDS = {kind.value: kind for kind in REPLY_KINDS}


@dataclass(frozen=True, kw_only=True)
class Reply:
    """A message on a client's response topic, parsed.

    Attributes
    ----------
    message
        The message as received (or, once its pieces are put together, the whole of it).
    context
        ``requestContext``: the call it answers.
    kind
        ``messageType``: one of :data:`REPLY_KINDS`.
    status
        ``status`` as written (``success``, ``error``, or a progress status), if given.
    content_type
        ``content_type``: the payload's encoding.
    api_fingerprint
        The fingerprint of the backend's member, if given.
    stream_end
        Whether the reply ends a stream (``stream="end"``).
    sequence
        ``sequence`` of a stream's item, if given.
    count, fragment, fragment_offset, payload_size
        Where a piece belongs (see :mod:`demessaging.protocol.fragments`); a whole message
        has ``count`` 1.
    """

    message: Message
    context: str
    kind: MessageType
    status: str | None = None
    content_type: str = JSON
    api_fingerprint: str | None = None
    stream_end: bool = False
    sequence: int | None = None
    count: int = 1
    fragment: int = 0
    fragment_offset: int | None = None
    payload_size: int | None = None

    @property
    def payload(self) -> bytes | bytearray:
        """The payload."""
        return self.message.payload

    @property
    def properties(self) -> Mapping[str, str]:
        """All properties, as received."""
        return self.message.properties

    @property
    def failed(self) -> bool:
        """Whether the reply carries an error."""
        return self.status == Status.ERROR.value

    def whole(self, message: Message) -> Reply:
        """The same reply, with ``message`` (its pieces put together) as the whole."""
        if message is self.message and self.count == 1:
            return self  # a reply in one message
        return replace(
            self, message=message, count=1, fragment=0, fragment_offset=None, payload_size=None
        )


def _number(props: Mapping[str, str], name: str) -> int | None:
    raw = props.get(name)
    return None if raw is None else natural(raw, name)


def parse_reply(message: Message) -> Reply:
    """Parse a message received on a client's response topic, once, or refuse it.

    Raises
    ------
    ProtocolError
        If the message is a request or of a type that no backend sends to a caller, lacks
        ``requestContext``, or has a numeric property (``num_fragments``, ``fragment``,
        ``fragment_offset``, ``payload_size``, ``sequence``) that is not an ASCII number, or
        a piece that does not fit its message.
    """
    props = message.properties
    if Prop.RESPONSE_TOPIC in props:
        raise ProtocolError(f"a {props.get(Prop.MESSAGE_TYPE)!r} request is not a reply")
    kind = _KINDS.get(props.get(Prop.MESSAGE_TYPE, ""))
    if kind is None:
        raise ProtocolError(f"unexpected messageType {props.get(Prop.MESSAGE_TYPE)!r}")
    context = props.get(Prop.REQUEST_CONTEXT)
    if not context:
        raise ProtocolError("a reply lacks the property requestContext")
    count = fragment_count(message)
    fragment = _number(props, Prop.FRAGMENT) or 0
    if fragment >= count:
        raise ProtocolError(f"fragment {fragment} of {count} is out of range")
    return Reply(
        message=message,
        context=context,
        kind=kind,
        status=props.get(Prop.STATUS),
        content_type=props.get(Prop.CONTENT_TYPE, JSON),
        api_fingerprint=props.get(Prop.API_FINGERPRINT),
        stream_end=props.get(Prop.STREAM) == "end",
        sequence=_number(props, Prop.SEQUENCE),
        count=count,
        fragment=fragment,
        fragment_offset=_number(props, Prop.FRAGMENT_OFFSET),
        payload_size=_number(props, Prop.PAYLOAD_SIZE),
    )
