"""A backend's Prometheus metrics and /healthz (demessaging.observe.metrics), in one process.

A listener on the in-memory broker with :class:`Metrics` watching it, and its
:class:`MetricsServer` on a free port of 127.0.0.1, scraped over HTTP and parsed with
prometheus-client's own parser. The whole path through ``demessaging listen`` and a broker
is in tests/integration/test_metrics.py.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import socket
import string
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from demessaging.backend import Dispatcher, Listener, ListenerThread
from demessaging.cli import cli
from demessaging.client import Client
from demessaging.config import Settings
from demessaging.errors import ConfigurationError, RemoteError
from demessaging.message import Message
from demessaging.observe.metrics import UNKNOWN, Metrics, MetricsServer, serving
from demessaging.transport.memory import MemoryBroker, MemoryTransport

MODULE = '''
import threading

STARTED = threading.Event()
RELEASE = threading.Event()


def add(a: int, b: int) -> int:
    """Add."""
    return a + b


def fail(text: str) -> str:
    """Raise ValueError."""
    raise ValueError(text)


def hold() -> str:
    """Wait until the test releases it."""
    STARTED.set()
    RELEASE.wait(20)
    return "released"
'''

#: The member series a scrape shows, besides the module's: the one for everything else.
MEMBERS = {"add", "fail", "hold", UNKNOWN}


def get(url: str) -> tuple[int, str]:
    """The status and body of a GET, errors included (bounded)."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


class Metered:
    """A listener on the in-memory broker, watched by :class:`Metrics`, and its server."""

    def __init__(self, path: Path, broker: MemoryBroker) -> None:
        self.module = path.stem
        dispatcher = Dispatcher.from_module(path)
        self.listener = Listener(dispatcher, MemoryTransport(broker), "metered", workers=4)
        self.metrics = Metrics()
        self.server = MetricsServer(self.metrics, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.port}"
        self.thread = ListenerThread(self.listener)
        self.client = Client("metered", transport=MemoryTransport(broker), timeout=10)

    def scrape(self) -> dict[Any, float]:
        status, text = get(f"{self.url}/metrics")
        assert status == 200, text
        return samples(text)

    def health(self) -> tuple[int, dict[str, Any]]:
        status, text = get(f"{self.url}/healthz")
        return status, json.loads(text)

    def close(self) -> None:
        sys.modules[self.module].RELEASE.set()
        self.client.close()
        self.thread.stop()
        self.server.close()


@pytest.fixture
def metered(write_module: Callable[..., Path]) -> Iterator[Metered]:
    backend = Metered(write_module(MODULE, "metered"), MemoryBroker())
    backend.metrics.watch(backend.listener)
    backend.thread.start()
    yield backend
    backend.close()


def test_the_counts_of_calls_that_succeed_fail_and_are_refused(metered: Metered) -> None:
    for n in range(7):
        assert metered.client.call({"func_name": "add", "a": n, "b": 1}) == n + 1
    for _ in range(3):
        with pytest.raises(RemoteError, match="ValueError"):
            metered.client.call({"func_name": "fail", "text": "no"})
    with pytest.raises(RemoteError, match="ValidationError"):
        metered.client.call({"func_name": "add", "a": "not a number", "b": 1})
    found = metered.scrape()
    total = "demessaging_requests_total"
    assert value(found, total, member="add", status="ok") == 7
    assert value(found, total, member="fail", status="error") == 3
    assert value(found, total, member=UNKNOWN, status="invalid") == 1
    assert value(found, total, member="add", status="error") == 0  # there from the start
    durations = "demessaging_request_duration_seconds_count"
    assert value(found, durations, member="add") == 7
    assert value(found, durations, member="fail") == 3
    assert value(found, durations, member="hold") == 0
    sizes = "demessaging_payload_bytes_count"
    assert value(found, sizes, direction="request") == 11
    assert value(found, sizes, direction="reply") == 7  # successful replies only
    assert value(found, "demessaging_requests_in_flight") == 0
    assert value(found, "demessaging_redeliveries_total") == 0
    assert any(name.startswith("process_") for name, _ in found)  # the process collector


def test_in_flight_and_health_while_draining(metered: Metered) -> None:
    assert metered.health() == (200, {"state": "serving", "topic": "metered"})
    call = threading.Thread(target=metered.client.call, args=({"func_name": "hold"},))
    call.start()
    assert sys.modules[metered.module].STARTED.wait(10)
    assert value(metered.scrape(), "demessaging_requests_in_flight") == 1
    loop = metered.thread._loop
    assert loop is not None
    loop.call_soon_threadsafe(metered.listener.stop)  # as SIGTERM does
    status, body = metered.health()
    for _ in range(100):  # stop() reaches the loop at its next turn
        if body["state"] == "draining":
            break
        time.sleep(0.02)
        status, body = metered.health()
    assert (status, body["state"]) == (503, "draining")
    sys.modules[metered.module].RELEASE.set()
    call.join(10)
    assert value(metered.scrape(), "demessaging_requests_total", member="hold", status="ok") == 1


def test_health_says_starting_until_the_listener_serves(
    write_module: Callable[..., Path],
) -> None:
    backend = Metered(write_module(MODULE, "metered"), MemoryBroker())
    try:
        assert backend.health() == (503, {"state": "starting"})  # nothing watched yet
        backend.metrics.watch(backend.listener)
        assert backend.health() == (503, {"state": "starting", "topic": "metered"})
        backend.thread.start()
        assert backend.health() == (200, {"state": "serving", "topic": "metered"})
    finally:
        backend.close()


