"""16 MiB requests over dasf-broker-django as installed: nobody may make topics, and its daphne
server takes WebSocket messages of 1 MiB unless told otherwise.

A request goes whole there (pieces would need side topics). Over the stock limit it is refused
before it is sent, naming the limit and the settings; with the limit raised as docs/dasf.md
says, it arrives whole, at a new backend and at a DASF 0.6.4 one.
"""

from __future__ import annotations

import json
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from demessaging.client import Client
from demessaging.config import Settings
from demessaging.errors import PayloadTooLargeError
from demessaging.transport.websocket import frame_for
from tests.brokers import Broker
from tools import dasf_broker, pulsar

from .conftest import Backend, dasf_backend, old_options, wait_until_answering
from .test_dasf_modules import old_client, run_old

SIZE = 16 * 1024 * 1024
#: The frame docs/dasf.md gives for a 16 MiB request (msgpack: the array's bytes and a little).
FRAME = frame_for(SIZE + 1024)

NEW = '''
"""The checksum of an array, to check that a large request arrived whole."""

import zlib

import numpy as np
import numpy.typing as npt


def checksum(values: npt.NDArray[np.float64]) -> int:
    """The CRC-32 of the array's bytes.

    Parameters
    ----------
    values
        The values.
    """
    return zlib.crc32(np.ascontiguousarray(values).view(np.uint8))
'''

#: A module as DASF users write it, for demessaging 0.6.4.
OLD = '''
"""Sums of long lists."""

from typing import List

from demessaging import main

__all__ = ["total"]


def total(values: List[float]) -> float:
    """The sum and the count of the values, as one number.

    Parameters
    ----------
    values
        The values.
    """
    return sum(values) * 1e-6 + len(values)


if __name__ == "__main__":
    main()
'''


