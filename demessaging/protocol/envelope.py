"""The message envelope, documented here and nowhere else.

A message is a payload (bytes) and string properties, as on Pulsar. demessaging keeps DASF's
layout, so that DASF clients, backends and brokers interoperate.

Request (client -> the module's topic)::

    properties  messageType="request"  requestContext=<correlation id>
                response_topic=<topic the caller listens on>
                content_type=<the payload's encoding>  (optional; demessaging extension)
                deadline=<UNIX time in seconds when the caller stops waiting>
                                                       (optional; demessaging extension)
                api_fingerprint=<fingerprint of the member the caller expects>
                                                       (optional; demessaging extension)
    payload     the request object, UTF-8 JSON unless content_type says otherwise:
                {"func_name": "total", "values": [1, 2]}
                {"class_name": "TimeSeries", <constructor args>,
                 "function": {"func_name": "mean", <args>}}

``content_type`` is ``application/json`` (the default, and what DASF peers send) or
``application/vnd.demessaging.msgpack``: msgpack with numpy arrays as raw buffers, which
demessaging clients send (see :mod:`demessaging.serialization.msgpack`). The backend answers in
the request's content type. A backend does not start a request whose ``deadline`` has
passed (by more than the clock skew it allows): it answers it with an error instead. To a
request with an ``api_fingerprint``, the backend's response carries the fingerprint of its own
member of that name (see :mod:`demessaging.core.versions`).

Response (backend -> response_topic)::

    properties  messageType="response"  requestContext=<echoed>  source_topic=<request topic>
                status="success" | "error"
                error=<JSON of ErrorInfo>           (on errors; demessaging extension)
                api_fingerprint=<the member's>      (when the request had one; likewise)
    payload     success: the return value, in the request's content type
                error:   a text for people, "error validating request: ..." or
                         "error executing request: ..." as DASF writes it

Payloads larger than the broker takes travel in pieces (``fragment``, ``num_fragments`` and
more); :mod:`demessaging.protocol.fragments` describes how.

Cancel (client -> ``<topic>_control``, read by every backend instance; demessaging extension)::

    properties  messageType="cancel"  requestContext=<the call's>
                caller=<the call's response_topic>
    payload     empty

A backend stops the call at its next cancellation point, or skips it if it has not started.

Streams (demessaging extension): a request with ``stream=<window>`` asks for a generator
function's items one by one. Each goes to the caller as a message ``messageType="item"``
(``requestContext``, ``source_topic``, ``sequence=<1, 2, ...>``, ``content_type``; payload:
the item), then the response carries their number. The caller sends
``messageType="more"  requestContext=...  caller=...  received=<items taken>`` on the control
topic as it takes them; the backend keeps at most ``window`` items on their way. Without
``stream``, the response carries the list of all items. The response to a streamed call says
``stream="end"``; the caller also sends ``more`` now and then while it holds an item, so that
a slow caller is not taken for a gone one. Windows are at most 1000 items.
(Not ``response_topic``: dasf-broker-django refuses messages whose ``response_topic`` belongs
to another topic.)

``ping`` is answered by ``pong`` with an empty payload; ``info`` and ``api_info`` by replies
carrying the module's schema in the property of the same name (see
:mod:`demessaging.core.schema`). Peers ignore properties they do not know, which is how the
extensions above stay compatible with DASF.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ProtocolError
from ..message import JSON, Message, MessageType, Prop, Status

__all__ = [
    "JSON",
    "MAX_STREAM_WINDOW",
    "ErrorInfo",
    "Message",
    "MessageType",
    "Prop",
    "RequestProperties",
    "Stage",
    "ResponseProperties",
    "Status",
    "envelope_schemas",
    "error_reply",
    "control_topic",
    "deadline_of",
    "make_control",
    "make_request",
    "parse_error",
    "reply_to",
    "request_context",
]

#: The most items of a stream on their way at once: a larger ``stream`` window is cut to it.
MAX_STREAM_WINDOW = 1000

Stage = Literal["request", "execution", "result"]


class ErrorInfo(BaseModel):
    """What went wrong in a backend, sent as JSON in the ``error`` property of a reply."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    type: str = Field(description="Qualified name of the exception type, e.g. 'ValueError'.")
    message: str = Field(description="The exception's message.")
    stage: Stage = Field(
        description="request: invalid request; execution: the function raised; "
        "result: the return value broke its annotation."
    )
    traceback: str | None = Field(None, description="The backend's traceback, in debug mode.")
    declared: str | None = Field(
        None,
        description="The name the module exports the exception's type under (or its most "
        "specific exported base), when the module declares it: clients raise it as that type.",
    )

    def text(self) -> str:
        """The DASF-style text of the reply payload."""
        verb = "validating request" if self.stage == "request" else "executing request"
        text = f"error {verb}: {self.type}: {self.message}"
        return f"{text}\n\n{self.traceback}" if self.traceback else text


