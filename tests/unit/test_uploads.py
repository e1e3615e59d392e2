"""Hostile and stalled requests in pieces: they hold no worker, share a memory budget, time out
as a whole, and never delay stopping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from demessaging.backend import Dispatcher, Listener, ListenerThread
from demessaging.backend.listener import DEFAULT_SUBSCRIPTION
from demessaging.backend.uploads import Budget
from demessaging.client import Client
from demessaging.config import Settings
from demessaging.errors import ConfigurationError, ProtocolError
from demessaging.protocol import Message, Prop
from demessaging.protocol.fragments import FRAGMENT_SUBSCRIPTION, Reassembler, side_topic
from demessaging.transport.memory import MemoryBroker, MemoryTransport

CLIMATE = Path(__file__).resolve().parents[2] / "examples" / "climate.py"
GIB = 1 << 30


def head(topic: str, n: int, *, count: int = 1_000_000_000, size: int = GIB) -> Message:
    """Piece 0 of a request claiming ``size`` bytes in ``count`` pieces on a side topic."""
    return Message(
        payload=b"{",
        properties={
            Prop.MESSAGE_TYPE: "request",
            Prop.REQUEST_CONTEXT: f"c{n}",
            Prop.RESPONSE_TOPIC: f"{topic}-replies",
            Prop.FRAGMENT: "0",
            Prop.NUM_FRAGMENTS: str(count),
            Prop.FRAGMENT_OFFSET: "0",
            Prop.PAYLOAD_SIZE: str(size),
            Prop.FRAGMENTS_TOPIC: side_topic(topic, f"s{n}"),
        },
    )


def rest(index: int, payload: bytes, offset: int, count: int, size: int) -> Message:
    """Piece ``index`` of a request of ``size`` bytes in ``count`` pieces."""
    return Message(
        payload=payload,
        properties={
            Prop.FRAGMENT: str(index),
            Prop.NUM_FRAGMENTS: str(count),
            Prop.FRAGMENT_OFFSET: str(offset),
            Prop.PAYLOAD_SIZE: str(size),
        },
    )


def listener(broker: MemoryBroker, topic: str, **options: Any) -> Listener:
    return Listener(Dispatcher.from_module(CLIMATE), MemoryTransport(broker), topic, **options)


async def publish(broker: MemoryBroker, topic: str, *messages: Message) -> None:
    transport = MemoryTransport(broker)
    for message in messages:
        await transport.publish(topic, message)


async def side_subscriptions(broker: MemoryBroker, topic: str, n: int) -> None:
    """Make the side subscriptions of heads 0..n-1, as their clients would."""
    transport = MemoryTransport(broker)
    for i in range(n):
        holder = await transport.subscribe(side_topic(topic, f"s{i}"), FRAGMENT_SUBSCRIPTION)
        await holder.close()


@pytest.fixture
def replies(broker: MemoryBroker) -> Iterator[Any]:
    """``replies(topic)``: collects what the backend answers to the heads of ``topic``."""
    transport = MemoryTransport(broker)
    loop = asyncio.new_event_loop()

    def subscribe(topic: str) -> Any:
        sub = loop.run_until_complete(transport.subscribe(f"{topic}-replies", "r", shared=False))
        pieces = Reassembler(1 << 20)

        async def whole() -> Message:  # replies of more than 64 bytes come in pieces
            while True:
                piece = await sub.receive()
                done = pieces.add(piece.properties[Prop.REQUEST_CONTEXT], piece)
                if done is not None:
                    return done

        def next_reply(timeout: float) -> Message:
            return loop.run_until_complete(asyncio.wait_for(whole(), timeout))

        return next_reply

    yield subscribe
    loop.run_until_complete(transport.close())
    loop.close()


def test_hostile_heads_do_not_stop_small_calls(broker: MemoryBroker) -> None:
    """Six heads claiming 1 GiB in a billion pieces that never come, four workers."""
    topic = "hostile"
    asyncio.run(side_subscriptions(broker, topic, 6))
    with ListenerThread(listener(broker, topic, workers=4)):
        asyncio.run(
            publish(broker, topic, *(head(topic, n, size=1000, count=1000) for n in range(6)))
        )
        time.sleep(0.2)  # the listener takes the heads
        start = time.monotonic()
        with Client(topic, transport=MemoryTransport(broker), timeout=10) as client:
            assert client.call({"func_name": "total", "values": [1.0, 2.0]}) == 3.0
        assert time.monotonic() - start < 2
        stopped = time.monotonic()
    assert time.monotonic() - stopped < 2


def test_a_billion_pieces_for_a_kilobyte_is_refused_at_once(
    broker: MemoryBroker, replies: Any
) -> None:
    topic = "billion"
    reply = replies(topic)
    with ListenerThread(listener(broker, topic)):
        asyncio.run(publish(broker, topic, head(topic, 0, size=1024)))
        answer = reply(2)
    assert answer.properties[Prop.STATUS] == "error"
    assert "1000000000 pieces for a payload of 1024 bytes" in answer.payload.decode()


def test_a_head_claiming_more_than_max_payload_is_refused(
    broker: MemoryBroker, replies: Any
) -> None:
    topic = "toolarge"
    reply = replies(topic)
    with ListenerThread(listener(broker, topic, max_payload=1000)):
        asyncio.run(publish(broker, topic, head(topic, 0, size=1001, count=2)))
        answer = reply(2)
    assert "the request has 1001 bytes, more than this backend takes" in answer.payload.decode()


SLOW = """
import time


