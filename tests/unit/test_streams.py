"""Streamed results: a generator function's items reach the caller one by one, held back."""

from __future__ import annotations

import asyncio
import importlib
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from demessaging.backend import ListenerThread
from demessaging.backend import replies as replies_module
from demessaging.backend import serve as serve_in_thread
from demessaging.backend.dispatcher import Dispatcher
from demessaging.client import Client, streams
from demessaging.core.loader import load_module
from demessaging.errors import APIChangedError, ProtocolError, RemoteError
from demessaging.message import Message, Prop
from demessaging.transport.memory import MemoryBroker, MemoryTransport
from tests.helpers import generated_client

MODULE = '''
import threading
from collections.abc import Iterator

PRODUCED = []
CLOSED = threading.Event()


class RunOutError(Exception):
    """The numbers ran out."""


def numbers(n: int, fail_at: int = -1) -> Iterator[int]:
    """Count to n, one number at a time.

    Parameters
    ----------
    n
        How many.
    fail_at
        Raise when reaching this number.
    """
    try:
        for i in range(n):
            if i == fail_at:
                raise RunOutError(f"ran out at {i}")
            PRODUCED.append(i)
            yield i
    finally:
        CLOSED.set()


def wrong() -> Iterator[int]:
    """Yield something that is not a number."""
    yield 1
    yield "two"


def quick() -> str:
    """Answer at once."""
    return "free"
'''


@pytest.fixture
def module(write_backend: Callable[[str], Path]) -> ModuleType:
    return load_module(write_backend(MODULE))


def test_without_asking_for_a_stream_a_caller_gets_the_list(module: ModuleType) -> None:
    dispatcher = Dispatcher.from_module(module)  # type: ignore[arg-type]
    assert dispatcher.call({"func_name": "numbers", "n": 3}) == [0, 1, 2]
    outcome = dispatcher.handle(b'{"func_name": "wrong"}')
    assert outcome.error is not None
    assert outcome.error.stage == "result"
    assert "yielded an item that does not match" in outcome.error.message
    schema = dispatcher.models.functions["numbers"].returns.json_schema()
    assert schema == {"type": "integer"}  # the schema of each item


def test_a_thousand_items_come_in_order_and_the_backend_stays_a_window_ahead(
    module: ModuleType, serve: Callable[..., ListenerThread], client: Callable[..., Client]
) -> None:
    serve(module)
    window = 8
    taken: list[int] = []
    ahead = 0
    for item in client().stream({"func_name": "numbers", "n": 1000}, window=window):
        taken.append(item)
        ahead = max(ahead, len(module.PRODUCED) - len(taken))  # type: ignore[attr-defined]
        if len(taken) == 100:
            time.sleep(0.2)  # a slow caller: the generator waits instead of running ahead
            assert len(module.PRODUCED) <= 100 + window + 1  # type: ignore[attr-defined]
    assert taken == list(range(1000))
    assert ahead <= window + 1


def test_stopping_early_stops_the_generator_and_frees_the_worker(
    module: ModuleType, serve: Callable[..., ListenerThread], client: Callable[..., Client]
) -> None:
    serve(module, workers=1)
    c = client()
    items = c.stream({"func_name": "numbers", "n": 1_000_000}, window=4)
    assert [next(items) for _ in range(5)] == [0, 1, 2, 3, 4]
    items.close()
    started = time.monotonic()
    assert c.call({"func_name": "quick"}) == "free"
    assert time.monotonic() - started < 1.0
    assert module.CLOSED.wait(1)  # type: ignore[attr-defined]
    assert len(module.PRODUCED) < 20  # type: ignore[attr-defined]


def test_an_error_comes_after_the_items_before_it(
    module: ModuleType, serve: Callable[..., ListenerThread], client: Callable[..., Client]
) -> None:
    serve(module)
    taken: list[int] = []
    items = client().stream({"func_name": "numbers", "n": 10, "fail_at": 3})
    with pytest.raises(RemoteError, match="ran out at 3"):
        taken.extend(items)
    assert taken == [0, 1, 2]


def test_async_streams_run_side_by_side(
    module: ModuleType, serve: Callable[..., ListenerThread], client: Callable[..., Client]
) -> None:
    serve(module)
    c = client()

    async def take(n: int) -> list[int]:
        return [item async for item in c.astream({"func_name": "numbers", "n": n}, window=2)]

    async def both() -> list[list[int]]:
        return await asyncio.gather(take(50), take(30))

    assert asyncio.run(both()) == [list(range(50)), list(range(30))]


