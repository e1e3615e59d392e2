"""Tracing with OpenTelemetry: a span per call in the client, one per request in the backend.

The W3C trace context of a call travels in the request's properties ``traceparent`` and
``tracestate`` (:mod:`demessaging.protocol.envelope`), so that the backend's span is the child
of the caller's, across machines and institutes. Peers that do not trace ignore them.

demessaging uses OpenTelemetry's API alone (the extra ``demessaging[otel]``), and never
imports it itself: tracing is on once the program has imported ``opentelemetry.trace``, as
every program that sets up a tracer provider does (``demessaging listen`` does so when the
SDK is installed; see :func:`configure_sdk`). Until then each hook returns at once.

Spans follow OpenTelemetry's semantic conventions for messaging and RPC:

- the client's, of kind CLIENT, named ``<topic>/<member>``: ``messaging.system="pulsar"``,
  ``messaging.destination.name``, ``rpc.system="dasf"``, ``rpc.service`` (the topic),
  ``rpc.method`` (the member), ``messaging.message.body.size`` (the request's bytes),
  ``demessaging.response.body.size``, ``rpc.response.status_code`` (``success`` or
  ``error``), ``demessaging.stream`` for streams and ``demessaging.stream.items``;
- the backend's, of kind SERVER, child of the caller's: the same, with
  ``messaging.message.conversation_id`` (the request's context),
  ``demessaging.request.fragments`` (the pieces it came in) and an event
  ``demessaging.progress`` per progress report. The served function runs in it: the spans
  it makes itself are its children.

A failed call sets the span's status to ERROR and records an ``exception`` event (for a
remote error, with the backend's exception type and message).
"""

from __future__ import annotations

import contextvars
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from ..errors import ConfigurationError
from ..message import Message, Prop, Status
from ..protocol.envelope import Incoming, Request, parse_error
from .propagation import MAX_TRACESTATE, parse_traceparent, parse_tracestate

__all__ = [
    "MAX_TRACESTATE",
    "Call",
    "OFF",
    "Off",
    "Served",
    "call",
    "configure_sdk",
    "parse_traceparent",
    "parse_tracestate",
    "progress_event",
    "served",
    "within",
]

T = TypeVar("T")
calls_log = logging.getLogger("demessaging.calls")


def _api() -> Any:
    """OpenTelemetry's trace API if the program has imported it, else None (tracing is off)."""
    return sys.modules.get("opentelemetry.trace")


def _tracer(api: Any) -> Any:
    """The tracer of demessaging, made once (it follows a tracer provider set up later)."""
    if not _TRACERS:
        from .. import __version__

        _TRACERS.append(api.get_tracer("demessaging", __version__))
    return _TRACERS[0]


_TRACERS: list[Any] = []


def _headers(span: Any) -> dict[str, str] | None:
    """The ``traceparent`` (and ``tracestate``) that make a peer's span a child of ``span``."""
    context = span.get_span_context()
    if not context.is_valid:
        return None
    headers = {
        Prop.TRACEPARENT: f"00-{context.trace_id:032x}-{context.span_id:016x}-"
        f"{int(context.trace_flags):02x}"
    }
    state = context.trace_state.to_header() if context.trace_state else ""
    if state:
        headers[Prop.TRACESTATE] = state
    return headers


def _remote_parent(api: Any, properties: Mapping[str, str]) -> Any:
    """The caller's span from a request's properties, as a context; None if it has none."""
    parent = parse_traceparent(properties.get(Prop.TRACEPARENT))
    if parent is None:
        return None
    trace_id, span_id, flags = parent
    state = api.TraceState(parse_tracestate(properties.get(Prop.TRACESTATE)))
    remote = api.SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=api.TraceFlags(flags & 1), trace_state=state
    )
    return api.set_span_in_context(api.NonRecordingSpan(remote))


def _fail(api: Any, span: Any, kind: str, text: str) -> None:
    """Mark ``span`` as failed with an exception event of ``kind`` and ``text``."""
    span.set_status(api.Status(api.StatusCode.ERROR, f"{kind}: {text}"))
    span.set_attribute("error.type", kind)
    span.add_event("exception", {"exception.type": kind, "exception.message": text})


def _common(topic: str, member: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "messaging.system": "pulsar",
        "messaging.destination.name": topic,
        "rpc.system": "dasf",
        "rpc.service": topic,
    }
    if member:
        attributes["rpc.method"] = member
    return attributes


# -- the client --------------------------------------------------------------------------------


class Off:
    """What the client's hook is while tracing is off: it does nothing."""

    headers: dict[str, str] | None = None

    def __enter__(self) -> Off:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: object, *rest: object) -> None:
        return None

    def sent(self, size: int) -> None:
        """The request's size in bytes."""

    def received(self, message: Message, status: str | None = None) -> None:
        """The reply (or, for a stream, the end of it)."""

    def item(self) -> None:
        """A stream's item arrived."""


