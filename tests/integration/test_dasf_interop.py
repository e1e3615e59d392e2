"""Calls across demessaging and DASF's demessaging 0.6.4, over the WebSocket brokers.

demessaging 0.6.4 has the same import name, so it lives in a virtual environment of its own
(made once in the cache directory). Its backends and clients speak only the WebSocket API:
these tests run on ``pulsar-ws`` and ``dasf-broker``.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from demessaging.client import Client
from tests.brokers import Broker

from .conftest import Backend, dasf_backend, old_options, python_env, wait_until_answering

MODULE = '''\
"""A module both versions serve."""

__all__ = ["add", "repeat"]


def add(a: float, b: float = 1.0) -> float:
    """Add two numbers.

    Parameters
    ----------
    a
        The first.
    b
        The second.
    """
    return a + b


def repeat(text: str, times: int) -> str:
    """Repeat a text.

    Parameters
    ----------
    text
        What to repeat.
    times
        How often.
    """
    return text * times
'''


def old_command(python: Path, broker: Broker, topic: str, command: str) -> list[str]:
    """demessaging 0.6.4's command line for the module ``both`` on ``broker``."""
    return [str(python), "-m", "demessaging", "-m", "both", *old_options(broker, topic), command]


@pytest.fixture
def module_dir(tmp_path: Path) -> Path:
    (tmp_path / "both.py").write_text(MODULE)
    return tmp_path


@pytest.fixture
def old_backend(
    ws_broker: Broker, topic: str, old_python: Path, module_dir: Path
) -> Iterator[Backend]:
    with dasf_backend(old_command(old_python, ws_broker, topic, "listen"), module_dir) as backend:
        yield backend


def test_a_demessaging_client_calls_a_dasf_064_backend(
    ws_broker: Broker, topic: str, old_backend: Backend
) -> None:
    with Client(topic, broker_url=ws_broker.url, timeout=30) as client:
        wait_until_answering(client, old_backend)
        assert client.call({"func_name": "add", "a": 2, "b": 3}) == 5.0
        text = client.call({"func_name": "repeat", "text": "ab", "times": 600_000}, timeout=60)
        assert text == "ab" * 600_000  # 1.2 MB: DASF's reply fragments, put together
        assert client.info()["title"] == topic
        names = [f["name"] for f in client.api_info()["functions"]]
        assert names == ["add", "repeat"]
        with pytest.raises(Exception, match="error validating request"):
            client.call({"func_name": "add", "a": "not a number"})


def test_a_traced_call_to_a_dasf_064_backend_works(
    ws_broker: Broker, topic: str, old_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DASF 0.6.4 reads the properties it knows and ignores the trace context."""
    pytest.importorskip("opentelemetry.trace")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from demessaging.observe import tracing

    spans, provider = InMemorySpanExporter(), TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    monkeypatch.setattr(tracing, "_tracer", lambda api: provider.get_tracer("test"))
    sent: list[dict[str, str] | None] = []
    headers = tracing._headers
    monkeypatch.setattr(tracing, "_headers", lambda span: sent.append(headers(span)) or sent[-1])
    with Client(topic, broker_url=ws_broker.url, timeout=30) as client:
        wait_until_answering(client, old_backend)
        assert client.call({"func_name": "add", "a": 2, "b": 3}, member="add") == 5.0
    assert sent[-1] is not None
    assert "traceparent" in sent[-1]
    (span,) = [s for s in spans.get_finished_spans() if s.attributes["rpc.method"] == "add"]
    assert span.attributes["rpc.response.status_code"] == "success"
    assert span.status.status_code.name == "UNSET"
    provider.shutdown()


GENERATED_CLIENT_CALLS = """
import json
from demessaging.backend.utils import run_async

import client

producer = client.BackendModule.backend_config.messaging_config.producer
asked = {}
for kind in ("ping", "info", "api_info"):
    # an empty payload, which Apache Pulsar's WebSocket API needs, and dasf-broker-django not
    request = {"properties": {"messageType": kind}, "payload": ""}
    answer = run_async(producer.send_request, request)
    message = answer["msg"]
    asked[kind] = message["properties"]["messageType"] if kind == "ping" else json.loads(message)
print(json.dumps({
    "add": client.add(2, 3),
    "repeat": client.repeat("ab", 4),
    "asked": asked,
}))
"""


def test_a_dasf_064_generated_client_calls_a_demessaging_backend(
    ws_broker: Broker,
    topic: str,
    old_python: Path,
    module_dir: Path,
    launch: Callable[..., Backend],
) -> None:
    backend = launch(module_dir / "both.py", topic, ws_broker.url)
    generated = subprocess.run(
        [
            str(old_python),
            "-m",
            "demessaging",
            "-m",
            "both",
            *old_options(ws_broker, topic),
            "generate",
        ],
        cwd=module_dir,
        capture_output=True,
        text=True,
        timeout=120,
        env=python_env(old_python),
    )
    assert generated.returncode == 0, generated.stderr
    (module_dir / "client.py").write_text(generated.stdout)
    ran = subprocess.run(
        [str(old_python), "-c", GENERATED_CLIENT_CALLS],
        cwd=module_dir,
        capture_output=True,
        text=True,
        timeout=120,
        env=python_env(old_python),
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    result = json.loads(ran.stdout.strip().splitlines()[-1])
    assert result["add"] == 5.0
    assert result["repeat"] == "abababab"
    assert result["asked"]["ping"] == "pong"
    assert result["asked"]["info"]["title"] == "both"
    assert [f["name"] for f in result["asked"]["api_info"]["functions"]] == ["add", "repeat"]
    assert backend.process.poll() is None


TOPIC_STATE = """
from dasf_broker.models import BrokerTopic
topic = BrokerTopic.objects.get(slug={slug!r})
print(bool(topic.api_info), topic.last_pong.isoformat() if topic.last_pong else "never")
"""


def test_dasf_broker_django_sees_a_demessaging_backend_online(
    broker: Broker, topic: str, module_dir: Path, launch: Callable[..., Backend]
) -> None:
    if broker.django is None:
        pytest.skip("status pings are dasf-broker-django's")
    django = broker.django  # the topic fixture made the topic, as an admin does
    launch(module_dir / "both.py", topic, broker.url)

    def state() -> tuple[bool, str]:
        last = django.manage("shell", "-c", TOPIC_STATE.format(slug=topic)).splitlines()[-1]
        api_info, pong = last.split()
        return api_info == "True", pong

    deadline = time.monotonic() + 30
    while state() == (False, "never"):  # it asks every new consumer for its api_info
        assert time.monotonic() < deadline, state()
        time.sleep(0.2)
    assert state()[0]  # the api_info it keeps for the topic's page
    while state()[1] == "never":  # and the topic counts as answering
        assert time.monotonic() < deadline, state()
        time.sleep(0.2)