def test_member_names_from_the_wire_make_no_new_series(metered: Metered) -> None:
    rng = random.Random(19)
    names = {"".join(rng.choices(string.ascii_letters, k=12)) for _ in range(40)}
    for name in names:
        with pytest.raises(RemoteError, match="ValidationError"):
            metered.client.call({"func_name": name})
    found = metered.scrape()
    labelled = {dict(labels).get("member") for _, labels in found} - {None}
    assert labelled == MEMBERS
    assert value(found, "demessaging_requests_total", member=UNKNOWN, status="invalid") == len(
        names
    )


def test_an_unknown_path_is_404_and_metrics_only_on_get(metered: Metered) -> None:
    status, text = get(f"{metered.url}/secret/../../etc/passwd")
    assert status == 404
    assert "/metrics" in text
    assert get(f"{metered.url}/")[0] == 404
    request = urllib.request.Request(f"{metered.url}/metrics", data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    refused.value.close()
    assert refused.value.code == 405


def test_a_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            ConfigurationError, match=re.escape(f"127.0.0.1:{port}: the port is in use")
        ):
            MetricsServer(Metrics(), "127.0.0.1", port)
        # and from the command line, before the module is even loaded
        result = CliRunner().invoke(
            cli, ["listen", "no_such_module.py", "--metrics-port", str(port)]
        )
    assert result.exit_code == 1
    assert "the port is in use" in result.output


def test_a_host_that_is_not_ours_is_a_clear_error() -> None:
    with pytest.raises(ConfigurationError, match=re.escape("cannot serve metrics on 192.0.2.1:0")):
        MetricsServer(Metrics(), "192.0.2.1", 0)
    result = CliRunner().invoke(
        cli, ["listen", "no_such_module.py", "--metrics-port", "9", "--metrics-host", "192.0.2.1"]
    )
    assert result.exit_code == 1
    assert "cannot serve metrics on 192.0.2.1:9" in result.output


def test_redeliveries_are_counted() -> None:
    metrics = Metrics()
    metrics.received(Message(b"", message_id="1"))
    metrics.received(Message(b"", message_id="1", redelivery_count=2))
    found = samples(_exposition(metrics))
    assert value(found, "demessaging_redeliveries_total") == 1


def test_the_memory_broker_counts_redeliveries() -> None:
    async def run() -> list[int]:
        transport = MemoryTransport(MemoryBroker())
        subscription = await transport.subscribe("t", "s", shared=True)
        await transport.publish("t", Message(b"x"))
        counts = []
        for _ in range(3):
            message = await subscription.receive()
            counts.append(message.redelivery_count)
            await subscription.nack(message)
        await transport.close()
        return counts

    assert asyncio.run(run()) == [0, 1, 2]


def test_listener_refusals_are_counted() -> None:
    metrics = Metrics()
    for kind in ("DeadlineExceeded", "CallCancelled", "ProtocolError", "KeyError"):
        metrics.refused(kind)
    found = samples(_exposition(metrics))
    total = "demessaging_requests_total"
    for status in ("expired", "cancelled", "invalid", "error"):
        assert value(found, total, member=UNKNOWN, status=status) == 1


def test_without_a_port_neither_prometheus_client_nor_a_server_is_imported() -> None:
    code = (
        "import sys\n"
        "from demessaging.cli import cli\n"
        "from demessaging.config import Settings\n"
        "from demessaging.observe.metrics import serving\n"
        "with serving(Settings()) as metrics:\n"
        "    assert metrics is None\n"
        "print(sorted(m for m in sys.modules if m.startswith(('prometheus_client', 'wsgiref'))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_without_prometheus_client_metrics_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ConfigurationError, match=r"demessaging\[metrics\]"):
        Metrics()


def test_the_port_and_host_come_from_the_environment() -> None:
    settings = Settings.from_env(
        environ={"DEMESSAGING_METRICS_PORT": "9464", "DEMESSAGING_METRICS_HOST": "0.0.0.0"}
    )
    assert (settings.metrics_port, settings.metrics_host) == (9464, "0.0.0.0")
    assert Settings.from_env(environ={}).metrics_port == 0  # off
    with pytest.raises(ConfigurationError, match="DEMESSAGING_METRICS_PORT must be a port"):
        Settings.from_env(environ={"DEMESSAGING_METRICS_PORT": "70000"})
    with pytest.raises(ConfigurationError, match="not a whole number"):
        Settings.from_env(environ={"DEMESSAGING_METRICS_PORT": "http"})


def test_serving_starts_and_stops_the_server() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with serving(Settings(metrics_port=port)) as metrics:
        assert metrics is not None
        assert get(f"http://127.0.0.1:{port}/healthz")[0] == 503
    with pytest.raises(urllib.error.URLError, match="refused"):  # closed
        urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)


def _exposition(metrics: Metrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()


@pytest.mark.parametrize(
    ("kind", "stage", "status"),
    [
        ("ValidationError", "request", "invalid"),
        ("ValueError", "execution", "error"),
        ("demessaging.errors.CallCancelled", "execution", "cancelled"),
        ("ResultError", "result", "error"),
    ],
)
def test_the_status_of_an_outcome(kind: str, stage: Any, status: str) -> None:
    from demessaging.observe.metrics import status_of
    from demessaging.protocol.envelope import ErrorInfo

    assert status_of(None) == "ok"
    assert status_of(ErrorInfo(type=kind, message="m", stage=stage)) == status