#: The hook of every call while tracing is off.
OFF = Off()


class Call(Off):
    """The span of one call or stream in the client (a context manager: it ends the span)."""

    def __init__(self, api: Any, topic: str, member: str, stream: bool) -> None:
        self._api = api
        attributes = _common(topic, member)
        if stream:
            attributes["demessaging.stream"] = True
        self._span = _tracer(api).start_span(
            f"{topic}/{member}" if member else topic,
            kind=api.SpanKind.CLIENT,
            attributes=attributes,
        )
        self._items = 0
        self._stream = stream
        self.headers = _headers(self._span)

    def __exit__(self, kind: type[BaseException] | None, error: object, *rest: object) -> None:
        """End the span; an exception (not a stream closed early) marks it failed."""
        span = self._span
        if self._stream:
            span.set_attribute("demessaging.stream.items", self._items)
        if kind is not None and isinstance(error, Exception):  # not a stream closed early
            # a RemoteError: the type of the backend's exception
            name = getattr(error, "remote_type", None) or type(error).__name__
            span.set_status(self._api.Status(self._api.StatusCode.ERROR, str(error)))
            span.set_attribute("error.type", name)
            span.record_exception(error)
        span.end()

    def sent(self, size: int) -> None:
        """The request's size in bytes."""
        self._span.set_attribute("messaging.message.body.size", size)

    def received(self, message: Message, status: str | None = None) -> None:
        """The reply (or, for a stream, the end of it)."""
        self._span.set_attribute("demessaging.response.body.size", len(message.payload))
        self._span.set_attribute("rpc.response.status_code", status or Status.SUCCESS.value)

    def item(self) -> None:
        """A stream's item arrived."""
        self._items += 1


def call(topic: str, member: str, *, stream: bool = False) -> Call | Off:
    """The hook of a call (or stream) to ``topic``: a span while tracing is on, else :data:`OFF`.

    Use it as a context manager around the whole call; it does not become the current span
    (a stream's span lives across the caller's own work between items).
    """
    api = _api()
    return OFF if api is None else Call(api, topic, member, stream)


# -- the backend -------------------------------------------------------------------------------


class _Serving:
    """What the backend knows of one request while it handles it."""

    __slots__ = ("member", "span")

    def __init__(self, span: Any) -> None:
        self.span = span
        self.member = ""


_SERVING: contextvars.ContextVar[_Serving | None] = contextvars.ContextVar(
    "demessaging_serving", default=None
)


async def served(
    reply: Awaitable[tuple[tuple[str, Message] | None, bool, bool]],
    topic: str,
    head: Message,
    request: Incoming,
) -> tuple[tuple[str, Message] | None, bool, bool]:
    """Await the reply to a request, in a span (while tracing is on) and with a log line.

    ``head`` is the request as received (its first piece), ``request`` the parsed request
    (a :class:`~demessaging.protocol.envelope.Request` or ``Query``). Queries (``ping``...)
    are neither traced nor logged.
    """
    with Served(topic, head, request) as serving:
        answer = await reply
        serving.answered(answer[0])  # the reply (the backend's other values: sent, acked)
        return answer


class Served:
    """A context manager: a request handled in a span (while tracing is on), with a log line.

    The synchronous form of :func:`served`, for a worker thread that handles a request from
    start to end; say the reply with :meth:`answered` before leaving it.
    """

    def __init__(self, topic: str, head: Message, request: Incoming) -> None:
        self._topic, self._head, self._request = topic, head, request
        self._on = isinstance(request, Request) and (
            _api() is not None or calls_log.isEnabledFor(logging.INFO)
        )
        self._status, self._failure = Status.ERROR.value, ("", "")

    def __enter__(self) -> Served:
        if not self._on:
            return self
        self._api = api = _api()
        self._started = time.monotonic()
        span = None
        if api is not None:
            attributes = _common(self._topic, "")
            attributes["messaging.message.conversation_id"] = self._request.context
            attributes["messaging.message.body.size"] = len(self._request.payload)
            attributes["demessaging.request.fragments"] = _fragments(self._head)
            span = _tracer(api).start_span(
                self._topic,
                context=_remote_parent(api, self._head.properties),
                kind=api.SpanKind.SERVER,
                attributes=attributes,
            )
        self._serving = _Serving(span)
        self._token = _SERVING.set(self._serving)
        return self

    def answered(self, reply: tuple[str, Message] | None) -> None:
        """The reply to the request (None if it has none)."""
        if reply is not None:
            self._status, self._failure = _status(reply[1])

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if not self._on:
            return
        if exc is not None:
            self._failure = (type(exc).__name__, str(exc))
        _SERVING.reset(self._token)
        span, member = self._serving.span, self._serving.member
        if span is not None:
            _finish(self._api, span, self._topic, member, self._status, self._failure)
        _log(self._request.context, member, self._status, self._failure, self._started, span)


def _fragments(head: Message) -> int:
    raw = head.properties.get(Prop.NUM_FRAGMENTS, "1")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else 1


