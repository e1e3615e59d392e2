"""An AsyncAPI 3.0 document of a backend, from its ``api_info``.

The backend is the application described: it receives requests on its topic and sends
responses, progress messages and a stream's items to the topic each caller names in
``response_topic``; it receives ``cancel`` and ``more`` on ``<topic>_control``. Message
headers are the envelope's properties (:mod:`demessaging.protocol.envelope`), payloads the
JSON Schemas of the module's requests and return values. Their ``$defs`` move to
``components/schemas``, where references inside the document find them.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from ..core.versions import fingerprint, shapes
from ..message import JSON, MessageType, Prop, Status
from ..protocol.schemas import RequestProperties, ResponseProperties

__all__ = ["asyncapi_document", "dumps", "public_url", "server_of"]

_SCHEMAS = "#/components/schemas/"


def _text(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


def _const(value: str) -> dict[str, Any]:
    return {"type": "string", "const": value}


_CONTEXT = _text("The call's correlation id, echoed in every reply.")
_SOURCE = _text("The backend's request topic.")
_CALLER = _text("The caller's response_topic.")
_NUMBER = "decimal ASCII digits"


def _headers(required: list[str], **properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


def _report() -> dict[str, Any]:
    """The JSON of a progress report: DASF's tree layout."""
    step = {
        "type": "object",
        "properties": {
            "report_type": _const("tree"),
            "report_id": _text("The step's id."),
            "status": {"type": "string", "enum": [s.value for s in Status]},
            "step_message": _text("What the step does."),
            "steps": {"type": "integer", "description": "Units of work in all, 0 if unknown."},
            "done": {"type": "integer", "description": "Units done so far."},
            "children": {"type": "array", "items": {"$ref": f"{_SCHEMAS}ProgressReport"}},
        },
    }
    return {"title": "ProgressReport", "description": "A step and its sub-steps.", **step}


