"""Traces and JSON logs across two processes: a `demessaging listen` backend and a client.

The backend takes its tracing from the standard ``OTEL_*`` environment (the SDK's console
exporter, on its stdout) and logs JSON lines on stderr; the client sets up the SDK itself
with an exporter writing one span a line to a file. Their spans must form one trace per
call, the backend's the child of the client's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from demessaging._local import stop_process
from tests.brokers import Broker

pytest.importorskip("opentelemetry.sdk.trace")

MODULE = '''
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
'''

CLIENT = """
import json, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor

spans = open(sys.argv[3], "w")
provider = TracerProvider()
provider.add_span_processor(
    SimpleSpanProcessor(ConsoleSpanExporter(out=spans, formatter=lambda s: s.to_json(None) + "\\n"))
)
trace.set_tracer_provider(provider)

from demessaging import Client
from demessaging.errors import RemoteError

with Client(sys.argv[2], broker_url=sys.argv[1], timeout=30) as client:
    assert client.call({"func_name": "total", "values": [1, 2, 3]}, member="total") == 6
    try:
        client.call({"func_name": "fail", "text": "on purpose"}, member="fail")
    except RemoteError as exc:
        print("failed as asked:", exc)
provider.shutdown()
"""


def _objects(text: str) -> list[dict[str, Any]]:
    """The JSON objects written one after another (the console exporter indents them)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at == len(text):
            return found
        value, at = decoder.raw_decode(text, at)
        found.append(value)


def _pulsar(broker: Broker) -> bool:
    return broker.name in ("pulsar-lite", "pulsar")


def test_one_trace_across_processes_and_json_logs(
    broker: Broker, broker_url: str, tmp_path: Path
) -> None:
    if broker.name == "dasf-broker":
        pytest.skip("dasf-broker-django: the same on every broker; one is enough here")
    module = tmp_path / "observed.py"
    module.write_text(MODULE, encoding="utf-8")
    topic = f"observed-{os.getpid()}-{time.monotonic_ns()}"
    stdout, stderr = tmp_path / "backend.out", tmp_path / "backend.err"
    env = os.environ | {
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_SERVICE_NAME": "observed-backend",
        "DEMESSAGING_LOG_FORMAT": "json",
    }
    command = [sys.executable, "-m", "demessaging", "listen", str(module), "--topic", topic]
    command += ["--broker-url", broker_url, "--log-level", "debug"]
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        backend = subprocess.Popen(command, stdout=out, stderr=err, cwd=tmp_path, env=env)
    try:
        deadline = time.monotonic() + 30
        while "serving" not in stderr.read_text(errors="replace"):
            if backend.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the backend did not start:\n{stderr.read_text(errors='replace')}")
            time.sleep(0.05)
        spans_file = tmp_path / "client-spans.jsonl"
        client_env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        called = subprocess.run(
            [sys.executable, "-c", CLIENT, broker_url, topic, str(spans_file)],
            capture_output=True,
            text=True,
            timeout=120,
            env=client_env,
            cwd=tmp_path,
        )
        assert called.returncode == 0, called.stderr
        assert "on purpose" in called.stdout
    finally:
        stop_process(backend, 20, name="the backend")
    assert backend.returncode == 0, stderr.read_text(errors="replace")

    # -- traces: one per call, the backend's span the child of the client's
    written = spans_file.read_text().splitlines()
    client_spans = {s["attributes"]["rpc.method"]: s for s in map(json.loads, written)}
    served = {s["attributes"]["rpc.method"]: s for s in _objects(stdout.read_text())}
    assert set(client_spans) == set(served) == {"total", "fail"}
    for member in ("total", "fail"):
        caller, backend_span = client_spans[member], served[member]
        assert caller["kind"] == "SpanKind.CLIENT"
        assert backend_span["kind"] == "SpanKind.SERVER"
        assert backend_span["context"]["trace_id"] == caller["context"]["trace_id"]
        assert backend_span["parent_id"] == caller["context"]["span_id"]
        assert backend_span["resource"]["attributes"]["service.name"] == "observed-backend"
        assert backend_span["attributes"]["messaging.destination.name"] == topic
    assert served["total"]["status"]["status_code"] == "UNSET"
    progress = [e for e in served["total"]["events"] if e["name"] == "demessaging.progress"]
    assert len(progress) >= 2
    for span in (served["fail"], client_spans["fail"]):
        assert span["status"]["status_code"] == "ERROR"
        assert span["attributes"]["error.type"] == "ValueError"
        assert any(e["name"] == "exception" for e in span["events"])

    # -- logs: every line is JSON; calls carry their member, context, duration, trace id
    lines = [json.loads(line) for line in stderr.read_text().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    calls = {line["member"]: line for line in lines if line["logger"] == "demessaging.calls"}
    assert calls["total"]["status"] == "success"
    assert calls["fail"]["status"] == "error"
    assert "on purpose" in calls["fail"]["error"]
    assert calls["total"]["trace_id"] == served["total"]["context"]["trace_id"][2:]
    assert calls["total"]["duration"] >= 0
    messages = " ".join(line["message"] for line in lines)
    assert "serving" in messages
    assert "stopped serving" in messages
    if _pulsar(broker):  # pulsar-client's own lines, through the same handler
        assert any(line["logger"] == "pulsar" for line in lines), messages
