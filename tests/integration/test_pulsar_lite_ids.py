"""pulsar-lite consumer ids: a backend serves at once, whatever consumers the broker still has.

pulsar-lite refuses a consumer of a shared subscription whose id another connection's
consumer of it has ("Consumer 0 already exists": it drops the connection, and pulsar-client
tries again with the same id until its operation timeout). A backend SIGKILLed under load
can leave its consumer in the broker (see ``tests/integration/test_crash.py``); the one
started in its place must not wait for it. Nor may starting a transport take longer with
the number of transports on the machine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pulsar
import pytest

from demessaging import embedded
from demessaging.message import Message
from demessaging.transport import lite as lite_ids
from demessaging.transport.base import TransportOptions
from demessaging.transport.pulsar import PulsarTransport
from tests.brokers import selected_brokers

pytestmark = pytest.mark.slow


@pytest.fixture
def lite(pytestconfig: pytest.Config, tmp_path: Path) -> Iterator[embedded.EmbeddedBroker]:
    if "pulsar-lite" not in selected_brokers(pytestconfig):
        pytest.skip("pulsar-lite is not among the chosen brokers")
    broker = embedded.start(tmp_path / "lite")
    try:
        yield broker
    finally:
        broker.stop()


def test_a_consumer_id_a_gone_process_left_is_not_waited_for(
    lite: embedded.EmbeddedBroker, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker still has a consumer of the subscription with the id the transport takes."""
    # the transport's first consumer id here is 0 (no other transport on the machine
    # before; no ids skipped now), that of the consumer a killed process left
    monkeypatch.setattr(lite_ids, "skipped", lambda: 0)
    full = f"persistent://public/default/{topic}"
    holder = pulsar.Client(lite.url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    try:
        left = holder.subscribe(full, "work", consumer_type=pulsar.ConsumerType.Shared)

        async def run() -> tuple[float, bytes]:
            transport = PulsarTransport(
                lite.url, TransportOptions(operation_timeout=20), pulsar_lite=True
            )
            try:
                started = time.monotonic()
                sub = await asyncio.wait_for(transport.subscribe(topic, "work", prefetch=1), 25)
                took = time.monotonic() - started
                left.close()  # (it would take messages too)
                await transport.publish(topic, Message(payload=b"hello", properties={}))
                message = await asyncio.wait_for(sub.receive(), 10)
                await sub.ack(message)
                return took, bytes(message.payload)
            finally:
                await transport.close()

        took, payload = asyncio.run(run())
    finally:
        holder.close()
    print(f"subscribed in {took:.2f} s past a consumer holding its id")
    assert payload == b"hello"
    assert took < 6  # the library's operation timeout on pulsar-lite (3 s), and slack


@pytest.mark.parametrize("count", [1, 8])
def test_starting_takes_no_longer_with_more_transports(
    lite: embedded.EmbeddedBroker, topic: str, count: int
) -> None:
    """``count`` transports (as clients and backends) subscribe at once, twice each."""

    async def run() -> list[float]:
        transports = [
            PulsarTransport(lite.url, TransportOptions(operation_timeout=30), pulsar_lite=True)
            for _ in range(count)
        ]

        async def start(transport: PulsarTransport, n: int) -> float:
            started = time.monotonic()
            await transport.subscribe(f"{topic}-reply-{n}", "own", prefetch=16)
            await transport.subscribe(topic, "backends", prefetch=1)  # one shared by all
            return time.monotonic() - started

        try:
            return await asyncio.gather(*(start(t, n) for n, t in enumerate(transports)))
        finally:
            for transport in transports:
                await transport.close()

    took = asyncio.run(run())
    print(f"{count} transports started in {max(took):.2f} s (slowest), {min(took):.2f} s (first)")
    # before: 1.1 s alone, 12 to 19 s for eight processes at once (1024 ids per slot
    # number); a refusal now costs the library's operation timeout on pulsar-lite (3 s)
    assert max(took) < 5
