"""What keeps many calls at once cheap: the broker pushes a backend one request per worker,
results from other threads wake the event loop once per batch, and the backend's workers
hand their results back the same way."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from demessaging.backend import ListenerThread
from demessaging.backend.dispatcher import Dispatcher
from demessaging.backend.listener import Listener
from demessaging.backend.workers import Workers
from demessaging.client import Client
from demessaging.config import Settings
from demessaging.errors import ConfigurationError
from demessaging.transport import bridge
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


class Wakes:
    """Counts the wake-ups of ``loop`` from other threads (``call_soon_threadsafe``) from now on."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.count = 0
        original = loop.call_soon_threadsafe

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return original(*args, **kwargs)

        loop.call_soon_threadsafe = counted  # type: ignore[method-assign]


def test_the_broker_may_push_a_backend_one_request_per_worker() -> None:
    broker = MemoryBroker()
    transport = _Recording(broker)
    listener = Listener(Dispatcher.from_module(CLIMATE), transport, "pushed", workers=3)
    with ListenerThread(listener), Client("pushed", transport=MemoryTransport(broker)) as client:
        assert client.call({"func_name": "total", "values": [1.0, 2.0]}) == 3.0
    assert transport.asked["pushed"] == {"shared": True, "prefetch": 3}


def test_a_deeper_prefetch_is_a_setting_of_its_own() -> None:
    broker = MemoryBroker()
    transport = _Recording(broker)
    options = Settings.from_env(environ={"DEMESSAGING_PREFETCH": "12"}).listener_options()
    listener = Listener(Dispatcher.from_module(CLIMATE), transport, "deeper", workers=3, **options)
    with ListenerThread(listener), Client("deeper", transport=MemoryTransport(broker)) as client:
        assert client.call({"func_name": "total", "values": [1.0, 2.0]}) == 3.0
    assert transport.asked["deeper"] == {"shared": True, "prefetch": 12}
    assert Settings().listener_options()["prefetch"] is None  # one per worker
    with pytest.raises(ConfigurationError, match="DEMESSAGING_PREFETCH must be at least 1"):
        Settings.from_env(environ={"DEMESSAGING_PREFETCH": "-1"})
    with pytest.raises(ValueError, match="prefetch must be at least 1"):
        Listener(Dispatcher.from_module(CLIMATE), transport, "deeper", prefetch=0)


def test_results_from_another_thread_wake_the_loop_once_per_batch() -> None:
    async def main() -> tuple[list[int], int]:
        loop = asyncio.get_running_loop()
        futures = [bridge.prepare() for _ in range(50)]
        wakes = Wakes(loop)
        # the loop is busy (not awaiting) while another thread settles all fifty
        done = threading.Thread(target=lambda: [bridge.settle(f, n) for n, f in enumerate(futures)])
        done.start()
        done.join()
        return list(await asyncio.gather(*futures)), wakes.count

    values, wakes = asyncio.run(main())
    assert values == list(range(50))
    assert wakes == 1


def test_a_result_given_on_the_loops_thread_needs_no_turn_of_the_loop() -> None:
    async def main() -> None:
        future = bridge.prepare()
        bridge.settle(future, "now")
        assert future.done()
        assert future.result() == "now"
        failed = bridge.prepare()
        bridge.settle(failed, error=ValueError("no"))
        assert isinstance(failed.exception(), ValueError)
        cancelled = bridge.prepare()
        cancelled.cancel()
        bridge.settle(cancelled, "late")  # nobody waits: dropped, not raised

    asyncio.run(main())


def test_a_result_for_a_closed_loop_is_dropped() -> None:
    loop = asyncio.new_event_loop()
    future = loop.run_until_complete(_prepared())
    loop.close()
    worker = threading.Thread(target=bridge.settle, args=(future, 1))
    worker.start()
    worker.join()
    assert not future.done()


async def _prepared() -> asyncio.Future[Any]:
    return bridge.prepare()


def test_calls_that_end_while_the_loop_is_busy_wake_it_once() -> None:
    async def main() -> tuple[list[bool], int]:
        loop = asyncio.get_running_loop()
        workers = Workers(4)
        gate = threading.Event()
        calls = [asyncio.ensure_future(workers.run(gate.wait, 5)) for _ in range(4)]
        await asyncio.sleep(0.2)  # all four wait on their workers
        wakes = Wakes(loop)
        gate.set()
        time.sleep(0.3)  # the loop is busy while all four end
        results = await asyncio.gather(*calls)
        workers.shutdown()
        return results, wakes.count

    results, wakes = asyncio.run(main())
    assert results == [True] * 4
    assert wakes == 1


def test_workers_hand_back_exceptions_and_run_at_most_count_calls_at_once() -> None:
    running = 0
    most = 0
    lock = threading.Lock()

    def work(n: int) -> int:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        if n == 3:
            raise KeyError(n)
        return n

    async def main() -> list[Any]:
        workers = Workers(2)
        try:
            return await asyncio.gather(
                *(workers.run(work, n) for n in range(6)), return_exceptions=True
            )
        finally:
            workers.shutdown()

    results = asyncio.run(main())
    assert [r for r in results if not isinstance(r, BaseException)] == [0, 1, 2, 4, 5]
    assert isinstance(results[3], KeyError)
    assert most <= 2
    assert not [t for t in threading.enumerate() if t.name.startswith("demessaging-worker")]


def test_calls_made_at_once_cross_to_another_loop_in_one_wake_up_each_way() -> None:
    other = asyncio.new_event_loop()
    thread = threading.Thread(target=other.run_forever, daemon=True)
    thread.start()
    wakes: dict[str, Wakes] = {}

    gate = asyncio.Event()  # set on the other loop: the twenty end in one turn of it
    started = threading.Event()

    async def double(n: int) -> int:
        await gate.wait()
        return 2 * n

    async def stuck() -> None:
        started.set()
        await asyncio.sleep(30)

    async def until(condition: Callable[[], bool]) -> None:
        for _ in range(500):
            if condition():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("waited 5 s")

    async def main() -> list[int]:
        here = asyncio.get_running_loop()
        other.call_soon_threadsafe(time.sleep, 0.3)  # busy while the twenty go over
        wakes["there"], wakes["here"] = Wakes(other), Wakes(here)
        calls = asyncio.gather(*(bridge.run_on(other, double(n)) for n in range(20)))
        await until(lambda: len(asyncio.all_tasks(other)) == 20)
        other.call_soon_threadsafe(gate.set)
        time.sleep(0.3)  # this loop is busy while the twenty end
        results = await calls
        waiting = asyncio.ensure_future(bridge.run_on(other, stuck()))
        await until(started.is_set)
        waiting.cancel()  # cancels the coroutine on the other loop too
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await until(lambda: not asyncio.all_tasks(other))
        await asyncio.sleep(0.1)  # the end of the cancelled call comes back
        return list(results)

    try:
        assert asyncio.run(main()) == [2 * n for n in range(20)]
        assert wakes["here"].count == 2  # the twenty results; the end of the cancelled one
        # the twenty calls, the gate, the cancelled call, its cancellation
        assert wakes["there"].count == 4
    finally:
        other.call_soon_threadsafe(other.stop)
        thread.join(5)
        other.close()
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(bridge.run_on(other, stuck()))
