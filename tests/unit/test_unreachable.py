"""A broker URL where nothing listens fails at once, with one clear error.

No broker is needed: a port of 127.0.0.1 that nothing listens on refuses the connection, and
``.invalid`` host names never resolve (RFC 2606). Every case must fail within 2 s; the tests
allow more, for a loaded machine, and the subprocess ones include the interpreter's start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import pickle
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pulsar
import pytest
from websockets.asyncio.server import ServerConnection
from websockets.asyncio.server import serve as ws_serve

from demessaging import Client
from demessaging.errors import BrokerUnreachableError, TransportError
from demessaging.message import Message
from demessaging.transport import TransportOptions, connect, reach
from demessaging.transport.pulsar import _library_logger
from tests.helpers import generated_client

ROOT = Path(__file__).resolve().parents[2]
CLIMATE = ROOT / "examples" / "climate.py"
UNKNOWN_HOST = "no-such-host.invalid"
#: Seconds a failing command may take here; under 1 s is usual, the issue asks for 2 s.
BOUND = 5.0


@pytest.fixture(scope="module")
def free_port() -> int:
    """A port of 127.0.0.1 nothing listens on (it refuses connections)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def urls(port: int) -> dict[str, tuple[str, str]]:
    """Broker URLs nobody answers at, with the reason the error must give."""
    refused = "connection refused"
    unknown = f"unknown host {UNKNOWN_HOST!r}"
    return {
        "pulsar-refused": (f"pulsar://127.0.0.1:{port}", refused),
        "pulsar-unknown": (f"pulsar://{UNKNOWN_HOST}:6650", unknown),
        "ws-refused": (f"ws://127.0.0.1:{port}", refused),
        "ws-unknown": (f"ws://{UNKNOWN_HOST}:8080", unknown),
    }


CASES = ["pulsar-refused", "pulsar-unknown", "ws-refused", "ws-unknown"]


@pytest.fixture(params=CASES)
def unreachable(request: pytest.FixtureRequest, free_port: int) -> tuple[str, str]:
    """A broker URL nobody answers at, and the reason the error must give."""
    return urls(free_port)[request.param]


def assert_clear(text: str, url: str, reason: str) -> None:
    assert f"cannot reach the broker at {url}: {reason}" in text
    assert "DEMESSAGING_BROKER_URL" in text
    assert "--broker-url" in text


# --- the error ----------------------------------------------------------------------------


def test_the_error_names_the_url_the_reason_and_the_setting() -> None:
    error = BrokerUnreachableError("pulsar://h:1", "connection refused")
    assert isinstance(error, TransportError)
    assert_clear(str(error), "pulsar://h:1", "connection refused")
    own = BrokerUnreachableError("pulsar://h:1", "connection refused", "CLIMATE_CLIENT_BROKER_URL")
    assert str(own).endswith("set its URL in CLIMATE_CLIENT_BROKER_URL")
    copy = pickle.loads(pickle.dumps(own))
    assert (type(copy), str(copy), copy.setting) == (type(own), str(own), own.setting)


# --- the probe ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("pulsar://broker:6650", [("broker", 6650)]),
        ("pulsar://broker", [("broker", 6650)]),
        ("pulsar://h1:1,h2:2,h3", [("h1", 1), ("h2", 2), ("h3", 6650)]),
        ("pulsar://[::1]:7000", [("::1", 7000)]),
        ("pulsar://ok:1,[::1]:x", [("ok", 1)]),  # a part the library must judge is left out
        ("ws://h:8080/ws/v2", [("h", 8080)]),
        ("not a url", []),
    ],
)
def test_hosts_of_a_broker_url(url: str, expected: list[tuple[str, int]]) -> None:
    assert reach.hosts(url, 6650) == expected


def test_only_definite_answers_are_reasons() -> None:
    unknown = socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    assert reach.unreachable_reason(unknown, "h") == "unknown host 'h'"
    trouble = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    assert reach.unreachable_reason(trouble, "h") == (
        "cannot look up host 'h' (Temporary failure in name resolution)"
    )
    refused = ConnectionRefusedError(111, "Connection refused")
    assert reach.unreachable_reason(refused, "h") == "connection refused"
    assert reach.unreachable_reason(OSError(113, "No route to host"), "h") == "no route to host"
    assert reach.unreachable_reason(asyncio.TimeoutError(), "h") is None
    assert reach.unreachable_reason(ConnectionResetError(104, "reset"), "h") is None