class RequestProperties(BaseModel):
    """The properties of a request."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    message_type: Literal["request"] = Field(alias="messageType")
    request_context: str = Field(
        alias="requestContext", description="Correlation id, echoed in every reply."
    )
    response_topic: str = Field(
        alias="response_topic", description="The topic the caller listens on."
    )
    content_type: str = Field(JSON, alias="content_type", description="Encoding of the payload.")
    deadline: str | None = Field(
        None,
        alias="deadline",
        description="UNIX time in seconds (decimal text) when the caller stops waiting.",
    )
    api_fingerprint: str | None = Field(
        None,
        alias="api_fingerprint",
        description="Fingerprint of the called member as the caller knows it.",
    )


class ResponseProperties(BaseModel):
    """The properties of a response."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")

    message_type: Literal["response", "pong", "info", "api_info"] = Field(alias="messageType")
    request_context: str = Field(alias="requestContext")
    source_topic: str = Field(alias="source_topic", description="The backend's topic.")
    status: Status = Field(Status.SUCCESS, alias="status")
    error: str | None = Field(None, alias="error", description="JSON of ErrorInfo, on errors.")
    content_type: str = Field(JSON, alias="content_type")
    api_fingerprint: str | None = Field(
        None,
        alias="api_fingerprint",
        description="Fingerprint of the backend's member, when the request carried one.",
    )


def make_request(
    payload: bytes | bytearray,
    *,
    context: str,
    response_topic: str,
    message_type: MessageType = MessageType.REQUEST,
    content_type: str = JSON,
    deadline: float | None = None,
    fingerprint: str | None = None,
    window: int | None = None,
) -> Message:
    """Build a request (or ``ping``/``info``/``api_info``) message.

    ``deadline`` is the UNIX time when the caller stops waiting; ``fingerprint`` that of the
    called member as the caller knows it; ``window`` asks for a generator's items one by
    one, that many on their way at most.
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
    return Message(payload=payload, properties=properties)


def control_topic(topic: str) -> str:
    """The topic of ``cancel`` messages for the backend of ``topic``."""
    return f"{topic}_control"


def make_control(*, context: str, response_topic: str, received: int | None = None) -> Message:
    """A control message about the call of ``context`` answered on ``response_topic``.

    ``cancel``; or, with ``received``, ``more``: the caller has taken that many items.
    """
    properties = {
        Prop.MESSAGE_TYPE: MessageType.CANCEL.value,
        Prop.REQUEST_CONTEXT: context,
        Prop.CALLER: response_topic,
    }
    if received is not None:
        properties[Prop.MESSAGE_TYPE] = MessageType.MORE.value
        properties[Prop.RECEIVED] = str(received)
    return Message(payload=b"", properties=properties)


def deadline_of(message: Message) -> float | None:
    """The UNIX time when the caller of ``message`` stops waiting, if it says (and says well)."""
    try:
        value = float(message.properties.get(Prop.DEADLINE, ""))
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def request_context(message: Message) -> tuple[str, str]:
    """The ``(requestContext, response_topic)`` of a request.

    Raises
    ------
    ProtocolError
        If either is missing (DASF backends drop such requests; we reject them loudly).
    """
    props = message.properties
    missing = [p for p in (Prop.REQUEST_CONTEXT, Prop.RESPONSE_TOPIC) if not props.get(p)]
    if missing:
        raise ProtocolError(
            f"message lacks the propert{'y' if len(missing) == 1 else 'ies'} {', '.join(missing)}"
        )
    return str(props[Prop.REQUEST_CONTEXT]), str(props[Prop.RESPONSE_TOPIC])


def reply_to(
    request: Message,
    payload: bytes | bytearray,
    *,
    source_topic: str,
    message_type: MessageType = MessageType.RESPONSE,
    status: Status = Status.SUCCESS,
    extra: Mapping[str, str] | None = None,
) -> tuple[str, Message]:
    """Build the reply to ``request``; returns ``(topic to send it to, message)``."""
    context, topic = request_context(request)
    properties = {
        Prop.MESSAGE_TYPE: message_type.value,
        Prop.REQUEST_CONTEXT: context,
        Prop.SOURCE_TOPIC: source_topic,
        Prop.STATUS: status.value,
        Prop.CONTENT_TYPE: request.properties.get(Prop.CONTENT_TYPE, JSON),
        **(extra or {}),
    }
    return topic, Message(payload=payload, properties=properties)


def error_reply(
    request: Message,
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


def parse_error(message: Message) -> ErrorInfo:
    """The ErrorInfo of an error reply, from its ``error`` property or, for DASF peers, its text."""
    raw = message.properties.get(Prop.ERROR)
    if raw:
        try:
            return ErrorInfo.model_validate_json(raw)
        except ValidationError:
            pass
    text = message.payload.decode("utf-8", errors="replace")
    stage: Literal["request", "execution"] = (
        "request" if text.startswith("error validating request") else "execution"
    )
    return ErrorInfo(type="RemoteError", message=text, stage=stage, traceback=None)


def envelope_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schemas of the envelope, by file name (what ``schemas/`` holds)."""
    return {
        "request-properties.json": RequestProperties.model_json_schema(by_alias=True),
        "response-properties.json": ResponseProperties.model_json_schema(by_alias=True),
        "error-info.json": ErrorInfo.model_json_schema(),
    }
