"""The envelope's properties as pydantic models, for the JSON Schemas in ``schemas/``.

They describe what :mod:`demessaging.protocol.envelope` documents, for peers in other languages;
demessaging itself reads messages with :func:`~demessaging.protocol.envelope.parse_request`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..message import JSON, Status
from .envelope import ErrorInfo

__all__ = ["RequestProperties", "ResponseProperties", "envelope_schemas"]


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
    traceparent: str | None = Field(
        None,
        alias="traceparent",
        description="The caller's span, as W3C Trace Context writes it; ignored if malformed.",
    )
    tracestate: str | None = Field(
        None,
        alias="tracestate",
        description="Vendors' part of the trace context (W3C Trace Context), 512 characters "
        "at most.",
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


def envelope_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schemas of the envelope, by file name (what ``schemas/`` holds)."""
    return {
        "request-properties.json": RequestProperties.model_json_schema(by_alias=True),
        "response-properties.json": ResponseProperties.model_json_schema(by_alias=True),
        "error-info.json": ErrorInfo.model_json_schema(),
    }
