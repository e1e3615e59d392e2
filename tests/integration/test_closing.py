"""Closing a client is bounded whatever its broker does, and backends share topics on pulsar-lite.

Each test starts a pulsar-lite broker of its own (on 127.0.0.1), as it kills or freezes it
(SIGSTOP); the broker is always continued and stopped, by its PID, at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from demessaging import embedded
from demessaging.client import Client
from demessaging.errors import CallTimeoutError
from demessaging.message import Message
from demessaging.transport.base import TransportOptions
from demessaging.transport.pulsar import PulsarTransport

from .conftest import ROOT

#: What closing may take here: the default bound (5 s) and some slack for a busy machine.
BOUND = 8.0


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[embedded.EmbeddedBroker]:
    """A pulsar-lite broker of this test only; continued (if frozen) and stopped at the end."""
    broker = embedded.start(tmp_path / "lite")
    assert broker.owned
    try:
        yield broker
    finally:
        with contextlib.suppress(ProcessLookupError):  # killed by the test
            os.kill(broker.pid, signal.SIGCONT)
        broker.stop()


def _timed_out_call(client: Client) -> None:
    """A call nobody answers: the client is connected, and has a cancel to send."""
    with pytest.raises(CallTimeoutError):
        client.call({"func_name": "nobody"}, timeout=1)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGSTOP], ids=["killed", "frozen"])
def test_close_is_bounded_whatever_the_broker_does(
    lite: embedded.EmbeddedBroker, topic: str, sig: signal.Signals
) -> None:
    client = Client(topic, broker_url=lite.broker_url, timeout=10)
    _timed_out_call(client)
    os.kill(lite.pid, sig)
    with pytest.raises(CallTimeoutError):  # every call keeps its deadline meanwhile
        client.call({"func_name": "nobody"}, timeout=2)
    started = time.monotonic()
    client.close()
    assert time.monotonic() - started < BOUND


def test_close_timeout_is_configurable(lite: embedded.EmbeddedBroker, topic: str) -> None:
    client = Client(topic, broker_url=lite.broker_url, close_timeout=1.0)
    _timed_out_call(client)
    os.kill(lite.pid, signal.SIGSTOP)
    started = time.monotonic()
    client.close()
    assert time.monotonic() - started < 3.0


def test_a_script_that_caught_a_timeout_exits_in_time(
    lite: embedded.EmbeddedBroker, topic: str, tmp_path: Path
) -> None:
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import os, signal, sys
            from demessaging.client import Client
            from demessaging.errors import CallTimeoutError
            client = Client({topic!r}, broker_url={lite.broker_url!r})
            try:
                client.call({{"func_name": "nobody"}}, timeout=1)
            except CallTimeoutError:
                pass
            os.kill({lite.pid}, signal.SIGSTOP)  # frozen while the program exits
            try:
                client.call({{"func_name": "nobody"}}, timeout=1)
            except CallTimeoutError:
                print("caught", flush=True)
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, timeout=120)
    took = time.monotonic() - started
    assert done.stdout.decode().strip() == "caught", done.stderr.decode()[-2000:]
    assert done.returncode == 0, done.stderr.decode()[-2000:]  # not aborted by pulsar-client
    # starting Python and two 1 s calls, then the bounded close at exit
    assert took < 2 + BOUND, f"took {took:.1f} s"


def test_consumers_of_one_shared_subscription_never_clash(
    lite: embedded.EmbeddedBroker, topic: str
) -> None:
    """pulsar-lite refuses a consumer whose id another one of the subscription has.

    Every pulsar-client connection numbers its consumers from 0, and two transports of one
    process (like two processes with equal PIDs modulo 1024 before) started from the same
    number: the second subscription was refused until its operation timeout.
    """

    async def run() -> tuple[int, int]:
        options = TransportOptions(operation_timeout=5)
        url = lite.url
        first = PulsarTransport(url, options, pulsar_lite=True)
        second = PulsarTransport(url, options, pulsar_lite=True)
        try:
            subs = [
                await asyncio.wait_for(t.subscribe(topic, "work", shared=True, prefetch=1), 10)
                for t in (first, second)
            ]
            for n in range(40):
                await first.publish(topic, Message(payload=b"%d" % n, properties={}))
            counts = [0, 0]
            seen: set[bytes] = set()

            async def drain(i: int) -> None:
                while len(seen) < 40:
                    message = await subs[i].receive()
                    seen.add(bytes(message.payload))
                    counts[i] += 1
                    await subs[i].ack(message)
                    await asyncio.sleep(0.01)  # leave some for the other consumer

            tasks = [asyncio.ensure_future(drain(i)) for i in (0, 1)]
            deadline = time.monotonic() + 20
            while len(seen) < 40 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            assert len(seen) == 40
            return counts[0], counts[1]
        finally:
            await first.close()
            await second.close()

    first_count, second_count = asyncio.run(run())
    assert first_count > 0
    assert second_count > 0


def test_a_backend_stops_in_time_with_its_broker_frozen(
    lite: embedded.EmbeddedBroker, tmp_path: Path
) -> None:
    log = tmp_path / "listen.log"
    env = {**os.environ, "DEMESSAGING_BROKER_URL": lite.broker_url, "PYTHONPATH": str(ROOT)}
    with open(log, "wb") as out:
        backend = subprocess.Popen(
            [sys.executable, "-m", "demessaging", "listen", str(ROOT / "examples" / "climate.py")],
            stderr=out,
            env=env,
        )
    try:
        deadline = time.monotonic() + 30
        while "serving climate" not in log.read_text(errors="replace"):
            assert backend.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.05)
        os.kill(lite.pid, signal.SIGSTOP)
        started = time.monotonic()
        backend.send_signal(signal.SIGTERM)
        backend.wait(60)
        took = time.monotonic() - started
        assert backend.returncode == 0, log.read_text(errors="replace")[-2000:]
        assert took < BOUND + 2, f"took {took:.1f} s"  # was 60 s (two consumers, 30 s each)
    finally:
        if backend.poll() is None:
            backend.kill()
            backend.wait(10)
