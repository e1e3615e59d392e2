"""A listener receives its requests in one long-lived task: a request costs the task that
handles it, and no task or wait of its own for receiving it."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from demessaging.backend.dispatcher import Dispatcher
from demessaging.backend.listener import Listener
from demessaging.client import Client
from demessaging.transport.memory import MemoryBroker, MemoryTransport

CLIMATE = Path(__file__).resolve().parents[2] / "examples" / "climate.py"
CALL = {"func_name": "total", "values": [1.0, 2.0]}


def test_a_request_costs_the_listener_one_task() -> None:
    broker = MemoryBroker()
    listener = Listener(Dispatcher.from_module(CLIMATE), MemoryTransport(broker), "tasks")
    created: list[str] = []
    loops: list[asyncio.AbstractEventLoop] = []

    def counting(loop: asyncio.AbstractEventLoop, coro: Any, **options: Any) -> asyncio.Task[Any]:
        created.append(getattr(coro, "__qualname__", repr(coro)))
        return asyncio.Task(coro, loop=loop, **options)

    async def serve() -> None:
        loops.append(asyncio.get_running_loop())
        loops[0].set_task_factory(counting)
        await listener.serve()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    try:
        assert listener.ready.wait(10)
        with Client("tasks", transport=MemoryTransport(broker)) as client:
            assert client.call(CALL) == 3.0  # the first call also pings
            before = len(created)
            for _ in range(10):
                assert client.call(CALL) == 3.0
            made = created[before:]
    finally:
        if loops:
            loops[0].call_soon_threadsafe(listener.stop)
        thread.join(10)
    assert not thread.is_alive()
    assert len(made) == 10, made
    assert all(name.endswith("_handle") for name in made), made
