"""``demessaging listen --metrics-port``: /metrics and /healthz of a backend in its own process.

The backend is a ``demessaging listen`` process on the session's broker; the test scrapes it
over HTTP on 127.0.0.1 (bounded waits) and parses the scrape with prometheus-client's parser.
"""

from __future__ import annotations

import json
import signal
import socket
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from demessaging.client import Client
from demessaging.errors import RemoteError

from .conftest import Backend

MODULE = '''
import time
from pathlib import Path

HERE = Path(__file__).parent
# Loading waits for the test's word: /healthz says "starting" meanwhile.
for _ in range(600):
    if (HERE / "go").exists():
        break
    time.sleep(0.05)


def add(a: int, b: int) -> int:
    """Add."""
    return a + b


def fail(text: str) -> str:
    """Raise ValueError."""
    raise ValueError(text)


def slow() -> str:
    """Say it started, then wait until the test releases it."""
    (HERE / "started").touch()
    for _ in range(400):
        if (HERE / "release").exists():
            break
        time.sleep(0.05)
    return "done"
'''

CALLS, FAILURES = 9, 4


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(url: str) -> tuple[int, str]:
    """Status and body of a GET (errors included); raises OSError if nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def wait_for(check: Callable[[], Any], what: str, seconds: float = 30) -> Any:
    """The first truthy ``check()`` within ``seconds`` (OSError counts as not yet)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            found = check()
        except OSError:
            found = None
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, text = get(f"{url}/metrics")
    assert status == 200, text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def test_metrics_and_health_of_a_listening_backend(
    tmp_path: Path, broker_url: str, topic: str, launch: Callable[..., Backend]
) -> None:
    folder = tmp_path / "module"
    folder.mkdir()
    module = folder / "metered.py"
    module.write_text(textwrap.dedent(MODULE))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    backend = launch(
        module,
        topic,
        broker_url,
        workers=2,
        env={"DEMESSAGING_METRICS_PORT": str(port)},
        wait=False,
    )

    # start-up: the server answers before the module is loaded and the backend subscribed
    status, body = wait_for(lambda: get(f"{url}/healthz"), "/healthz to answer")
    assert (status, json.loads(body)["state"]) == (503, "starting")
    assert get(f"{url}/nowhere")[0] == 404
    (folder / "go").touch()
    wait_for(lambda: get(f"{url}/healthz")[0] == 200, "/healthz to say serving")
    assert json.loads(get(f"{url}/healthz")[1]) == {"state": "serving", "topic": topic}

    client = Client(topic, broker_url=broker_url, timeout=30)
    try:
        for n in range(CALLS - FAILURES):
            assert client.call({"func_name": "add", "a": n, "b": 1}) == n + 1
        for _ in range(FAILURES):
            with pytest.raises(RemoteError, match="ValueError"):
                client.call({"func_name": "fail", "text": "no"})
        with pytest.raises(RemoteError, match="ValidationError"):
            client.call({"func_name": "add", "a": "not a number", "b": 1})
        with pytest.raises(RemoteError, match="ValidationError"):
            client.call({"func_name": "nosuchmember"})

        found = scrape(url)
        total = "demessaging_requests_total"
        assert value(found, total, member="add", status="ok") == CALLS - FAILURES
        assert value(found, total, member="fail", status="error") == FAILURES
        # a request that did not validate named no member for sure: one label for them all
        assert value(found, total, member="add", status="invalid") == 0
        assert value(found, total, member="(unknown)", status="invalid") == 2
        durations = "demessaging_request_duration_seconds_count"
        assert value(found, durations, member="add") == CALLS - FAILURES
        assert value(found, durations, member="(unknown)") == 2
        assert value(found, durations, member="fail") == FAILURES
        sizes = "demessaging_payload_bytes_count"
        assert value(found, sizes, direction="request") == CALLS + 2
        assert value(found, sizes, direction="reply") == CALLS - FAILURES
        assert value(found, "demessaging_requests_in_flight") == 0
        assert value(found, "demessaging_redeliveries_total") == 0
        assert value(found, "process_open_fds") > 0

        # drain: SIGTERM while a slow call runs
        answer: list[Any] = []
        call = threading.Thread(target=lambda: answer.append(client.call({"func_name": "slow"})))
        call.start()
        wait_for(lambda: (folder / "started").exists(), "the slow call to start")
        assert value(scrape(url), "demessaging_requests_in_flight") == 1
        backend.process.terminate()
        status, body = wait_for(
            lambda: (found := get(f"{url}/healthz"))[0] == 503 and found, "/healthz to say 503"
        )
        assert json.loads(body) == {"state": "draining", "topic": topic}
        assert backend.process.poll() is None  # still finishing the slow call
        (folder / "release").touch()
        call.join(30)
        assert answer == ["done"]
        assert backend.process.wait(30) == 0
    finally:
        (folder / "release").touch()
        client.close()
    with pytest.raises(urllib.error.URLError, match="refused"):  # gone with the process
        get(f"{url}/healthz")


def test_a_port_in_use_stops_the_backend_with_a_clear_error(
    tmp_path: Path, broker_url: str, topic: str, launch: Callable[..., Backend]
) -> None:
    module = tmp_path / "plain.py"
    module.write_text('def add(a: int, b: int) -> int:\n    """Add."""\n    return a + b\n')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        backend = launch(
            module, topic, broker_url, env={"DEMESSAGING_METRICS_PORT": str(port)}, wait=False
        )
        assert backend.process.wait(30) == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}: the port is in use" in backend.output()


def test_a_request_the_broker_delivers_again_is_counted(
    tmp_path: Path, broker_name: str, broker_url: str, topic: str, launch: Callable[..., Backend]
) -> None:
    """The count is the broker's: Apache Pulsar (and the brokers behind it) gives a request
    whose consumer died again with a redelivery count of 0, pulsar-lite with 1."""
    folder = tmp_path / "module"
    folder.mkdir()
    (folder / "go").touch()
    module = folder / "metered.py"
    module.write_text(textwrap.dedent(MODULE))
    first, second = free_port(), free_port()
    doomed = launch(module, topic, broker_url, env={"DEMESSAGING_METRICS_PORT": str(first)})
    client = Client(topic, broker_url=broker_url, timeout=60)
    try:
        answer: list[Any] = []
        call = threading.Thread(target=lambda: answer.append(client.call({"func_name": "slow"})))
        call.start()
        wait_for(lambda: (folder / "started").exists(), "the slow call to start")
        survivor = launch(module, topic, broker_url, env={"DEMESSAGING_METRICS_PORT": str(second)})
        assert value(scrape(f"http://127.0.0.1:{second}"), "demessaging_redeliveries_total") == 0
        doomed.stop(signal.SIGKILL)  # before it could answer: the broker gives the request again
        (folder / "release").touch()
        call.join(60)
        assert answer == ["done"]
        found = scrape(f"http://127.0.0.1:{second}")
        counted = value(found, "demessaging_redeliveries_total")
        assert counted == 1 if broker_name == "pulsar-lite" else counted in (0, 1)
        assert value(found, "demessaging_requests_total", member="slow", status="ok") == 1
        assert survivor.process.poll() is None
    finally:
        (folder / "release").touch()
        client.close()
