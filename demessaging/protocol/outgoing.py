"""Building the messages peers send: requests, and the replies to them.

What they carry is documented in :mod:`demessaging.protocol.envelope`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import overload

from ..message import JSON, Message, MessageType, Prop, Status
from ..serialization.buffers import Buffers, Payload
from .envelope import Address, ErrorInfo
from .fragments import Outgoing

__all__ = ["Payload", "error_reply", "make_request", "reply_to"]


@overload
def make_request(
    payload: bytes | bytearray,
    *,
    context: str,
    response_topic: str,
    message_type: MessageType = ...,
    content_type: str = ...,
    deadline: float | None = ...,
    fingerprint: str | None = ...,
    window: int | None = ...,
    extra: Mapping[str, str] | None = ...,
) -> Message: ...


@overload
def make_request(
    payload: Buffers,
    *,
    context: str,
    response_topic: str,
    message_type: MessageType = ...,
    content_type: str = ...,
    deadline: float | None = ...,
    fingerprint: str | None = ...,
    window: int | None = ...,
    extra: Mapping[str, str] | None = ...,
) -> Outgoing: ...


def make_request(
    payload: Payload,
    *,
    context: str,
    response_topic: str,
    message_type: MessageType = MessageType.REQUEST,
    content_type: str = JSON,
    deadline: float | None = None,
    fingerprint: str | None = None,
    window: int | None = None,
    extra: Mapping[str, str] | None = None,
) -> Message | Outgoing:
    """Build a request (or ``ping``/``info``/``api_info``) message.

    ``deadline`` is the UNIX time when the caller stops waiting; ``fingerprint`` that of the
    called member as the caller knows it; ``window`` asks for a generator's items one by
    one, that many on their way at most; ``extra`` adds properties (the trace context). A
    payload of buffers makes an :class:`.Outgoing`.
    """
    properties = {
        Prop.MESSAGE_TYPE: message_type.value,
        Prop.REQUEST_CONTEXT: context,
        Prop.RESPONSE_TOPIC: response_topic,
        Prop.CONTENT_TYPE: content_type,
    }
    if deadline is not None:
        properties[Prop.DEADLINE] = f"{deadline:.3f}"
    if fingerprint:
        properties[Prop.API_FINGERPRINT] = fingerprint
    if window:
        properties[Prop.STREAM] = str(window)
    if extra:
        properties.update(extra)
    if isinstance(payload, Buffers):
        return Outgoing(payload=payload, properties=properties)
    return Message(payload=payload, properties=properties)


def reply_to(
    request: Address,
    payload: bytes | bytearray,
    *,
    source_topic: str,
    message_type: MessageType = MessageType.RESPONSE,
    status: Status = Status.SUCCESS,
    extra: Mapping[str, str] | None = None,
) -> tuple[str, Message]:
    """Build the reply to ``request``; returns ``(topic to send it to, message)``."""
    properties = {
        Prop.MESSAGE_TYPE: message_type.value,
        Prop.REQUEST_CONTEXT: request.context,
        Prop.SOURCE_TOPIC: source_topic,
        Prop.STATUS: status.value,
        Prop.CONTENT_TYPE: request.content_type,
        **(extra or {}),
    }
    return request.response_topic, Message(payload=payload, properties=properties)


def error_reply(
    request: Address,
    error: ErrorInfo,
    *,
    source_topic: str,
    extra: Mapping[str, str] | None = None,
) -> tuple[str, Message]:
    """Build the error reply to ``request``."""
    return reply_to(
        request,
        error.text().encode(),
        source_topic=source_topic,
        status=Status.ERROR,
        extra={Prop.ERROR: error.model_dump_json(exclude_none=True), **(extra or {})},
    )
