"""What calls leave on a broker's disk, and when it is given back.

pulsar-lite deletes nothing while it runs (every request stays whole); the data of a stopped
embedded broker goes when the next one starts after ``DEMESSAGING_EMBEDDED_KEEP`` seconds.
Apache Pulsar deletes what `demessaging namespace` tells it to; closed clients and stopped
backends leave no subscription there.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from demessaging import Client, embedded, serve
from demessaging.config import Settings
from demessaging.transport import TransportOptions
from demessaging.transport.admin import RECOMMENDED, Cleanup, PulsarAdmin
from tests.brokers import Broker

from .conftest import ROOT, Backend
from .test_calls import WORKERS

CLIMATE = str(ROOT / "examples" / "climate.py")
MIB = 1024 * 1024


def _calls(url: str, count: int, mib: int) -> list[str]:
    """``count`` calls with a ``mib`` MiB array, each by a client of its own; their topics."""
    values = np.zeros(mib * MIB // 8)
    topics = []
    for _ in range(count):
        with Client("climate", broker_url=url, timeout=120) as client:
            assert client.call({"func_name": "total", "values": values}) == 0.0
            topics.append(client.response_topic)
    return topics


def _mentions(folder: Path, text: str) -> bool:
    """Whether any file of the broker's messages holds ``text``."""
    files = (folder / "pulsar-lite.rocksdb").rglob("*")
    return any(text.encode() in path.read_bytes() for path in files if path.is_file())


# 3 MiB requests go in one message each: what is measured here is the broker's disk, not
# calls in pieces
def test_the_data_of_a_stopped_embedded_broker_is_deleted_once_its_calls_are_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "data"
    monkeypatch.delenv(embedded.KEEP_VARIABLE, raising=False)
    broker = embedded.start(folder)
    try:
        with serve(CLIMATE, broker_url=broker.broker_url):
            topics = _calls(broker.broker_url, 20, 3)
        assert embedded.reclaim(folder, keep=0) == 0  # never under a running broker
    finally:
        broker.stop()
    grown = embedded.data_size(folder)
    assert grown > 20 * 3 * MIB, "pulsar-lite keeps every request whole while it runs"
    kept = embedded.topics(folder)  # closed clients' topics and subscriptions stay too
    assert set(topics) <= set(kept)
    assert all(kept[topic] for topic in topics)
    assert _mentions(folder, topics[0])

    with embedded.start(folder):  # at once again: calls may still wait for it, all is kept
        pass
    assert embedded.data_size(folder) > 20 * 3 * MIB

    monkeypatch.setenv(embedded.KEEP_VARIABLE, "0")  # no call lasts that long
    with embedded.start(folder) as fresh:
        assert embedded.data_size(folder) < 2 * MIB
        assert not set(embedded.topics(folder)) & set(topics)
        assert not any(_mentions(folder, topic) for topic in topics)
        with (
            serve(CLIMATE, broker_url=fresh.broker_url),
            Client("climate", broker_url=fresh.broker_url, timeout=30) as client,
        ):
            assert client.call({"func_name": "total", "values": [1.0, 2.0]}) == 3.0