def _status(reply: Message) -> tuple[str, tuple[str, str]]:
    """The status of a reply, and the error's type and message if it carries one."""
    status = reply.properties.get(Prop.STATUS, Status.SUCCESS.value)
    if status != Status.ERROR.value:
        return status, ("", "")
    info = parse_error(reply)
    return status, (info.type, info.message)


def _finish(
    api: Any, span: Any, topic: str, member: str, status: str, failure: tuple[str, str]
) -> None:
    if member:
        span.update_name(f"{topic}/{member}")
        span.set_attribute("rpc.method", member)
    span.set_attribute("rpc.response.status_code", status)
    if failure[0]:
        _fail(api, span, *failure)
    span.end()


def _log(
    context: str, name: str, status: str, failure: tuple[str, str], started: float, span: Any
) -> None:
    if not calls_log.isEnabledFor(logging.INFO):
        return
    duration = time.monotonic() - started
    extra: dict[str, Any] = {"member": name, "context": context, "status": status}
    extra["duration"] = round(duration, 6)
    if span is not None and span.get_span_context().is_valid:
        extra["trace_id"] = f"{span.get_span_context().trace_id:032x}"
        extra["span_id"] = f"{span.get_span_context().span_id:016x}"
    if failure[0]:
        extra["error"] = f"{failure[0]}: {failure[1]}"
    text = f"{name or 'request'} {context}: {status} in {duration * 1000:.1f} ms" + (
        f" ({extra['error']})" if failure[0] else ""
    )
    # made here rather than by calls_log.info, which looks up its caller's frame (the same
    # line every time) at a tenth of the line's cost
    calls_log.handle(
        calls_log.makeRecord(
            calls_log.name, logging.INFO, __file__, 0, text, (), None, "served", extra
        )
    )


def within(function: Callable[[], T]) -> Callable[[], T]:
    """``function`` (a request's call), run in the request's span on a worker thread.

    The spans the served function makes itself are then children of the request's; the
    member it called names the span and the log line. Itself while the request is neither
    traced nor logged.
    """
    serving = _SERVING.get()
    if serving is None:
        return function
    span = serving.span
    use_span = None if span is None else _api().use_span

    def run() -> T:
        if use_span is None:
            outcome = function()
        else:
            with use_span(span, record_exception=False, set_status_on_exception=False):
                outcome = function()
        serving.member = getattr(outcome, "member", "") or serving.member
        return outcome

    return run


def progress_event() -> Callable[[str, int], None] | None:
    """What records a progress report on the current request's span; None if not traced.

    Made on the listener's loop, called in a worker thread with the report's status and size.
    """
    serving = _SERVING.get()
    span = serving.span if serving is not None else None
    if span is None:
        return None

    def event(status: str, size: int) -> None:
        span.add_event(
            "demessaging.progress",
            {"demessaging.progress.status": status, "messaging.message.body.size": size},
        )

    return event


# -- the SDK, for ``demessaging listen`` ----------------------------------------------------------

_SDK_SIGNALS = ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT")


def configure_sdk(environ: Mapping[str, str] | None = None) -> str | None:
    """Set up OpenTelemetry's SDK from the standard ``OTEL_*`` variables, if asked and installed.

    Asked: ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``...) or an
    ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`` is set, and ``OTEL_SDK_DISABLED`` is not
    ``true``. ``none`` traces without exporting: spans are made (and their trace ids
    logged, their context passed on) but sent nowhere. Returns what was set up, or None if
    tracing stays off.
    """
    env = os.environ if environ is None else environ
    asked = any(env.get(name) for name in _SDK_SIGNALS) or env.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    if not asked or env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    exporters = env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        logging.getLogger("demessaging").warning(
            "OTEL_* asks for traces but opentelemetry-sdk is not installed: tracing is off"
        )
        return None
    provider = TracerProvider(resource=Resource.create({}))  # OTEL_SERVICE_NAME and others
    for name in (e.strip() for e in exporters.split(",") if e.strip() not in ("", "none")):
        provider.add_span_processor(BatchSpanProcessor(_exporter(name, env)))
    trace.set_tracer_provider(provider)
    return exporters


def _exporter(name: str, env: Mapping[str, str]) -> Any:
    """The span exporter that OpenTelemetry's packages register under ``name``.

    ``otlp`` is OTLP over gRPC or, if ``OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL`` says
    ``http/protobuf``, over HTTP.
    """
    from importlib.metadata import entry_points

    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", ""
    )
    registered = "otlp_proto_http" if name == "otlp" and protocol == "http/protobuf" else name
    found = list(entry_points(group="opentelemetry_traces_exporter", name=registered))
    if not found:
        package = "opentelemetry-exporter-otlp" if name.startswith("otlp") else "its package"
        raise ConfigurationError(
            f"OTEL_TRACES_EXPORTER={name}: no exporter of that name; install {package}"
        )
    return found[0].load()()
