"""Heads of requests in pieces claiming huge sizes, sent raw to a real backend.

The defect: six 100-byte messages claiming 1 GiB in a billion pieces took 1 GiB each and every
worker of the backend for a minute, and it ignored SIGTERM meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from demessaging.client import Client
from demessaging.message import Message, Prop
from demessaging.protocol.fragments import side_topic
from demessaging.transport import connect
from tests.brokers import Broker

from .conftest import Backend

CLIMATE = Path(__file__).resolve().parents[2] / "examples" / "climate.py"
HEADS = 6
SUBSCRIPTION = "hostile-uploads-test"


def head(topic: str, n: int) -> Message:
    return Message(
        payload=b"{" * 100,
        properties={
            Prop.MESSAGE_TYPE: "request",
            Prop.REQUEST_CONTEXT: str(1_000_000 + n),  # dasf-broker-django: an integer
            Prop.RESPONSE_TOPIC: f"{topic}-replies",
            Prop.FRAGMENT: "0",
            Prop.NUM_FRAGMENTS: "1000000000",
            Prop.FRAGMENT_OFFSET: "0",
            Prop.PAYLOAD_SIZE: str(1 << 30),
            Prop.FRAGMENTS_TOPIC: side_topic(topic, f"hostile{n}"),
        },
    )


def rss(pid: int) -> int:
    """The resident memory of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_huge_claims_take_neither_memory_nor_workers_nor_stopping_time(
    broker: Broker, topic: str, launch: Callable[..., Backend]
) -> None:
    replies = f"{topic}-replies"

    async def send() -> None:
        transport = connect(broker.url)
        try:
            holder = await transport.subscribe(replies, SUBSCRIPTION, shared=False)
            await holder.close()  # the subscription keeps the replies until read
            for n in range(HEADS):
                await transport.publish(topic, head(topic, n))
        finally:
            await transport.close()

    async def receive(count: int, seconds: float) -> list[str]:
        transport = connect(broker.url)
        texts: list[str] = []
        try:
            sub = await transport.subscribe(replies, SUBSCRIPTION, shared=False)
            while len(texts) < count:
                reply = await asyncio.wait_for(sub.receive(), seconds)
                await sub.ack(reply)
                if reply.properties.get(Prop.MESSAGE_TYPE) != "response":
                    continue  # dasf-broker-django pings every topic it knows
                texts.append(bytes(reply.payload).decode())
        finally:
            await transport.close()
        return texts

    first = launch(CLIMATE, topic, broker.url, workers=4)
    with Client(topic, broker_url=broker.url, timeout=30) as client:
        assert client.call({"func_name": "total", "values": [1.0, 2.0]}) == 3.0
        idle = rss(first.pid)
        asyncio.run(send())
        time.sleep(1.5)  # the backend has taken the heads
        start = time.monotonic()
        assert client.call({"func_name": "total", "values": [1.0, 2.0]}) == 3.0
        assert time.monotonic() - start < 2  # no worker waits for pieces
    grown = rss(first.pid) - idle
    assert grown < 200 << 20, f"the backend grew by {grown >> 20} MiB"

    start = time.monotonic()
    assert first.stop() == 0
    stopping = time.monotonic() - start
    assert stopping < 3, first.output()
    assert "call(s) in flight" not in first.output()

    # the heads went back to the broker: another backend takes them, and refuses them
    second = launch(CLIMATE, topic, broker.url, workers=1, env={"DEMESSAGING_UPLOAD_TIMEOUT": "1"})
    texts = asyncio.run(receive(HEADS, 30))
    assert len(texts) == HEADS
    assert all("ProtocolError" in t for t in texts), texts
    assert any("pieces of the request arrived within 1 s" in t for t in texts), texts
    assert second.process.poll() is None