def test_a_running_embedded_broker_gives_its_data_back_once_no_message_came_for_a_while(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "data"
    monkeypatch.delenv(embedded.KEEP_VARIABLE, raising=False)
    with embedded.start(folder, keep=3, check_every=0.5) as broker:
        url = broker.broker_url
        with (
            serve(CLIMATE, broker_url=url),
            Client("climate", broker_url=url, timeout=10) as client,
        ):
            first = broker.pid
            _calls(url, 8, 3)  # 24 MiB, above RENEW_ABOVE
            assert embedded.data_size(folder) > 8 * 3 * MIB
            assert broker.renew() == 0  # messages came within the hour
            deadline = time.monotonic() + 30
            while broker.pid == first:  # restarted 3 s after the last message
                assert time.monotonic() < deadline, "the data was not given back"
                time.sleep(0.2)
            assert embedded.data_size(folder) < 2 * MIB
            running = embedded.find_running(folder)
            assert running is not None
            assert (running.url, running.pid) == (broker.url, broker.pid)  # on the same port
            # the backend and the client reconnect; the backend's subscription was made
            # again before: the first request after the restart is not lost
            assert client.call({"func_name": "total", "values": [1.0, 2.0]}) == 3.0
    assert embedded.find_running(folder) is None


def test_namespace_policies_and_what_clients_and_backends_leave_on_apache_pulsar(
    broker: Broker, topic: str, launch: Callable[..., Backend]
) -> None:
    if not broker.admin_url:
        pytest.skip(f"{broker.name} has no admin REST API (pulsar-lite: see the test above)")
    tenant, space = f"disk-{uuid.uuid4().hex[:6]}", "climate"
    args = ["--broker-url", broker.url, "--admin-url", broker.admin_url]
    command = [sys.executable, "-m", "demessaging", "namespace", f"{tenant}/{space}", *args]
    changed = [*command, "--subscription-expiry", "0", "--inactive-topics", "0", "--retention", "7"]
    done = subprocess.run(changed, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    admin = PulsarAdmin(broker.admin_url)
    assert admin.cleanup(tenant, space) == Cleanup(0, 0, 7)  # taken by the broker as sent
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert admin.cleanup(tenant, space) == RECOMMENDED
    assert done.stdout.splitlines()[1] == RECOMMENDED.text()

    names = {"DEMESSAGING_TENANT": tenant, "DEMESSAGING_NAMESPACE": space}
    backend = launch(WORKERS, topic, broker.url, env=names)
    settings = Settings(
        broker_url=broker.url, transport=TransportOptions(tenant=tenant, namespace=space)
    )
    with Client(topic, settings=settings, timeout=30) as client:
        assert client.call({"func_name": "echo_sum", "values": [2, 3]}) == 5.0
        reply = f"/admin/v2/persistent/{tenant}/{space}/{client.response_topic}/stats"
    control = f"/admin/v2/persistent/{tenant}/{space}/{topic}_control/stats"
    assert len(admin.request("GET", control)["subscriptions"]) == 1
    assert admin.request("GET", reply)["subscriptions"] == {}  # the closed client's
    assert backend.stop(signal.SIGTERM) == 0
    assert admin.request("GET", control)["subscriptions"] == {}  # the stopped backend's


@pytest.mark.slow  # the broker looks for inactive topics once a minute
def test_apache_pulsar_deletes_the_topics_of_a_closed_client_and_a_stopped_backend(
    broker: Broker, topic: str, launch: Callable[..., Backend]
) -> None:
    if not broker.admin_url:
        pytest.skip(f"{broker.name} has no admin REST API")
    tenant, space = f"gone-{uuid.uuid4().hex[:6]}", "climate"
    admin = PulsarAdmin(broker.admin_url)
    admin.ensure_namespace(tenant, space, cleanup=Cleanup(inactive_topics=5))
    names = {"DEMESSAGING_TENANT": tenant, "DEMESSAGING_NAMESPACE": space}
    backend = launch(WORKERS, topic, broker.url, env=names)
    settings = Settings(
        broker_url=broker.url, transport=TransportOptions(tenant=tenant, namespace=space)
    )
    with Client(topic, settings=settings, timeout=30) as client:
        assert client.call({"func_name": "echo_sum", "values": [2, 3]}) == 5.0
        reply = f"persistent://{tenant}/{space}/{client.response_topic}"
    listing = f"/admin/v2/persistent/{tenant}/{space}"
    control = f"persistent://{tenant}/{space}/{topic}_control"
    assert {reply, control} <= set(admin.request("GET", listing))
    assert backend.stop() == 0  # it kept a producer on the reply topic: now it is unused
    deadline = time.monotonic() + 180
    while {reply, control} & set(admin.request("GET", listing)):
        assert time.monotonic() < deadline, "unused topics without subscriptions stayed"
        time.sleep(2)
    # the request topic keeps the backends' subscription, and the requests sent meanwhile
    assert f"persistent://{tenant}/{space}/{topic}" in admin.request("GET", listing)
