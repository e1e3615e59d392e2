"""What keeps many calls at once cheap: the broker pushes a backend one request per worker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from demessaging.backend import ListenerThread
from demessaging.backend.dispatcher import Dispatcher
from demessaging.backend.listener import Listener
from demessaging.client import Client
from demessaging.transport.base import Subscription
from demessaging.transport.memory import MemoryBroker, MemoryTransport

CLIMATE = Path(__file__).resolve().parents[2] / "examples" / "climate.py"


class _Recording(MemoryTransport):
    """A memory transport that notes what each subscription asked for."""

    def __init__(self, broker: MemoryBroker) -> None:
        super().__init__(broker)
        self.asked: dict[str, dict[str, Any]] = {}

    async def subscribe(
        self, topic: str, subscription: str, *, shared: bool = True, prefetch: int = 1000
    ) -> Subscription:
        self.asked[topic] = {"shared": shared, "prefetch": prefetch}
        return await super().subscribe(topic, subscription, shared=shared, prefetch=prefetch)


def test_the_broker_may_push_a_backend_one_request_per_worker() -> None:
    broker = MemoryBroker()
    transport = _Recording(broker)
    listener = Listener(Dispatcher.from_module(CLIMATE), transport, "pushed", workers=3)
    with ListenerThread(listener), Client("pushed", transport=MemoryTransport(broker)) as client:
        assert client.call({"func_name": "total", "values": [1.0, 2.0]}) == 3.0
    assert transport.asked["pushed"] == {"shared": True, "prefetch": 3}
