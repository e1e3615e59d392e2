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
                traceparent=  tracestate=   (optional; the caller's span, W3C Trace Context)
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
member of that name (see :mod:`demessaging.core.versions`). A backend that traces makes its span
the child of the caller's (:mod:`demessaging.observe.tracing`); it ignores a malformed
``traceparent`` or ``tracestate``, as DASF 0.6.4 ignores both.

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

A backend that cannot publish to ``<topic>_control`` as it starts (its ``messageType="check"``
message there is refused: the topic was not made, and publishing makes none, as on
dasf-broker-django) reads ``cancel`` and ``more`` on its request topic instead, on a
subscription of its own, and its listener drops them; its ``pong`` and its stream's items then
carry ``control="topic"``, and its callers send them to the request topic. ``control="none"``:
the backend hears none (its callers send none; it waits for no credit).

Streams (demessaging extension): a request with ``stream=<window>`` asks for a generator
function's items one by one. Each goes to the caller as a message ``messageType="item"``
(``requestContext``, ``source_topic``, ``sequence=<1, 2, ...>``, ``content_type``; payload:
the item), then the response carries their number. The caller sends
``messageType="more"  requestContext=...  caller=...  received=<items taken>`` on the control
topic as it takes them; the backend keeps at most ``window`` items on their way. Without
``stream``, the response carries the list of all items. The response to a streamed call says
``stream="end"``; the caller also sends ``more`` now and then while it holds an item, so that
a slow caller is not taken for a gone one. Windows are at most 1000 items. A caller takes an
item delivered again once, and fails the stream if one is missing.
(Not ``response_topic``: dasf-broker-django refuses messages whose ``response_topic`` belongs
to another topic.)

``ping`` is answered by ``pong`` with an empty payload; ``info`` and ``api_info`` by replies
carrying the module's schema in the property of the same name (see
:mod:`demessaging.core.schema`). Peers ignore properties they do not know, which is how the
extensions above stay compatible with DASF.

Reading: a backend parses each message on its request topic once, with :func:`parse_request`,
into a frozen :class:`Request` or :class:`Query`, or refuses it with
:class:`~demessaging.errors.ProtocolError` (answered with an error when it names a
``requestContext`` and a ``response_topic``). A ``response_topic`` must be a topic name in the
backend's namespaces (:mod:`demessaging.protocol.topics`): a request naming another is refused
and answered to nobody. Control messages are parsed likewise by
:func:`demessaging.protocol.control.parse_control`. Numeric properties (``num_fragments``,
``fragment``, ``fragment_offset``, ``payload_size``, ``stream``, ``received``) are ASCII
digits, at most :data:`LARGEST`, read by :func:`natural` alone. A malformed ``num_fragments``
refuses the message; a malformed ``deadline`` (not a finite ASCII number) is ignored, a
malformed ``stream`` means no stream, a malformed ``payload_size`` means none was given.
Messages are built by :mod:`demessaging.protocol.outgoing`; :mod:`demessaging.protocol.schemas`
has the properties as JSON Schemas.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from typing_extensions import Self

from ..errors import ProtocolError
from ..message import JSON, Message, MessageType, Prop, Status
from .topics import ReplyTopics

