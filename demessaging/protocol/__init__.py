"""The wire protocol: what a message carries, in DASF's layout. See :mod:`.envelope`.

- :mod:`.envelope`: the wire spec, and the parsing of each incoming message into a typed object;
- :mod:`.outgoing`: building requests and replies;
- :mod:`.control`: ``cancel`` and ``more`` messages and their topic;
- :mod:`.replies`: the parsing of what a client receives into a typed :class:`~.replies.Reply`;
- :mod:`.fragments`: cutting payloads into pieces and putting them together;
- :mod:`.pieces`: requests in pieces, uploaded by clients and gathered by backends;
- :mod:`.schemas`: the properties as JSON Schemas.
"""

from __future__ import annotations

from .control import Control, control_topic, make_control, parse_control
from .envelope import (
    Address,
    ErrorInfo,
    Message,
    MessageType,
    Prop,
    Query,
    Request,
    Status,
    parse_error,
    parse_request,
)
from .outgoing import error_reply, make_request, reply_to
from .schemas import RequestProperties, ResponseProperties, envelope_schemas

__all__ = [
    "Address",
    "Control",
    "ErrorInfo",
    "Message",
    "MessageType",
    "Prop",
    "Query",
    "Request",
    "RequestProperties",
    "ResponseProperties",
    "Status",
    "control_topic",
    "envelope_schemas",
    "error_reply",
    "make_control",
    "make_request",
    "parse_control",
    "parse_error",
    "parse_request",
    "reply_to",
]
