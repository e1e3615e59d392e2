"""A message as every transport carries it: a payload and string properties.

This is the one module transports import from the rest of demessaging. What the properties
mean, and which messages peers exchange, is documented in :mod:`demessaging.protocol.envelope`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["JSON", "Message", "MessageType", "Prop", "Status"]


class MessageType(str, enum.Enum):
    """The ``messageType`` property."""

    REQUEST = "request"
    RESPONSE = "response"
    PING = "ping"
    PONG = "pong"
    INFO = "info"
    API_INFO = "api_info"
    PROGRESS = "progress"
    LOG = "log"
    CANCEL = "cancel"
    ITEM = "item"
    MORE = "more"


class Status(str, enum.Enum):
    """The ``status`` property of replies."""

    SUCCESS = "success"
    ERROR = "error"
    RUNNING = "running"


class Prop:
    """Property names."""

    MESSAGE_TYPE = "messageType"
    REQUEST_CONTEXT = "requestContext"
    RESPONSE_TOPIC = "response_topic"
    SOURCE_TOPIC = "source_topic"
    STATUS = "status"
    FRAGMENT = "fragment"
    NUM_FRAGMENTS = "num_fragments"
    FRAGMENT_OFFSET = "fragment_offset"
    PAYLOAD_SIZE = "payload_size"
    FRAGMENTS_TOPIC = "fragments_topic"
    ABORTED = "aborted"
    CONTENT_TYPES = "content_types"
    INFO = "info"
    API_INFO = "api_info"
    ERROR = "error"
    CONTENT_TYPE = "content_type"
    DEADLINE = "deadline"
    API_FINGERPRINT = "api_fingerprint"
    CALLER = "caller"
    STREAM = "stream"
    SEQUENCE = "sequence"
    RECEIVED = "received"
    CONTROL = "control"
    TRACEPARENT = "traceparent"
    TRACESTATE = "tracestate"


#: The content type of JSON payloads, the default.
JSON = "application/json"


@dataclass(frozen=True)
class Message:
    """A payload and its properties.

    Attributes
    ----------
    payload
        The message body.
    properties
        String properties (Pulsar's message properties).
    message_id
        The broker's id, set on received messages.
    redelivery_count
        How many times the broker delivered this message before (Pulsar's redelivery
        count), on received messages; 0 where the broker does not say.
    """

    payload: bytes | bytearray
    properties: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    message_id: str | None = None
    redelivery_count: int = 0

    @property
    def message_type(self) -> str | None:
        """The ``messageType`` property, or None."""
        return self.properties.get(Prop.MESSAGE_TYPE)
