"""16 MiB requests over dasf-broker-django as installed: nobody may make topics, and its daphne
server takes WebSocket messages of 1 MiB unless told otherwise.

A request goes whole there (pieces would need side topics). Over the stock limit it is refused
before it is sent, naming the limit and the settings; with the limit raised as docs/dasf.md
says, it arrives whole, at a new backend and at a DASF 0.6.4 one.
"""

from __future__ import annotations

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
from tools import dasf_broker

from .conftest import Backend, dasf_backend, old_options, wait_until_answering

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
