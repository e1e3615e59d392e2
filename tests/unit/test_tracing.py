"""Tracing: the trace context in request properties, spans in client and backend, and nothing
at all while the program has not imported OpenTelemetry."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from demessaging.backend import ListenerThread
from demessaging.client import Client
from demessaging.errors import ConfigurationError, RemoteError
from demessaging.message import Prop
from demessaging.observe import tracing

trace_api = pytest.importorskip("opentelemetry.trace")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

MODULE = '''
from collections.abc import Iterator

from demessaging import Reporter


def total(values: list[float], progress: Reporter) -> float:
    """Add the values up, one step each."""
    progress.start("adding", total=len(values))
    for _ in values:
        progress.advance()
    return sum(values)


def fail(text: str) -> None:
    """Fail with ``text``."""
    raise ValueError(text)


def numbers(n: int) -> Iterator[int]:
    """Count to n."""
    yield from range(1, n + 1)


def current() -> str:
    """The span the function runs in, as its span id in hex."""
    from opentelemetry import trace

    return f"{trace.get_current_span().get_span_context().span_id:016x}"
'''

CLIMATE = Path(__file__).resolve().parents[2] / "examples" / "climate.py"
VALID = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Spans of this test alone: a tracer provider of its own (the global one is left alone)."""
    exporter = InMemorySpanExporter()
    provider = sdk_trace.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_tracer", lambda api: provider.get_tracer("test"))
    yield exporter
    provider.shutdown()


@pytest.fixture
def backend(write_backend: Callable[[str], Path], serve: Callable[..., ListenerThread]) -> Path:
    path = write_backend(MODULE)
    serve(path)
    return path


def _by_kind(exporter: InMemorySpanExporter) -> dict[str, Any]:
    found = {span.kind.name: span for span in exporter.get_finished_spans()}
    assert set(found) == {"CLIENT", "SERVER"}, exporter.get_finished_spans()
    return found


# -- the trace context on the wire --------------------------------------------------------------


def test_a_valid_traceparent_is_read() -> None:
    assert tracing.parse_traceparent(VALID) == (
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        1,
    )
    # a later version may add fields; version 00 may not
    assert tracing.parse_traceparent("01" + VALID[2:] + "-more") is not None
    assert tracing.parse_traceparent(VALID + "-more") is None


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        VALID.upper(),  # hex is lower case
        VALID[:-1],
        VALID + "0",
        "ff" + VALID[2:],  # version ff is invalid
        "00-" + "0" * 32 + "-b7ad6b7169203331-01",  # all-zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-" + "0" * 16 + "-01",
        VALID.replace("-", "_"),
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0\u0661",  # not ASCII
        "01" + VALID[2:] + "-" + "x" * 300,  # oversized
        "x" * 100_000,
    ],
)
def test_a_malformed_traceparent_is_ignored(text: str | None) -> None:
    assert tracing.parse_traceparent(text) is None


def test_tracestate_is_read_within_bounds() -> None:
    assert tracing.parse_tracestate("congo=t61rcWkgMzE, rojo=00f067aa0ba902b7") == [
        ("congo", "t61rcWkgMzE"),
        ("rojo", "00f067aa0ba902b7"),
    ]
    assert tracing.parse_tracestate("a@b=1,,c=2") == [("a@b", "1"), ("c", "2")]
    assert tracing.parse_tracestate("Upper=1") == []
    assert tracing.parse_tracestate("a=1,a=2") == []  # a key twice
    assert tracing.parse_tracestate(",".join(f"k{i}=v" for i in range(33))) == []
    assert tracing.parse_tracestate("k=" + "v" * tracing.MAX_TRACESTATE) == []


@given(st.text(max_size=600))
def test_any_text_is_read_or_ignored_without_error(text: str) -> None:
    parsed = tracing.parse_traceparent(text)
    if parsed is not None:
        assert len(text) >= 55
        assert parsed[0]
        assert parsed[1]
    members = tracing.parse_tracestate(text)
    assert (len(members) <= 32 and len(text) <= tracing.MAX_TRACESTATE) or not members


# -- spans --------------------------------------------------------------------------------------


def test_the_backend_span_is_the_child_of_the_callers(
    spans: InMemorySpanExporter, backend: Path, client: Callable[..., Client]
) -> None:
    assert client().call({"func_name": "total", "values": [1, 2, 3]}, member="total") == 6
    found = _by_kind(spans)
    caller, served = found["CLIENT"], found["SERVER"]
    assert served.context.trace_id == caller.context.trace_id
    assert served.parent is not None
    assert served.parent.is_remote
    assert served.parent.span_id == caller.context.span_id
    assert (caller.name, served.name) == ("t/total", "t/total")
    for span in (caller, served):
        assert span.attributes["messaging.system"] == "pulsar"
        assert span.attributes["messaging.destination.name"] == "t"
        assert span.attributes["rpc.method"] == "total"
        assert span.attributes["rpc.response.status_code"] == "success"
        assert span.attributes["messaging.message.body.size"] > 0
        assert span.status.status_code.name == "UNSET"
    assert served.attributes["demessaging.request.fragments"] == 1
    progress = [e for e in served.events if e.name == "demessaging.progress"]
    assert len(progress) >= 2  # the start and the end at least
    assert progress[-1].attributes["demessaging.progress.status"] == "success"


def test_the_served_function_runs_in_the_backends_span(
    spans: InMemorySpanExporter, backend: Path, client: Callable[..., Client]
) -> None:
    """So that the spans it makes itself (a database, a download...) are children of it."""
    inside = client().call({"func_name": "current"}, member="current")
    assert inside == f"{_by_kind(spans)['SERVER'].context.span_id:016x}"