__all__ = [
    "JSON",
    "LARGEST",
    "MAX_STREAM_WINDOW",
    "Address",
    "ErrorInfo",
    "Incoming",
    "Message",
    "MessageType",
    "Prop",
    "Query",
    "Request",
    "Stage",
    "Status",
    "call_key",
    "fragment_count",
    "natural",
    "parse_error",
    "parse_request",
    "payload_size_of",
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


#: The largest integer a numeric property may hold (Java's ``long``, what Pulsar peers write).
LARGEST = 2**63 - 1
_LARGEST_DIGITS = len(str(LARGEST))


def natural(text: str, name: str, *, cap: int | None = None) -> int:
    """The non-negative integer that the property ``name`` writes as ``text``.

    This is the one place where numeric properties are read. Only ASCII digits are taken:
    ``str.isdigit`` also takes superscripts, which ``int`` refuses, and other scripts' digits,
    which ``int`` reads. Numbers are bounded before ``int`` sees them (it refuses more than
    4300 digits).

    Parameters
    ----------
    text
        The property's value.
    name
        The property's name, for the error message.
    cap
        Values above it are cut to it; without a cap, values above :data:`LARGEST` are
        refused.

    Raises
    ------
    ProtocolError
        If ``text`` is not ASCII digits, or (without ``cap``) a number above :data:`LARGEST`.
    """
    if not (text.isascii() and text.isdigit()):
        raise ProtocolError(f"{name}={_shown(text)} is not a number")
    digits = text.lstrip("0") or "0"
    if len(digits) > _LARGEST_DIGITS or int(digits) > LARGEST:
        if cap is None:
            raise ProtocolError(f"{name}={_shown(text)} is too large")
        return cap
    value = int(digits)
    return value if cap is None else min(value, cap)


def _shown(text: str) -> str:
    """A property's value for an error message, shortened when long."""
    return repr(text) if len(text) <= 40 else f"{text[:37]!r}..."


def _optional_natural(text: str | None, name: str) -> int | None:
    """Like :func:`natural`, but None when absent or malformed (for optional hints)."""
    if text is None:
        return None
    try:
        return natural(text, name)
    except ProtocolError:
        return None


def fragment_count(message: Message) -> int:
    """How many pieces the message is one of (1 for a whole message).

    Raises
    ------
    ProtocolError
        If ``num_fragments`` is not a positive integer.
    """
    raw = message.properties.get(Prop.NUM_FRAGMENTS)
    if raw is None:
        return 1
    count = natural(raw, Prop.NUM_FRAGMENTS)
    if count < 1:
        raise ProtocolError(f"num_fragments={raw!r} is not positive")
    return count


def payload_size_of(message: Message) -> int | None:
    """The ``payload_size`` of a piece, or None if it gives none (DASF) or a malformed one."""
    return _optional_natural(message.properties.get(Prop.PAYLOAD_SIZE), Prop.PAYLOAD_SIZE)


def _deadline(text: str | None) -> float | None:
    """A ``deadline``: finite seconds written in ASCII, else None (a bad deadline is ignored)."""
    if text is None or not text.isascii():
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _window(text: str | None) -> int | None:
    """A ``stream`` window cut to :data:`MAX_STREAM_WINDOW`; None (no stream) unless positive."""
    if text is None:
        return None
    try:
        window = natural(text, Prop.STREAM, cap=MAX_STREAM_WINDOW)
    except ProtocolError:
        return None
    return window or None


@dataclass(frozen=True, kw_only=True)
class Address:
    """Where the replies to a message go: its ``requestContext`` and ``response_topic``.

    Attributes
    ----------
    context
        The correlation id, echoed in every reply.
    response_topic
        The topic the caller listens on.
    content_type
        The encoding of the payload; replies use it too.
    """

    context: str
    response_topic: str
    content_type: str = JSON

    @property
    def key(self) -> str:
        """What names the call, here and in control messages: reply topic and context."""
        return call_key(self.response_topic, self.context)

    @classmethod
    def of(cls, message: Message, topics: ReplyTopics | None = None) -> Address | None:
        """The address of any message, or None if it names nobody to reply to.

        Used to answer a message that :func:`parse_request` refused. A ``response_topic``
        that ``topics`` refuses (by default: not a topic name, or a full name outside
        ``public/default``) names nobody.
        """
        props = message.properties
        context, topic = props.get(Prop.REQUEST_CONTEXT), props.get(Prop.RESPONSE_TOPIC)
        if not context or not topic:
            return None
        if (topics or _DEFAULT_TOPICS).refusal(topic) is not None:
            return None
        return cls(
            context=context, response_topic=topic, content_type=props.get(Prop.CONTENT_TYPE, JSON)
        )


_DEFAULT_TOPICS = ReplyTopics()


def call_key(caller: str, context: str) -> str:
    """The name of a call: its reply topic and its context."""
    return f"{caller}\0{context}"


@dataclass(frozen=True, kw_only=True)
class Incoming(Address):
    """A message on a backend's request topic, parsed: a :class:`Request` or a :class:`Query`.

    Attributes
    ----------
    message
        The message as received (or, once its pieces are gathered, the whole of it).
    count
        ``num_fragments``: how many pieces the message is one of (1 for a whole message).
    payload_size
        ``payload_size``: the size of the whole payload, if given (and well).
    fragments_topic
        ``fragments_topic``: the side topic of the pieces of a request, if given.
    """

    message: Message
    count: int = 1
    payload_size: int | None = None
    fragments_topic: str | None = None

    @property
    def payload(self) -> bytes | bytearray:
        """The payload."""
        return self.message.payload

    @property
    def message_id(self) -> str | None:
        """The broker's id of the message."""
        return self.message.message_id

    def whole(self, message: Message) -> Self:
        """The same message, with ``message`` (its pieces put together) as the whole."""
        return replace(self, message=message, count=1)


@dataclass(frozen=True, kw_only=True)
class Request(Incoming):
    """A parsed ``request``.

    Attributes
    ----------
    deadline
        UNIX time when the caller stops waiting; None if not given, or not a finite number.
    api_fingerprint
        The fingerprint of the called member as the caller knows it; None if not given.
    window
        How many items of a generator may be on their way at once, at most
        :data:`MAX_STREAM_WINDOW`; None (no stream) if not given, zero or malformed.
    """

    deadline: float | None = None
    api_fingerprint: str | None = None
    window: int | None = None


@dataclass(frozen=True, kw_only=True)
class Query(Incoming):
    """A parsed ``ping``, ``info`` or ``api_info``.

    Attributes
    ----------
    kind
        Which of them.
    """

    kind: Literal[MessageType.PING, MessageType.INFO, MessageType.API_INFO]


_REQUEST = MessageType.REQUEST.value
_QueryKind = Literal[MessageType.PING, MessageType.INFO, MessageType.API_INFO]
_QUERIES: dict[str, _QueryKind] = {
    MessageType.PING.value: MessageType.PING,
    MessageType.INFO.value: MessageType.INFO,
    MessageType.API_INFO.value: MessageType.API_INFO,
}


def parse_request(message: Message, topics: ReplyTopics | None = None) -> Request | Query:
    """Parse a message received on a backend's request topic, once, or refuse it.

    Malformed optional hints take their defaults, as documented on :class:`Request`;
    ``payload_size`` is None if malformed. ``topics`` says which reply topics are taken
    (see :mod:`demessaging.protocol.topics`; by default short names and ``public/default``).

    Raises
    ------
    ProtocolError
        If the message is neither a request nor a query, lacks ``requestContext`` or
        ``response_topic``, names a ``response_topic`` that ``topics`` refuses, or has a
        ``num_fragments`` that is not a positive integer.
    """
    props = message.properties
    kind = props.get(Prop.MESSAGE_TYPE)
    if kind != _REQUEST and kind not in _QUERIES:
        raise ProtocolError(f"unexpected messageType {kind!r}")
    context, topic = props.get(Prop.REQUEST_CONTEXT), props.get(Prop.RESPONSE_TOPIC)
    if topic:
        refusal = (topics or _DEFAULT_TOPICS).refusal(topic)
        if refusal is not None:
            raise ProtocolError(refusal)
    if not context or not topic:
        missing = [p for p in (Prop.REQUEST_CONTEXT, Prop.RESPONSE_TOPIC) if not props.get(p)]
        raise ProtocolError(
            f"message lacks the propert{'y' if len(missing) == 1 else 'ies'} {', '.join(missing)}"
        )
    common: dict[str, Any] = {
        "context": context,
        "response_topic": topic,
        "content_type": props.get(Prop.CONTENT_TYPE, JSON),
        "message": message,
        "count": fragment_count(message),
        "payload_size": payload_size_of(message),
        "fragments_topic": props.get(Prop.FRAGMENTS_TOPIC),
    }
    if kind in _QUERIES:
        return Query(kind=_QUERIES[kind], **common)
    return Request(
        **common,
        deadline=_deadline(props.get(Prop.DEADLINE)),
        api_fingerprint=props.get(Prop.API_FINGERPRINT),
        window=_window(props.get(Prop.STREAM)),
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
