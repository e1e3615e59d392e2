"""The wire protocol: what a message carries, in DASF's layout. See :mod:`.envelope`."""

from __future__ import annotations

from .envelope import (
    ErrorInfo,
    Message,
    MessageType,
    Prop,
    RequestProperties,
    ResponseProperties,
    Status,
    envelope_schemas,
    error_reply,
    make_request,
    parse_error,
    reply_to,
    request_context,
)

__all__ = [
    "ErrorInfo",
    "Message",
    "MessageType",
    "Prop",
    "RequestProperties",
    "ResponseProperties",
    "Status",
    "envelope_schemas",
    "error_reply",
    "make_request",
    "parse_error",
    "reply_to",
    "request_context",
]