@pytest.fixture
def mirror(
    tmp_path: Path, write_backend: Callable[[str], Path]
) -> Iterator[tuple[ModuleType, Path, str]]:
    """A client generated for the module, and a private broker for it."""
    original = write_backend(MODULE)
    tag = uuid.uuid4().hex[:8]
    url = f"memory://{tag}"
    with generated_client(
        original, tmp_path / tag, name=f"numbers-{tag}", topic="numbers", broker_url=url
    ) as generated:
        yield generated, original, url


def test_a_generated_client_mirrors_generators_in_both_faces(
    mirror: tuple[ModuleType, Path, str],
) -> None:
    generated, original, url = mirror
    aio = importlib.import_module(f"{generated.__name__}.aio")
    with serve_in_thread(original, broker_url=url, topic="numbers"):
        assert list(generated.numbers(5)) == [0, 1, 2, 3, 4]
        with pytest.raises(generated.RunOutError, match="ran out at 2"):
            list(generated.numbers(5, fail_at=2))

        async def take() -> list[int]:
            return [i async for i in aio.numbers(4)]

        assert asyncio.run(take()) == [0, 1, 2, 3]


@pytest.mark.parametrize("window", ["\u00b2", "0", "-3", "many"])
def test_a_malformed_window_means_no_stream(
    module: ModuleType,
    serve: Callable[..., ListenerThread],
    broker: MemoryBroker,
    window: str,
) -> None:
    """``"\u00b2"`` passes ``str.isdigit()`` but not ``int()``: it once failed the call."""
    serve(module)

    async def exchange() -> Message:
        transport = MemoryTransport(broker)
        replies = await transport.subscribe("raw-replies", "me", shared=False)
        properties = {
            Prop.MESSAGE_TYPE: "request",
            Prop.REQUEST_CONTEXT: "c1",
            Prop.RESPONSE_TOPIC: "raw-replies",
            Prop.STREAM: window,
        }
        await transport.publish("t", Message(b'{"func_name": "numbers", "n": 3}', properties))
        reply = await asyncio.wait_for(replies.receive(), 10)
        await transport.close()
        return reply

    reply = asyncio.run(exchange())
    assert reply.properties[Prop.MESSAGE_TYPE] == "response"  # no items before it
    assert reply.properties[Prop.STATUS] == "success", reply.payload
    assert Prop.STREAM not in reply.properties
    assert json.loads(reply.payload) == [0, 1, 2]


def test_a_window_over_the_backends_limit_is_cut_to_it(
    module: ModuleType, serve: Callable[..., ListenerThread], client: Callable[..., Client]
) -> None:
    serve(module)
    items = client(timeout=5).stream({"func_name": "numbers", "n": 1500}, window=2500)
    assert sum(1 for _ in items) == 1500


def test_a_slow_caller_is_not_taken_for_a_gone_one(
    module: ModuleType,
    serve: Callable[..., ListenerThread],
    client: Callable[..., Client],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(replies_module, "STREAM_IDLE", 0.3)  # the backend's patience
    monkeypatch.setattr(streams, "STREAM_KEEPALIVE", 0.1)  # the caller says it is there
    serve(module)
    taken = []
    for item in client(timeout=0.5).stream({"func_name": "numbers", "n": 3}, window=1):
        time.sleep(1.0)  # twice the backend's patience for each item
        taken.append(item)
    assert taken == [0, 1, 2]


def test_streaming_a_function_that_is_no_generator_is_an_error(
    serve: Callable[..., ListenerThread],
    client: Callable[..., Client],
    write_backend: Callable[[str], Path],
) -> None:
    serve(write_backend("def listing(n: int) -> list[int]:\n    return list(range(n))\n"))
    with pytest.raises(ProtocolError, match="did not stream listing: it is not a generator"):
        list(client().stream({"func_name": "listing", "n": 3}, member="listing"))


def test_configured_generators_stream_their_items(
    serve: Callable[..., ListenerThread],
    client: Callable[..., Client],
    write_backend: Callable[[str], Path],
) -> None:
    source = """
from collections.abc import Iterator

from demessaging import configure


@configure(returns={"description": "The numbers."})
def counted(n: int) -> Iterator[int]:
    yield from range(n)
"""
    serve(write_backend(source))
    assert list(client().stream({"func_name": "counted", "n": 3})) == [0, 1, 2]


def test_a_generator_that_became_a_list_is_a_changed_api(
    mirror: tuple[ModuleType, Path, str], write_backend: Callable[[str], Path]
) -> None:
    generated, _, url = mirror
    changed = write_backend(
        "def numbers(n: int, fail_at: int = -1) -> list[int]:\n    return list(range(n))\n"
    )
    with (
        serve_in_thread(changed, broker_url=url, topic="numbers"),
        pytest.raises(APIChangedError, match="the return value changed"),
    ):
        list(generated.numbers(3))