def test_the_probe_raises_for_refused_and_unknown_hosts(free_port: int) -> None:
    for url, reason in urls(free_port).values():
        with pytest.raises(BrokerUnreachableError) as info:
            asyncio.run(reach.check_reachable(url, 6650))
        assert (info.value.url, info.value.reason) == (url, reason)


def test_the_probe_passes_a_listening_host_and_one_of_several(free_port: int) -> None:
    async def scenario() -> None:
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            await reach.check_reachable(f"pulsar://127.0.0.1:{port}", 6650)
            await reach.check_reachable(f"pulsar://127.0.0.1:{free_port},127.0.0.1:{port}", 1)
            with pytest.raises(BrokerUnreachableError, match=f"127.0.0.1:{free_port}: conn"):
                await reach.check_reachable(f"pulsar://127.0.0.1:{free_port},{UNKNOWN_HOST}", 1)
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(scenario())


def test_a_host_that_does_not_answer_in_time_is_left_to_the_library(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A slow network or broker is no reason to fail: its operation timeouts apply."""

    async def silent(host: str, port: int) -> object:
        await asyncio.sleep(60)
        raise AssertionError("not reached")

    monkeypatch.setattr(reach.asyncio, "open_connection", silent)
    start = time.monotonic()
    asyncio.run(reach.check_reachable("pulsar://10.0.0.1:6650", 6650, timeout=0.2))
    assert time.monotonic() - start < 2


# --- transports and clients ---------------------------------------------------------------


def test_transports_fail_at_once(unreachable: tuple[str, str]) -> None:
    url, reason = unreachable

    async def scenario() -> BrokerUnreachableError:
        transport = connect(url, TransportOptions(operation_timeout=30))
        try:
            with pytest.raises(BrokerUnreachableError) as info:
                await asyncio.wait_for(transport.subscribe("t", "s"), BOUND)
            with pytest.raises(BrokerUnreachableError):  # and again, not a stale client
                await asyncio.wait_for(transport.publish("t", _message()), BOUND)
        finally:
            await transport.close()
        return info.value

    assert_clear(str(asyncio.run(scenario())), url, reason)


def test_a_pulsar_lite_url_is_named_as_given(free_port: int) -> None:
    url = f"pulsar-lite://127.0.0.1:{free_port}"

    async def scenario() -> BrokerUnreachableError:
        transport = connect(url)
        with pytest.raises(BrokerUnreachableError) as info:
            await asyncio.wait_for(transport.subscribe("t", "s"), BOUND)
        await transport.close()
        return info.value

    assert asyncio.run(scenario()).url == url


def test_a_websocket_subscription_outlives_a_broker_restart() -> None:
    """Refused connections after the first one are a broker coming back: waited for."""

    async def scenario() -> Message:
        connections: asyncio.Queue[ServerConnection] = asyncio.Queue()

        async def handler(ws: ServerConnection) -> None:
            await connections.put(ws)
            await ws.wait_closed()

        first = await ws_serve(handler, "127.0.0.1", 0)
        port = next(iter(first.sockets)).getsockname()[1]
        transport = connect(f"ws://127.0.0.1:{port}", TransportOptions(operation_timeout=10))
        sub = await transport.subscribe("t", "s")
        await asyncio.wait_for(connections.get(), BOUND)
        first.close()  # and its connections: the broker stops
        await first.wait_closed()
        receiving = asyncio.ensure_future(sub.receive())
        await asyncio.sleep(1)  # connections are refused meanwhile
        assert not receiving.done()
        second = await ws_serve(handler, "127.0.0.1", port)
        try:
            ws = await asyncio.wait_for(connections.get(), BOUND)
            await ws.send(json.dumps({"messageId": "m", "payload": "YmFjaw==", "properties": {}}))
            return await asyncio.wait_for(receiving, BOUND)
        finally:
            await transport.close()
            second.close()
            await second.wait_closed()

    assert asyncio.run(scenario()).payload == b"back"


def _message() -> Message:
    return Message(payload=b"x", properties={})


@pytest.mark.parametrize("case", CASES)
def test_client_calls_fail_at_once(case: str, free_port: int) -> None:
    url, reason = urls(free_port)[case]
    start = time.monotonic()
    with Client("climate", broker_url=url) as client, pytest.raises(BrokerUnreachableError) as info:
        client.call({"func_name": "total", "values": [1.0]})
    elapsed = time.monotonic() - start
    assert_clear(str(info.value), url, reason)
    assert elapsed < BOUND


def test_async_client_calls_fail_at_once(free_port: int) -> None:
    url, reason = urls(free_port)["pulsar-refused"]

    async def scenario() -> BrokerUnreachableError:
        client = Client("climate", broker_url=url)
        try:
            with pytest.raises(BrokerUnreachableError) as info:
                await asyncio.wait_for(client.acall({"func_name": "total", "values": [1]}), BOUND)
        finally:
            client.close()
        return info.value

    assert_clear(str(asyncio.run(scenario())), url, reason)


@pytest.fixture(scope="module")
def climate_client(tmp_path_factory: pytest.TempPathFactory, free_port: int) -> Iterator[object]:
    url = f"pulsar://127.0.0.1:{free_port}"
    out = tmp_path_factory.mktemp("unreachable")
    with generated_client(CLIMATE, out, name="climate-unreachable", broker_url=url) as module:
        yield module


def test_generated_clients_fail_at_once(climate_client: object, free_port: int) -> None:
    start = time.monotonic()
    with pytest.raises(BrokerUnreachableError) as info:
        climate_client.total([1.0, 2.0])  # type: ignore[attr-defined]
    assert time.monotonic() - start < BOUND
    assert f"cannot reach the broker at pulsar://127.0.0.1:{free_port}: connection refused" in (
        str(info.value)
    )
    assert str(info.value).endswith(
        "set its URL in CLIMATE_UNREACHABLE_BROKER_URL (or DEMESSAGING_BROKER_URL)"
    )


# --- the command line ---------------------------------------------------------------------


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "demessaging", *args]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("what", ["ping", "call", "listen"])
def test_commands_print_one_line_and_exit_1_at_once(
    what: str, case: str, free_port: int, tmp_path: Path
) -> None:
    url, reason = urls(free_port)[case]
    args = {
        "ping": ["ping", "climate"],
        "call": ["call", "--remote", "climate", "-"],
        "listen": ["listen", str(CLIMATE)],
    }[what]
    # the default log level (info) for all but one: its lines must not come either
    level = ["--log-level", "error"] if case == "pulsar-refused" else []
    start = time.monotonic()
    done = subprocess.run(
        command(*level, *args, "--broker-url", url),
        input='{"func_name": "total", "values": [1]}',
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DEMESSAGING_DATA_DIR": str(tmp_path)},
    )
    elapsed = time.monotonic() - start
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr  # no traceback, no log lines of the libraries
    assert lines[0].startswith("Error: ")
    assert_clear(lines[0], url, reason)
    assert elapsed < BOUND, f"{what} took {elapsed:.1f} s"


def test_the_environment_setting_fails_as_fast(free_port: int) -> None:
    url = f"pulsar://127.0.0.1:{free_port}"
    done = subprocess.run(
        command("ping", "climate"),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DEMESSAGING_BROKER_URL": url},
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"Error: cannot reach the broker at {url}: connection refused; start the broker, or "
        "set its URL in DEMESSAGING_BROKER_URL (--broker-url on the command line)"
    ]


# --- pulsar-client's own log --------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        (logging.DEBUG, pulsar.LoggerLevel.Info),
        (logging.INFO, pulsar.LoggerLevel.Warn),
        (logging.WARNING, pulsar.LoggerLevel.Warn),
        (logging.ERROR, pulsar.LoggerLevel.Error),
        (logging.CRITICAL, pulsar.LoggerLevel.Error),
    ],
)
def test_the_library_logs_at_the_level_chosen(
    level: int, expected: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(level, logger="demessaging.transport.pulsar")
    chosen = _library_logger()
    assert chosen.log_level == expected
    assert isinstance(chosen, pulsar.FileLogger)  # on stderr, never stdout
