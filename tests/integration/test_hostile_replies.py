"""Requests naming reply topics a backend must not write to, sent raw to a real backend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from demessaging.client import Client
from demessaging.protocol.outgoing import make_request
from demessaging.transport import connect
from tests.brokers import Broker

from .conftest import Backend

COUNTED = '''
import os


def count(x: int) -> int:
    """Write a line per run."""
    with open(os.environ["COUNTED_FILE"], "a") as out:
        out.write(f"{x}\\n")
    return x
'''

HOSTILE = [
    "pulsar://evil",
    "persistent://",
    "not a valid topic !!",
    "nul\0byte",
    "persistent://other-tenant/ns/replies",
]


def test_hostile_reply_topics_are_refused_and_never_run(
    broker: Broker, topic: str, launch: Callable[..., Backend], tmp_path: Path
) -> None:
    module, runs = tmp_path / "counted.py", tmp_path / "runs.txt"
    module.write_text(COUNTED)
    backend = launch(module, topic, broker.url, workers=1, env={"COUNTED_FILE": str(runs)})

    async def send() -> None:
        transport = connect(broker.url)
        try:
            for n, reply_topic in enumerate(HOSTILE):
                payload = f'{{"func_name": "count", "x": {n + 100}}}'.encode()
                await transport.publish(
                    topic, make_request(payload, context=str(n), response_topic=reply_topic)
                )
        finally:
            await transport.close()

    asyncio.run(send())
    with Client(topic, broker_url=broker.url, timeout=30) as client:
        assert client.call({"func_name": "count", "x": 1}) == 1
    deadline = time.monotonic() + 10
    while backend.output().count("dropping message") < len(HOSTILE):
        assert time.monotonic() < deadline, backend.output()
        time.sleep(0.1)
    time.sleep(1.5)  # a redelivery (1 s after a nack) would run one of them by now
    assert runs.read_text().split() == ["1"]
    assert backend.process.poll() is None