def test_an_error_call_gives_error_spans_on_both_sides(
    spans: InMemorySpanExporter, backend: Path, client: Callable[..., Client]
) -> None:
    with pytest.raises(RemoteError, match="broken"):
        client().call({"func_name": "fail", "text": "broken"}, member="fail")
    for span in _by_kind(spans).values():
        assert span.status.status_code.name == "ERROR"
        assert span.attributes["error.type"] == "ValueError"
        (event,) = [e for e in span.events if e.name == "exception"]
        assert "broken" in event.attributes["exception.message"]


def test_a_stream_has_one_span_with_its_items(
    spans: InMemorySpanExporter, backend: Path, client: Callable[..., Client]
) -> None:
    assert list(client().stream({"func_name": "numbers", "n": 5}, member="numbers")) == [
        1,
        2,
        3,
        4,
        5,
    ]
    caller = _by_kind(spans)["CLIENT"]
    assert caller.attributes["demessaging.stream"] is True
    assert caller.attributes["demessaging.stream.items"] == 5


def test_hostile_trace_context_is_ignored_and_the_call_works(
    spans: InMemorySpanExporter,
    backend: Path,
    client: Callable[..., Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caller = client()
    sent: list[dict[str, str]] = []
    monkeypatch.setattr(tracing, "_headers", lambda span: sent[-1])

    @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        parent=st.one_of(st.text(max_size=80), st.text(min_size=2000, max_size=5000)),
        state=st.text(max_size=1000),
    )
    def call(parent: str, state: str) -> None:
        spans.clear()
        sent.append({Prop.TRACEPARENT: parent, Prop.TRACESTATE: state})
        assert caller.call({"func_name": "numbers", "n": 0}) == []
        served = _by_kind(spans)["SERVER"]
        if tracing.parse_traceparent(parent) is None:
            assert served.parent is None  # a trace of its own

    call()


def test_the_api_without_an_sdk_traces_nothing_and_the_call_works(
    monkeypatch: pytest.MonkeyPatch,
    backend: Path,
    client: Callable[..., Client],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A program that imported the API but set up no SDK: its spans do not record."""
    monkeypatch.setattr(tracing, "_tracer", lambda api: trace_api.NoOpTracer())
    caplog.set_level("INFO", logger="demessaging.calls")
    assert client().call({"func_name": "total", "values": [1, 2]}, member="total") == 3
    with pytest.raises(RemoteError, match="broken"):
        client().call({"func_name": "fail", "text": "broken"}, member="fail")
    lines = [r for r in caplog.records if r.name == "demessaging.calls"]
    assert [(r.member, r.status) for r in lines] == [("total", "success"), ("fail", "error")]
    assert not any(hasattr(r, "trace_id") for r in lines)


def test_without_opentelemetry_nothing_is_imported_nor_sent(tmp_path: Path) -> None:
    """A program that does not import OpenTelemetry: no import, no property, no cost."""
    code = f"""
import json, sys, timeit
from demessaging import Client, serve
from demessaging.backend import listener
from demessaging.observe import tracing

seen = []
handle = listener.Listener._reply
async def spy(self, request, *rest):
    seen.append(sorted(request.message.properties))
    return await handle(self, request, *rest)
listener.Listener._reply = spy
with serve({str(CLIMATE)!r}, broker_url="memory://quiet"), \\
        Client("climate", broker_url="memory://quiet") as client:
    assert client.call({{"func_name": "total", "values": [1.0]}}) == 1.0
hook = timeit.timeit(lambda: tracing.call("t", "m"), number=100_000) / 100_000
print(json.dumps({{"otel": sorted(m for m in sys.modules if "opentelemetry" in m),
                  "properties": seen[0], "hook": hook}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["otel"] == []
    assert Prop.TRACEPARENT not in found["properties"]
    assert Prop.REQUEST_CONTEXT in found["properties"]
    assert found["hook"] < 5e-6  # the client's hook while off: a dictionary look-up


def test_off_the_hook_is_the_shared_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "opentelemetry.trace")
    assert tracing.call("t", "m") is tracing.OFF
    assert tracing.OFF.headers is None
    assert tracing.progress_event() is None


def test_the_tracer_is_made_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Asking the provider for a tracer on every call costs more than the span itself."""
    asked: list[str] = []
    api = type("Api", (), {"get_tracer": lambda *args: asked.append(args[0]) or object()})
    monkeypatch.setattr(tracing, "_TRACERS", [])
    assert tracing._tracer(api) is tracing._tracer(api)
    assert asked == ["demessaging"]


def test_listen_sets_up_the_sdk_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Any] = []
    monkeypatch.setattr(trace_api, "set_tracer_provider", made.append)
    assert tracing.configure_sdk({}) is None
    env = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}
    assert tracing.configure_sdk(env) is None
    assert not made
    assert tracing.configure_sdk({"OTEL_TRACES_EXPORTER": "console"}) == "console"
    assert len(made) == 1
    made[0].shutdown()
    # none: spans are made (trace ids in the logs, context passed on), exported nowhere
    assert tracing.configure_sdk({"OTEL_TRACES_EXPORTER": "none"}) == "none"
    assert len(made) == 2
    assert made[1].get_tracer("t").start_span("s").is_recording()
    made[1].shutdown()
    with pytest.raises(ConfigurationError, match="no exporter of that name"):
        tracing.configure_sdk({"OTEL_TRACES_EXPORTER": "nonesuch"})
