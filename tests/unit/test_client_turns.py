"""What one call costs a client's event loop: no task for its deadline (Python 3.11 and
later), and no wait for acknowledging its reply where the transport acknowledges from any
thread. The deadline still holds."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

from demessaging.backend import ListenerThread
from demessaging.backend.dispatcher import Dispatcher
from demessaging.backend.listener import Listener
from demessaging.client import Client
from demessaging.errors import CallTimeoutError
from demessaging.transport.memory import MemoryBroker, MemoryTransport

from .test_worker_replies import _FromAnyThread

CLIMATE = Path(__file__).resolve().parents[2] / "examples" / "climate.py"
CALL = {"func_name": "total", "values": [1.0, 2.0]}


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is Python 3.11's")
def test_a_sync_call_costs_the_clients_loop_one_task() -> None:
    broker = MemoryBroker()
    listener = Listener(Dispatcher.from_module(CLIMATE), MemoryTransport(broker), "one-task")
    created: list[str] = []

    def counting(loop: asyncio.AbstractEventLoop, coro: Any, **options: Any) -> asyncio.Task[Any]:
        created.append(getattr(coro, "__qualname__", repr(coro)))
        return asyncio.Task(coro, loop=loop, **options)

    async def count_tasks() -> None:
        asyncio.get_running_loop().set_task_factory(counting)

    with ListenerThread(listener), Client("one-task", transport=MemoryTransport(broker)) as client:
        assert client.call(CALL) == 3.0  # connects, pings
        client._connection.portal().run(count_tasks())
        before = len(created)
        for _ in range(10):
            assert client.call(CALL) == 3.0
        # the in-process broker's receive from the reader thread runs on the client's loop
        made = [name for name in created[before:] if not name.startswith("_MemorySubscription.")]
    assert len(made) == 10, made


def test_the_deadline_of_a_call_still_holds() -> None:
    broker = MemoryBroker()
    client = Client("nobody-serves", transport=MemoryTransport(broker), timeout=0.3)
    with client, pytest.raises(CallTimeoutError):
        client.call(CALL)


def test_a_client_acknowledges_its_replies_without_waiting() -> None:
    broker = MemoryBroker()
    listener = Listener(Dispatcher.from_module(CLIMATE), MemoryTransport(broker), "acked")
    transport = _FromAnyThread(broker)
    with ListenerThread(listener), Client("acked", transport=transport) as client:
        assert client.call(CALL) == 3.0
        assert client.call(CALL) == 3.0
    acks = [kind for kind, _ in transport.events if kind.startswith("ack")]
    assert acks, transport.events
    assert set(acks) == {"ack soon"}, transport.events
