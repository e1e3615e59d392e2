"""Apache Pulsar with JWT token authentication: the right token is served, others refused."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from demessaging.client import Client
from demessaging.config import Settings
from demessaging.errors import AuthenticationError
from demessaging.tokens import create_token, new_secret
from demessaging.transport import TransportOptions
from tests.brokers import secured_pulsar
from tools import pulsar

from .conftest import Backend
from .test_calls import WORKERS

#: The broker answers a refused CONNECT at once; the library alone would retry for 30 s.
PROMPT = 5.0


@pytest.fixture(scope="module")
def secured(request: pytest.FixtureRequest) -> Iterator[tuple[pulsar.PulsarStandalone, bytes]]:
    """An Apache Pulsar standalone broker with token authentication, and its secret key."""
    with secured_pulsar(request, "pulsar-auth", "token authentication", tls=False) as running:
        yield running.broker, running.secret


def test_a_client_with_the_right_token_is_served(
    secured: tuple[pulsar.PulsarStandalone, bytes], launch: Callable[..., Backend], topic: str
) -> None:
    broker, secret = secured
    launch(WORKERS, topic, broker.broker_url, env={"DEMESSAGING_TOKEN": create_token(secret, "b")})
    token = TransportOptions(token=create_token(secret, "partner"))
    settings = Settings(broker_url=broker.broker_url, transport=token)
    with Client(topic, settings=settings, timeout=30) as client:
        assert client.call({"func_name": "echo_sum", "values": [1, 2]}) == 3.0


@pytest.mark.parametrize("token", ["", "wrong-key", "expired"])
def test_a_client_without_a_valid_token_gets_an_authentication_error_at_once(
    secured: tuple[pulsar.PulsarStandalone, bytes], topic: str, token: str
) -> None:
    broker, secret = secured
    tokens = {
        "": "",
        "wrong-key": create_token(new_secret(), "partner"),
        "expired": create_token(secret, "partner", expires_in=-60),
    }
    options = TransportOptions(token=tokens[token])
    settings = Settings(broker_url=broker.broker_url, transport=options)
    with Client(topic, settings=settings, timeout=30) as client:
        start = time.monotonic()
        with pytest.raises(AuthenticationError, match="refused") as info:
            client.call({"func_name": "echo_sum", "values": [1]})
        assert time.monotonic() - start < PROMPT
    assert broker.broker_url in str(info.value)
    assert "DEMESSAGING_TOKEN" in str(info.value)


def test_a_backend_without_a_token_exits_with_the_reason(
    secured: tuple[pulsar.PulsarStandalone, bytes], launch: Callable[..., Backend], topic: str
) -> None:
    broker, _ = secured
    backend = launch(WORKERS, topic, broker.broker_url, env={"DEMESSAGING_TOKEN": ""}, wait=False)
    start = time.monotonic()
    assert backend.process.wait(30) != 0
    assert time.monotonic() - start < 20  # start-up included
    assert "refused a client without credentials" in backend.output()


def test_the_command_line_reports_a_refused_token_in_one_line(
    secured: tuple[pulsar.PulsarStandalone, bytes], topic: str
) -> None:
    broker, _ = secured
    done = subprocess.run(
        [sys.executable, "-m", "demessaging", "ping", topic, "--broker-url", broker.broker_url],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | {"DEMESSAGING_TOKEN": "not-a-jwt"},
    )
    assert done.returncode == 1
    assert done.stderr.startswith("Error: the broker at")
    assert "refused the token credentials" in done.stderr
    assert done.stderr.count("\n") == 1
