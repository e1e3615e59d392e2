"""The W3C trace context from the wire: ``traceparent`` and ``tracestate``, read defensively.

A request's properties come from anyone who may publish on the topic: a value that does not
follow W3C Trace Context exactly, or is too long, is ignored (the backend's span then starts
a trace of its own), never an error. No OpenTelemetry here: :mod:`demessaging.observe.tracing`
makes spans of what these functions return.
"""

from __future__ import annotations

import re

__all__ = ["MAX_TRACESTATE", "parse_traceparent", "parse_tracestate"]

#: The longest ``tracestate`` taken from the wire (W3C's floor for what peers must pass on);
#: a longer one is dropped, the ``traceparent`` kept.
MAX_TRACESTATE = 512
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_KEY = r"(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})"
_VALUE = r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
_MEMBER = re.compile(rf"[ \t]*({_KEY})=({_VALUE})[ \t]*")


def parse_traceparent(text: str | None) -> tuple[int, int, int] | None:
    """``(trace id, parent span id, flags)`` of a W3C ``traceparent``, or None if malformed.

    Version ``00`` has exactly four fields; later versions may add more after a ``-``
    (kept to 256 characters here). Version ``ff`` and all-zero ids are invalid.
    """
    if text is None or len(text) > 256 or not text.isascii():
        return None
    match = _TRACEPARENT.fullmatch(text)
    if match is None:
        return None
    version, trace, span, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    trace_id, span_id = int(trace, 16), int(span, 16)
    if not trace_id or not span_id:
        return None
    return trace_id, span_id, int(flags, 16)


def parse_tracestate(text: str | None) -> list[tuple[str, str]]:
    """The members of a W3C ``tracestate``; none if it is malformed or too long."""
    if not text or len(text) > MAX_TRACESTATE or not text.isascii():
        return []
    members: list[tuple[str, str]] = []
    for part in text.split(","):
        if not part.strip(" \t"):
            continue  # empty members are allowed
        match = _MEMBER.fullmatch(part)
        if match is None or any(key == match.group(1) for key, _ in members):
            return []
        members.append((match.group(1), match.group(2)))
    return members if len(members) <= 32 else []
