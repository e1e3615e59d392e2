"""A backend on dasf-broker-django as installed, whose admin made its topic and nothing else.

``TOPIC_control``, where callers send ``cancel`` and a stream's ``more``, does not exist there,
and publishing makes no topic. The backend learns it as it starts and warns once, naming the
command that makes it; it reads them on its request topic instead, and says so to its callers:
a stream longer than its window completes, every item in order (without credit, the broker
drops items a fast backend sends), and a cancelled call stops in the backend.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from demessaging.client import Client
from demessaging.errors import CallTimeoutError
from tests.brokers import Broker

from .conftest import Backend

MODULE = '''
"""Numbers, one at a time, and a slow answer."""

import time
from collections.abc import Iterator

from demessaging import Reporter


def numbers(n: int) -> Iterator[int]:
    """Count to n.

    Parameters
    ----------
    n
        How many.
    """
    yield from range(n)


def slow(seconds: float, progress: Reporter) -> float:
    """Work for a while, in small steps, each a cancellation point.

    Parameters
    ----------
    seconds
        How long.
    """
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(0.05)
        progress.advance()
    return seconds
'''


@pytest.fixture
def django(broker: Broker) -> Broker:
    if broker.django is None:
        pytest.skip("dasf-broker-django's permissions: elsewhere publishing makes the topic")
    return broker


@pytest.fixture
def backend(
    django: Broker, main_topic: str, tmp_path: Path, launch: Callable[..., Backend]
) -> Backend:
    (tmp_path / "counting.py").write_text(MODULE)
    return launch(tmp_path / "counting.py", main_topic, django.url, workers=1)


def test_the_backend_serves_and_warns_once_naming_the_command(
    django: Broker, main_topic: str, backend: Backend
) -> None:
    with Client(main_topic, broker_url=django.url, timeout=30) as client:
        assert client.call({"func_name": "slow", "seconds": 0}) == 0
        assert list(client.stream({"func_name": "numbers", "n": 40}, window=2)) == list(range(40))
    lines = backend.output().splitlines()
    warnings = [line for line in lines if "WARNING" in line and f"{main_topic}_control" in line]
    assert len(warnings) == 1, backend.output()
    assert f"manage.py dasf_topic {main_topic}_control --new --anonymous" in warnings[0]
    assert f"come on the request topic {main_topic} instead" in warnings[0]


def test_a_stream_longer_than_its_window_completes(
    django: Broker, main_topic: str, backend: Backend
) -> None:
    taken = []
    with Client(main_topic, broker_url=django.url, timeout=30) as client:
        for item in client.stream({"func_name": "numbers", "n": 300}, window=8):
            taken.append(item)
    assert taken == list(range(300))


def test_a_cancelled_call_stops_in_the_backend_and_close_stays_bounded(
    django: Broker, main_topic: str, backend: Backend
) -> None:
    client = Client(main_topic, broker_url=django.url, timeout=30)
    try:
        assert client.call({"func_name": "slow", "seconds": 0}) == 0
        started = time.monotonic()
        with pytest.raises(CallTimeoutError):
            client.call({"func_name": "slow", "seconds": 60}, timeout=1)
        # the one worker is free again: the backend stopped the call
        assert client.call({"func_name": "slow", "seconds": 0}) == 0
        assert time.monotonic() - started < 20
        items = client.stream({"func_name": "numbers", "n": 100_000}, window=2)
        assert [next(items) for _ in range(3)] == [0, 1, 2]
        items.close()  # stopping early stops the generator too
        assert client.call({"func_name": "slow", "seconds": 0}) == 0
        assert time.monotonic() - started < 30
        assert backend.output().count("cancelling a running call at its caller's request") == 2
    finally:
        started = time.monotonic()
        client.close()
        assert time.monotonic() - started < 6