def public_url(url: str) -> str:
    """A URL without what may be secret: user and password, query and fragment."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else host + parts.path


def server_of(broker_url: str) -> dict[str, Any]:
    """The AsyncAPI server of a broker URL (``pulsar://``, ``ws://``, ``embedded://``...).

    Credentials and query of the URL are left out: the document is for partners to read.
    """
    broker_url = public_url(broker_url)
    parts = urlsplit(broker_url)
    if parts.scheme in ("pulsar", "pulsar+ssl", "ws", "wss") and parts.hostname:
        server: dict[str, Any] = {"host": parts.netloc, "protocol": parts.scheme}
        if parts.path not in ("", "/"):
            server["pathname"] = parts.path
        if parts.scheme in ("ws", "wss"):
            server["description"] = "Apache Pulsar's WebSocket API"
        return server
    return {
        "host": "127.0.0.1",
        "protocol": "pulsar",
        "description": f"{broker_url}: a broker on the partner's own machine",
    }


class _Hoist:
    """Moves the ``$defs`` of schemas to ``components/schemas``, renaming clashes."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {}

    def __call__(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        copied = copy.deepcopy(dict(schema))
        names: dict[str, str] = {}
        defs = copied.pop("$defs", {})
        for name, sub in defs.items():
            final, n = name, 1
            while final in self.schemas and self.schemas[final] != sub:
                n += 1
                final = f"{name}{n}"
            names[name] = final
        for name, sub in defs.items():
            self.schemas[names[name]] = _rewrite(sub, names)
        rewritten: dict[str, Any] = _rewrite(copied, names)
        return rewritten


def _rewrite(value: Any, names: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        out = {k: _rewrite(v, names) for k, v in value.items()}
        if isinstance(out.get("discriminator"), dict):  # AsyncAPI's is the property's name
            out["discriminator"] = out["discriminator"].get("propertyName")
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref[len("#/$defs/") :]
            out["$ref"] = _SCHEMAS + names.get(name, name)
        return out
    if isinstance(value, list):
        return [_rewrite(v, names) for v in value]
    return value


def asyncapi_document(
    api_info: Mapping[str, Any],
    *,
    topic: str,
    broker_url: str,
    items: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the backend serving ``api_info`` on ``topic``.

    Parameters
    ----------
    api_info
        The module in DASF's ``api_info`` layout.
    topic
        The backend's request topic.
    broker_url
        The broker partners reach it on: the document's server.
    items
        The JSON Schema of each streaming member's items, by member name, where known.
    """
    hoist = _Hoist()
    module = api_info.get("rpc_schema", {})
    returns = []
    for function in api_info.get("functions", []):
        returns.append(hoist(function.get("return_schema", {})))
    for cls in api_info.get("classes", []):
        returns.extend(hoist(m.get("return_schema", {})) for m in cls.get("methods", []))
    error = _text("On status=error: the error as text (DASF's form).")
    request_headers = hoist(RequestProperties.model_json_schema(by_alias=True))
    response_headers = hoist(ResponseProperties.model_json_schema(by_alias=True))
    response_headers["properties"][Prop.MESSAGE_TYPE] = _const(MessageType.RESPONSE.value)
    hoist.schemas["ProgressReport"] = _report()
    item_payload = [hoist(s) for s in (items or {}).values()]
    returns.extend({"type": "array", "items": item} for item in item_payload)  # all at once
    messages = {
        "request": {
            "name": "request",
            "title": "A call",
            "summary": "Calls a function or a method of the module.",
            "contentType": JSON,
            "headers": request_headers,
            "payload": hoist(module) if module else {},
        },
        "response": {
            "name": "response",
            "title": "The result",
            "summary": "The return value, or on status=error the error.",
            "contentType": JSON,
            "headers": response_headers,
            "payload": {"anyOf": [*returns, error]},
        },
        "progress": {
            "name": "progress",
            "title": "Progress",
            "summary": "A report of a running call that takes a progress reporter.",
            "contentType": JSON,
            "headers": _headers(
                [Prop.MESSAGE_TYPE, Prop.REQUEST_CONTEXT, Prop.STATUS],
                **{
                    Prop.MESSAGE_TYPE: _const(MessageType.PROGRESS.value),
                    Prop.REQUEST_CONTEXT: _CONTEXT,
                    Prop.SOURCE_TOPIC: _SOURCE,
                    Prop.STATUS: {"type": "string", "enum": [s.value for s in Status]},
                    Prop.CONTENT_TYPE: _const(JSON),
                },
            ),
            "payload": {"$ref": f"{_SCHEMAS}ProgressReport"},
        },
        "item": {
            "name": "item",
            "title": "A stream's item",
            "summary": "One item of a generator function, to a request with stream=<window>.",
            "headers": _headers(
                [Prop.MESSAGE_TYPE, Prop.REQUEST_CONTEXT, Prop.SEQUENCE],
                **{
                    Prop.MESSAGE_TYPE: _const(MessageType.ITEM.value),
                    Prop.REQUEST_CONTEXT: _CONTEXT,
                    Prop.SOURCE_TOPIC: _SOURCE,
                    Prop.SEQUENCE: _text(f"1, 2, ...: the item's place ({_NUMBER})."),
                    Prop.CONTENT_TYPE: _text("The payload's encoding, the request's."),
                    Prop.CONTROL: _text("Where `more` goes when not to <topic>_control."),
                },
            ),
            "payload": {"anyOf": item_payload} if item_payload else {},
        },
        "cancel": {
            "name": "cancel",
            "title": "Cancel a call",
            "headers": _headers(
                [Prop.MESSAGE_TYPE, Prop.REQUEST_CONTEXT, Prop.CALLER],
                **{
                    Prop.MESSAGE_TYPE: _const(MessageType.CANCEL.value),
                    Prop.REQUEST_CONTEXT: _CONTEXT,
                    Prop.CALLER: _CALLER,
                },
            ),
            "payload": {"type": "string", "maxLength": 0},
        },
        "more": {
            "name": "more",
            "title": "Credit for a stream",
            "headers": _headers(
                [Prop.MESSAGE_TYPE, Prop.REQUEST_CONTEXT, Prop.CALLER, Prop.RECEIVED],
                **{
                    Prop.MESSAGE_TYPE: _const(MessageType.MORE.value),
                    Prop.REQUEST_CONTEXT: _CONTEXT,
                    Prop.CALLER: _CALLER,
                    Prop.RECEIVED: _text(f"Items the caller has taken ({_NUMBER})."),
                },
            ),
            "payload": {"type": "string", "maxLength": 0},
        },
    }

    def refs(*names: str) -> dict[str, Any]:
        return {n: {"$ref": f"#/components/messages/{n}"} for n in names}

    def on(channel: str, *names: str) -> list[dict[str, Any]]:
        return [{"$ref": f"#/channels/{channel}/messages/{n}"} for n in names]

    title = str(module.get("title", topic))
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": title,
            "version": fingerprint(shapes(api_info)),
            "description": str(module.get("description", "")) or f"The backend {title}.",
        },
        "defaultContentType": JSON,
        "servers": {"broker": server_of(broker_url)},
        "channels": {
            "requests": {
                "address": topic,
                "title": "Requests",
                "description": "The backend's request topic, shared by its instances.",
                "messages": refs("request"),
            },
            "replies": {
                "address": "{response_topic}",
                "title": "Replies",
                "description": "The topic a caller names in response_topic.",
                "parameters": {"response_topic": {"description": "The caller's reply topic."}},
                "messages": refs("response", "progress", "item"),
            },
            "control": {
                "address": f"{topic}_control",
                "title": "Control",
                "description": "Cancel and stream credit, read by every instance.",
                "messages": refs("cancel", "more"),
            },
        },
        "operations": {
            "receiveRequest": {
                "action": "receive",
                "channel": {"$ref": "#/channels/requests"},
                "messages": on("requests", "request"),
                "reply": {
                    "address": {
                        "location": f"$message.header#/{Prop.RESPONSE_TOPIC}",
                        "description": "The request's response_topic.",
                    },
                    "channel": {"$ref": "#/channels/replies"},
                    "messages": on("replies", "response"),
                },
            },
            "sendProgress": {
                "action": "send",
                "channel": {"$ref": "#/channels/replies"},
                "messages": on("replies", "progress"),
            },
            "sendItem": {
                "action": "send",
                "channel": {"$ref": "#/channels/replies"},
                "messages": on("replies", "item"),
            },
            "receiveControl": {
                "action": "receive",
                "channel": {"$ref": "#/channels/control"},
                "messages": on("control", "cancel", "more"),
            },
        },
        "components": {"messages": messages, "schemas": hoist.schemas},
    }


def dumps(document: Mapping[str, Any]) -> str:
    """The document as JSON text (infinite defaults as strings: JSON has no Infinity)."""
    return json.dumps(_finite(document), indent=2, ensure_ascii=False) + "\n"


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "inf", "-inf", "nan"
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