def values() -> np.ndarray:
    return np.random.default_rng(16).random(SIZE // 8)


@pytest.fixture
def django(broker: Broker) -> Broker:
    if broker.django is None:
        pytest.skip("dasf-broker-django's limits and permissions")
    return broker


@pytest.fixture
def raised(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dasf_broker.DasfBroker]:
    """dasf-broker-django as installed, its daphne server's limit raised to ``FRAME``."""
    with dasf_broker.start(tmp_path_factory.mktemp("raised"), frame_size=FRAME) as running:
        yield running


def test_a_16_mib_request_over_the_stock_limit_is_refused_naming_it_and_the_settings(
    django: Broker, topic: str, tmp_path: Path, backends: Callable[..., Backend]
) -> None:
    (tmp_path / "checksums.py").write_text(NEW)
    backends(tmp_path / "checksums.py", topic)
    with Client(topic, broker_url=django.url, timeout=60) as client:
        with pytest.raises(PayloadTooLargeError) as info:
            client.call({"func_name": "checksum", "values": values()})
        text = str(info.value)
        assert "takes no requests in pieces" in text
        assert f"a frame of {FRAME} bytes" in text
        assert "--websocket-max-message-size" in text
        assert "DEMESSAGING_FRAME_SIZE" in text
        small = np.arange(10.0)
        assert client.call({"func_name": "checksum", "values": small}) == zlib.crc32(small.data)


def test_a_16_mib_request_arrives_whole_once_the_limit_is_raised_as_documented(
    django: Broker,
    raised: dasf_broker.DasfBroker,
    topic: str,
    tmp_path: Path,
    launch: Callable[..., Backend],
) -> None:
    raised.create_topic(topic)
    (tmp_path / "checksums.py").write_text(NEW)
    launch(tmp_path / "checksums.py", topic, raised.url, env={"DEMESSAGING_FRAME_SIZE": str(FRAME)})
    array = values()
    settings = Settings.from_env(environ={"DEMESSAGING_FRAME_SIZE": str(FRAME)})  # documented
    with Client(topic, broker_url=raised.url, timeout=120, settings=settings) as client:
        # in pieces, it would be refused: side topics cannot be made there
        assert client.call({"func_name": "checksum", "values": array}) == zlib.crc32(array.data)


def test_a_16_mb_request_reaches_a_dasf_064_backend_whole(
    django: Broker,
    raised: dasf_broker.DasfBroker,
    topic: str,
    tmp_path: Path,
    old_python: Path,
) -> None:
    raised.create_topic(topic)
    (tmp_path / "sums.py").write_text(OLD)
    here = Broker("dasf-broker", raised.url, django=raised)
    command = [str(old_python), "sums.py", *old_options(here, topic), "listen"]
    numbers = np.arange(1_600_000, dtype=np.float64)  # 16.5 MB of JSON
    settings = Settings.from_env(environ={"DEMESSAGING_FRAME_SIZE": str(FRAME)})
    with (
        dasf_backend(command, tmp_path) as backend,
        Client(topic, broker_url=raised.url, timeout=120, settings=settings) as client,
    ):
        wait_until_answering(client, backend)
        result = client.call({"func_name": "total", "values": numbers.tolist()})
    assert result == pytest.approx(numbers.sum() * 1e-6 + len(numbers))


OLD_CLIENT_CALL = """
import json

import client

print(json.dumps(client.total([float(i) for i in range(1_600_000)])))
"""


def test_a_16_mb_request_of_a_dasf_064_client_reaches_a_new_backend_whole(
    django: Broker,
    raised: dasf_broker.DasfBroker,
    topic: str,
    tmp_path: Path,
    old_python: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The module under demessaging, started as its author starts it; 0.6.4's generated
    client sends 16.5 MB of JSON in one message, as it always does."""
    raised.create_topic(topic, f"{topic}_control")
    (tmp_path / "sums.py").write_text(OLD)
    here = Broker("dasf-broker", raised.url, django=raised)
    monkeypatch.setenv("DEMESSAGING_FRAME_SIZE", str(FRAME))  # the backend's, for its replies
    command = [sys.executable, "sums.py", *old_options(here, topic), "listen"]
    with (
        dasf_backend(command, tmp_path) as backend,
        Client(topic, broker_url=raised.url, timeout=60) as client,
    ):
        wait_until_answering(client, backend)
        (tmp_path / "client.py").write_text(
            old_client(old_python, tmp_path, "sums.py", here, topic)
        )
        ran = run_old(old_python, tmp_path, OLD_CLIENT_CALL)
    numbers = np.arange(1_600_000, dtype=np.float64)
    result = json.loads(ran.stdout.strip().splitlines()[-1])
    assert result == pytest.approx(numbers.sum() * 1e-6 + len(numbers))


# -- a DASF 0.6.4 backend on Apache Pulsar ------------------------------------------------------


@pytest.fixture
def apache_pulsar(broker: Broker) -> Broker:
    if broker.name not in ("pulsar", "pulsar-ws"):
        pytest.skip("a DASF backend on Apache Pulsar, reached by pulsar:// or ws://")
    return broker


def pulsar_options(broker: Broker, topic: str) -> list[str]:
    """0.6.4's options for Apache Pulsar: it reaches it by its WebSocket API alone."""
    port = broker.admin_url.rsplit(":", 1)[1].strip("/")
    return ["-t", topic, "-H", "127.0.0.1", "-p", port, "--persistent", "persistent"]


def test_a_large_request_goes_whole_to_a_dasf_064_backend_on_apache_pulsar(
    apache_pulsar: Broker, topic: str, tmp_path: Path, old_python: Path
) -> None:
    """As large as one message takes, it goes whole and is answered; larger, it is refused
    before anything is sent (a DASF backend would read only the first piece), naming the
    limit, and the backend goes on answering."""
    (tmp_path / "sums.py").write_text(OLD)
    command = [str(old_python), "sums.py", *pulsar_options(apache_pulsar, topic), "listen"]
    with (
        dasf_backend(command, tmp_path) as backend,
        Client(topic, broker_url=apache_pulsar.url, timeout=120) as client,
    ):
        wait_until_answering(client, backend)
        transport = client._connection._transport  # made by the first ping
        assert transport is not None
        limit = transport.max_message_size
        assert limit is not None
        # a list of floats in JSON: about 20 bytes a number, as large as one message takes
        numbers = np.random.default_rng(4).random(limit // 21)
        sent = json.dumps({"func_name": "total", "values": numbers.tolist()})
        assert limit // 2 < len(sent) <= limit
        result = client.call({"func_name": "total", "values": numbers.tolist()})
        assert result == pytest.approx(numbers.sum() * 1e-6 + len(numbers))
        larger = np.random.default_rng(5).random(2 * limit // 19)  # twice the limit
        with pytest.raises(PayloadTooLargeError) as info:
            client.call({"func_name": "total", "values": larger.tolist()})
        assert "reads requests whole only (a DASF backend)" in str(info.value)
        assert client.call({"func_name": "total", "values": [1.0, 2.0]}) == pytest.approx(2.000003)
    assert "Traceback" not in backend.output()


@pytest.fixture(scope="module")
def raised_pulsar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[pulsar.PulsarStandalone]:
    """Apache Pulsar with its WebSocket frames and messages raised to ``FRAME``, as
    docs/dasf.md says."""
    settings = {
        "webSocketMaxTextFrameSize": str(FRAME),
        "maxMessageSize": str(FRAME),
        "nettyMaxFrameSizeBytes": str(FRAME + 64 * 1024),  # its bookies': a message and more
    }
    with pulsar.start(tmp_path_factory.mktemp("raised-pulsar"), settings=settings) as running:
        yield running


def test_a_16_mb_request_reaches_a_dasf_064_backend_on_apache_pulsar_whole(
    apache_pulsar: Broker,
    topic: str,
    tmp_path: Path,
    old_python: Path,
    request: pytest.FixtureRequest,
) -> None:
    """Over the WebSocket API with the limits raised (over pulsar://, one message takes 4 MiB
    at most, whatever the broker's settings)."""
    if apache_pulsar.name != "pulsar-ws":
        pytest.skip("16 MB in one message: the WebSocket API's, once its limit is raised")
    raised = request.getfixturevalue("raised_pulsar")
    here = Broker("pulsar-ws", f"ws://127.0.0.1:{raised.web_port}", raised.admin_url)
    (tmp_path / "sums.py").write_text(OLD)
    command = [str(old_python), "sums.py", *pulsar_options(here, topic), "listen"]
    numbers = np.arange(1_600_000, dtype=np.float64)  # 16.5 MB of JSON
    settings = Settings.from_env(environ={"DEMESSAGING_FRAME_SIZE": str(FRAME)})
    with (
        dasf_backend(command, tmp_path) as backend,
        Client(topic, broker_url=here.url, timeout=120, settings=settings) as client,
    ):
        wait_until_answering(client, backend)
        result = client.call({"func_name": "total", "values": numbers.tolist()})
    assert result == pytest.approx(numbers.sum() * 1e-6 + len(numbers))