def hold(seconds: float, values: list[float]) -> float:
    \"\"\"Sleep, then add the values.\"\"\"
    time.sleep(seconds)
    return sum(values)
"""


def test_an_upload_waits_for_the_memory_budget_until_its_deadline(
    broker: MemoryBroker, replies: Any, write_module: Any
) -> None:
    """A call in pieces holds the budget while it runs; a head that does not fit then waits,
    and is refused when its deadline passes."""
    topic = "budget"
    reply = replies(topic)
    asyncio.run(side_subscriptions(broker, topic, 1))
    backend = MemoryTransport(broker)
    backend.max_message_size = 64
    served = Listener(
        Dispatcher.from_module(write_module(SLOW)),
        backend,
        topic,
        max_payload=1000,
        upload_memory=1000,
        upload_timeout=1.0,
    )
    caller = MemoryTransport(broker)
    caller.max_message_size = 64
    with (
        ListenerThread(served),
        Client(topic, transport=caller, timeout=10) as client,
        ThreadPoolExecutor(1) as pool,
    ):
        call = pool.submit(client.call, {"func_name": "hold", "seconds": 2.5, "values": [0.5] * 50})
        time.sleep(0.5)  # its pieces came, and it runs
        start = time.monotonic()
        asyncio.run(publish(broker, topic, head(topic, 0, size=800, count=2)))
        answer = reply(5)
        waited = time.monotonic() - start
        assert call.result(10) == 25.0
    assert "800 bytes did not fit in the upload memory budget of 1000 bytes" in (
        answer.payload.decode()
    )
    assert 0.9 < waited < 2
    assert side_topic(topic, "s0") not in broker.subscriptions()  # its pieces are deleted


def test_an_upload_that_fits_once_another_is_done_goes_ahead(broker: MemoryBroker) -> None:
    async def run() -> list[str]:
        budget = Budget(1000)
        order: list[str] = []
        loop = asyncio.get_running_loop()
        await budget.reserve(600, loop.time() + 5)
        later = asyncio.ensure_future(budget.reserve(600, loop.time() + 5))
        small = asyncio.ensure_future(budget.reserve(300, loop.time() + 5))
        later.add_done_callback(lambda _: order.append("600"))
        small.add_done_callback(lambda _: order.append("300"))
        await asyncio.sleep(0.05)
        assert order == []  # first come, first served: the 300 waits behind the 600
        budget.release(600)
        await asyncio.gather(later, small)
        assert budget.used == 900
        with pytest.raises(ProtocolError, match="2000 bytes do not fit in the upload memory"):
            await budget.reserve(2000, loop.time() + 5)
        return order

    assert asyncio.run(run()) == ["600", "300"]


def test_a_stalled_upload_times_out_as_a_whole(broker: MemoryBroker, replies: Any) -> None:
    """A piece every 0.4 s, a deadline of 1 s for the whole upload: refused after 1 s."""
    topic = "trickle"
    reply = replies(topic)
    asyncio.run(side_subscriptions(broker, topic, 1))
    side = side_topic(topic, "s0")

    async def trickle() -> None:
        await publish(broker, topic, head(topic, 0, size=6, count=6))
        for index in range(1, 6):
            await asyncio.sleep(0.4)
            await publish(broker, side, rest(index, b"x", index, 6, 6))

    with ListenerThread(listener(broker, topic, upload_timeout=1.0)):
        start = time.monotonic()
        asyncio.run(trickle())
        answer = reply(5)
    assert time.monotonic() - start < 2.5
    assert "pieces of the request arrived within 1 s" in answer.payload.decode()


def test_stopping_drops_an_upload_and_leaves_its_request_and_pieces(broker: MemoryBroker) -> None:
    topic = "stopping"
    asyncio.run(side_subscriptions(broker, topic, 1))
    side = side_topic(topic, "s0")
    thread = ListenerThread(listener(broker, topic, workers=1)).start()
    asyncio.run(publish(broker, topic, head(topic, 0, size=6, count=3)))
    asyncio.run(publish(broker, side, rest(1, b"x", 1, 3, 6)))
    time.sleep(0.3)  # the listener took the head, and the piece
    start = time.monotonic()
    thread.stop(timeout=10)
    assert time.monotonic() - start < 1.5  # not waiting for pieces that never come
    assert broker.backlog(topic, DEFAULT_SUBSCRIPTION) == 1  # the head, for another instance
    assert broker.backlog(side, FRAGMENT_SUBSCRIPTION) == 1  # its piece, kept


def test_a_flood_of_heads_is_refused_beyond_the_uploads_held_at_once(
    broker: MemoryBroker, replies: Any
) -> None:
    topic = "flood"
    reply = replies(topic)
    asyncio.run(side_subscriptions(broker, topic, 20))
    served = listener(broker, topic, workers=1, uploads=3)
    with ListenerThread(served):
        asyncio.run(publish(broker, topic, *(head(topic, n, size=10, count=10) for n in range(20))))
        refused = [reply(2).payload.decode() for _ in range(17)]
        assert served.uploading == 3
        start = time.monotonic()
        with Client(topic, transport=MemoryTransport(broker), timeout=10) as client:
            assert client.call({"func_name": "total", "values": [1.0, 2.0]}) == 3.0
        assert time.monotonic() - start < 2
    assert all("3 requests in pieces are being received already" in r for r in refused)
    assert len([t for t in broker.subscriptions() if "_fragments_" in t]) == 3  # those held
    assert broker.backlog(topic, DEFAULT_SUBSCRIPTION) == 3  # left for another instance


def test_limits_come_from_the_environment() -> None:
    env = {
        "DEMESSAGING_MAX_PAYLOAD": "1000",
        "DEMESSAGING_UPLOAD_MEMORY": "5000",
        "DEMESSAGING_UPLOAD_TIMEOUT": "2.5",
    }
    options = Settings.from_env(environ=env).listener_options()
    assert (options["max_payload"], options["upload_memory"], options["upload_timeout"]) == (
        1000,
        5000,
        2.5,
    )
    defaults = Settings().listener_options()
    assert defaults["max_payload"] == GIB
    assert defaults["upload_memory"] == 2 * GIB
    assert defaults["upload_timeout"] == 60.0
    assert Settings(max_payload=1000).listener_options()["upload_memory"] == 2000


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"DEMESSAGING_MAX_PAYLOAD": "0"}, "max_payload must be at least 1"),
        ({"DEMESSAGING_UPLOAD_TIMEOUT": "0"}, "upload_timeout must be positive"),
        (
            {"DEMESSAGING_MAX_PAYLOAD": "1000", "DEMESSAGING_UPLOAD_MEMORY": "999"},
            "upload_memory must be at least max_payload",
        ),
        ({"DEMESSAGING_UPLOAD_MEMORY": "lots"}, "is not a whole number"),
    ],
)
def test_bad_limits_are_refused(env: dict[str, str], error: str) -> None:
    with pytest.raises(ConfigurationError, match=error):
        Settings.from_env(environ=env)


def test_fragment_timeout_is_the_deprecated_name_of_upload_timeout(broker: MemoryBroker) -> None:
    with pytest.warns(DeprecationWarning, match="upload_timeout"):
        served = listener(broker, "old", fragment_timeout=3.0)
    assert served.upload_timeout == 3.0
    with pytest.raises(ValueError, match="upload_memory"):
        listener(broker, "bad", max_payload=100, upload_memory=99)
