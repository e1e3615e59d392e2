"""Apache Pulsar's admin REST API: `demessaging status` and `demessaging namespace`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from demessaging.client import Client
from demessaging.config import Settings
from demessaging.transport import TransportOptions
from demessaging.transport.admin import PulsarAdmin
from tests.brokers import Broker

from .conftest import Backend
from .test_calls import WORKERS


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "demessaging", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | (env or {}),
    )


def _status(broker: Broker, topic: str, env: dict[str, str] | None = None) -> dict[str, object]:
    done = _cli(
        "status",
        topic,
        "--json",
        "--broker-url",
        broker.url,
        "--admin-url",
        broker.admin_url,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    return result


def _admin_api(broker: Broker) -> None:
    if not broker.admin_url:
        pytest.skip(f"{broker.name} has no admin REST API")


def test_status_shows_each_backend_and_the_waiting_requests(
    broker: Broker, topic: str, backends: Callable[..., Backend], tmp_path: Path
) -> None:
    _admin_api(broker)
    never = _cli("status", f"{topic}-never", "--admin-url", broker.admin_url)
    assert never.returncode == 1
    assert "no backend has listened on it yet" in never.stderr
    backends(WORKERS, topic, workers=1)
    backends(WORKERS, topic, workers=1)
    status = _status(broker, topic)
    assert status["topic"] == f"persistent://public/default/{topic}"
    assert len(status["backends"]) == 2  # type: ignore[arg-type]
    assert status["waiting"] == 0

    marker = str(tmp_path / "marker")

    async def calls() -> None:
        with Client(topic, broker_url=broker.url, timeout=60) as client:
            request = {"func_name": "slow", "seconds": 2.0, "marker": marker}
            await asyncio.gather(*(client.acall(request) for _ in range(5)))

    caller = threading.Thread(target=asyncio.run, args=(calls(),))
    caller.start()
    try:
        # each backend runs one call and holds at most one more; the rest wait. The broker's
        # counts lag acknowledgements by up to 100 ms: only two equal snapshots are read.
        deadline = time.monotonic() + 10
        previous: tuple[object, ...] = ()
        while True:
            status = _status(broker, topic)
            holding = [b["holding"] for b in status["backends"]]  # type: ignore[attr-defined]
            counts = (*holding, status["waiting"])
            if min(holding) >= 1 and status["waiting"] >= 1 and counts == previous:
                break
            assert time.monotonic() < deadline, f"never saw calls held and waiting: {status}"
            previous = counts
            time.sleep(0.1)
        assert sum(holding) + status["waiting"] == 5  # type: ignore[operator]
    finally:
        caller.join(60)
    done = _status(broker, topic)
    assert [b["holding"] for b in done["backends"]] == [0, 0]  # type: ignore[attr-defined]
    assert done["waiting"] == 0
    text = _cli("status", topic, "--admin-url", broker.admin_url)
    assert "backends: 2 on subscription 'demessaging-backend'" in text.stdout
    assert text.stdout.count("  /127.0.0.1:") == 2


def test_namespace_creates_tenant_and_namespace_with_a_message_ttl(
    broker: Broker, topic: str, launch: Callable[..., Backend]
) -> None:
    _admin_api(broker)
    tenant, space = f"research-{uuid.uuid4().hex[:6]}", "climate"
    args = ("--broker-url", broker.url, "--admin-url", broker.admin_url)
    created = _cli("namespace", f"{tenant}/{space}", "--message-ttl", "120", *args)
    assert created.returncode == 0, created.stderr
    first = created.stdout.splitlines()[0]
    assert first == f"namespace {tenant}/{space} created; message TTL: 120 s"
    again = _cli("namespace", f"{tenant}/{space}", *args)
    assert again.stdout.splitlines()[0] == f"namespace {tenant}/{space} exists; message TTL: 120 s"
    env = {"DEMESSAGING_TENANT": tenant, "DEMESSAGING_NAMESPACE": space}
    launch(WORKERS, topic, broker.url, env=env)
    options = TransportOptions(tenant=tenant, namespace=space)
    settings = Settings(broker_url=broker.url, transport=options)
    with Client(topic, settings=settings, timeout=30) as client:
        assert client.call({"func_name": "echo_sum", "values": [2, 3]}) == 5.0
    status = _status(broker, topic, env=env)
    assert status["topic"] == f"persistent://{tenant}/{space}/{topic}"
    assert len(status["backends"]) == 1  # type: ignore[arg-type]


def test_a_closed_client_leaves_no_subscription_on_the_broker(
    broker: Broker, topic: str, backends: Callable[..., Backend]
) -> None:
    _admin_api(broker)
    backends(WORKERS, topic)
    with Client(topic, broker_url=broker.url, timeout=30) as client:
        client.ping()
        response = f"/admin/v2/persistent/public/default/{client.response_topic}/stats"
        assert len(PulsarAdmin(broker.admin_url).request("GET", response)["subscriptions"]) == 1
    assert PulsarAdmin(broker.admin_url).request("GET", response)["subscriptions"] == {}


def test_admin_commands_explain_a_broker_without_admin_api(broker: Broker, topic: str) -> None:
    if broker.admin_url:
        bad = _cli("status", topic, "--admin-url", "http://127.0.0.1:9")
        assert bad.returncode == 1
        assert "could not reach the admin REST API at http://127.0.0.1:9" in bad.stderr
        return
    done = _cli("status", topic, "--broker-url", broker.url)
    assert done.returncode == 1
    assert "has no admin REST API" in done.stderr
