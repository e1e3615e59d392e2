"""Messages naming another caller's reply topic and context do not silence its calls.

A backend remembers the requests it answered by :func:`repeat_key`, which names the request
itself, not only its reply topic and context; and a client's contexts are random, so that
nobody who cannot read its reply topic can name a call it has not made yet.
"""

from __future__ import annotations

import itertools
import time
import zlib
from collections.abc import Callable, Iterator

import pytest

from demessaging.backend import ListenerThread
from demessaging.backend.listener import Listener
from demessaging.backend.recent import DIGESTED, repeat_key
from demessaging.client import Client
from demessaging.client import calls as calls_module
from demessaging.client.calls import CONTEXTS, USED_CONTEXTS
from demessaging.message import Message, MessageType, Prop
from demessaging.protocol.control import make_control
from demessaging.protocol.outgoing import make_request
from demessaging.transport.memory import MemoryBroker, MemoryTransport

from .test_reply_topics import PAYLOAD, Watch, dispatcher, publish, settled

OTHER = b'{"func_name": "total", "values": [5, 6]}'


def request(
    payload: bytes = PAYLOAD, context: str = "7", kind: MessageType = MessageType.REQUEST
) -> Message:
    return make_request(payload, context=context, response_topic="replies_x", message_type=kind)


def key(message: Message) -> str:
    props = message.properties
    return repeat_key(f"{props[Prop.RESPONSE_TOPIC]}\0{props[Prop.REQUEST_CONTEXT]}", message)


def test_the_repeat_key_names_the_request_not_only_its_address() -> None:
    first = request()
    again = Message(bytes(first.payload), dict(first.properties), message_id="redelivered")
    assert key(again) == key(first)  # a redelivery is a repeat
    others = [
        request(OTHER),
        request(kind=MessageType.API_INFO),
        request(context="8"),
        make_request(PAYLOAD, context="7", response_topic="replies_y"),
        request(PAYLOAD + b" "),
    ]
    assert len({key(first), *(key(other) for other in others)}) == 1 + len(others)


@pytest.mark.parametrize("size", [1, DIGESTED, DIGESTED + 1, 2 * DIGESTED, 5 * DIGESTED])
def test_the_digest_covers_the_start_and_the_end_of_the_payload(size: int) -> None:
    original = key(request(bytes(size)))
    for where in {0, DIGESTED - 1, size // 2, size - DIGESTED, size - 1}:
        if not 0 <= where < size:
            continue
        changed = bytearray(size)
        changed[where] = 1
        unread = DIGESTED <= where < size - DIGESTED  # the middle of a long payload: not read
        assert (key(request(bytes(changed))) == original) is unread, where
    assert key(request(bytes(size + 1))) != original  # its length counts too


def test_digesting_leaves_a_bytearray_payload_resizable() -> None:
    payload = bytearray(3 * DIGESTED)
    repeat_key("replies_x\x007", Message(payload, {Prop.MESSAGE_TYPE: "request"}))
    payload.append(0)  # no view of it is left
    assert len(payload) == 3 * DIGESTED + 1


def test_a_long_payload_costs_no_more_than_a_short_one() -> None:
    large = request(bytes(64 * DIGESTED))

    def fastest(work: Callable[[], object]) -> float:
        took = []
        for _ in range(3):
            started = time.perf_counter()
            work()
            took.append(time.perf_counter() - started)
        return min(took)

    # it reads 2 of the 64 MiB: a 32nd of the time a digest of all of them takes
    assert fastest(lambda: key(large)) < fastest(lambda: zlib.crc32(large.payload)) / 4


def test_a_forged_query_or_request_does_not_silence_the_real_one(broker: MemoryBroker) -> None:
    handler = dispatcher()
    replies = Watch(broker, "replies_x")
    try:
        with ListenerThread(Listener(handler, MemoryTransport(broker), "forged")):
            for message, runs, answers in [
                (request(kind=MessageType.API_INFO), 0, 1),  # a forgery with the next context
                (request(OTHER), 1, 2),  # another request with it
                (request(), 2, 3),  # the caller's request with it: run and answered
                (request(), 2, 3),  # its redelivery: acknowledged, not run again
            ]:
                publish(broker, "forged", message)
                assert settled(broker, "forged")
                deadline = time.monotonic() + 5
                while len(replies.messages) < answers and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(0.1)  # a reply too many would be here by now
                assert (handler.runs, len(replies.messages)) == (runs, answers)
    finally:
        replies.close()
    assert replies.messages[-1].payload == b"3.0"


@pytest.fixture
def backend(broker: MemoryBroker) -> Iterator[MemoryBroker]:
    with ListenerThread(Listener(dispatcher(), MemoryTransport(broker), "climate")):
        yield broker


def contexts_of(broker: MemoryBroker, calls: int, clients: int = 1) -> list[list[str]]:
    """The contexts of ``calls`` calls by each of ``clients`` clients, as the backend sees them."""
    seen = Watch(broker, "climate")
    made = []
    try:
        for _ in range(clients):
            with Client("climate", transport=MemoryTransport(broker), timeout=10) as c:
                before = len(seen.messages)
                for _ in range(calls):
                    assert c.call({"func_name": "total", "values": [1, 2]}) == 3.0
                deadline = time.monotonic() + 5
                while len(seen.messages) < before + calls + 1 and time.monotonic() < deadline:
                    time.sleep(0.01)
                made.append(
                    [
                        m.properties[Prop.REQUEST_CONTEXT]
                        for m in seen.messages[before:]
                        if m.properties.get(Prop.MESSAGE_TYPE) == MessageType.REQUEST.value
                    ]
                )
    finally:
        seen.close()
    return made


def test_contexts_are_random_digits_that_fit_a_32_bit_column(backend: MemoryBroker) -> None:
    first, second = contexts_of(backend, calls=30, clients=2)
    assert len(first) == len(second) == 30
    numbers = [int(context) for context in first + second]
    assert all(context.isascii() and context.isdigit() for context in first + second)
    assert all(1 <= number <= CONTEXTS == 2**31 - 1 for number in numbers)
    assert len(set(numbers)) == 60  # none shared, within a client or between two
    # not a count: the chance that 60 random draws all fall in 2**24 of the 2**31 is nil
    assert max(numbers) - min(numbers) > 2**24
    steps = {b - a for a, b in itertools.pairwise(numbers)}
    assert len(steps) > 50


def test_a_client_draws_none_of_its_latest_contexts_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    draws = iter([4, 4, 9, 4, 9, 9, 1, *range(100, 100 + 2 * USED_CONTEXTS)])
    monkeypatch.setattr(calls_module.secrets, "randbelow", lambda _: next(draws))
    with Client("climate", transport=MemoryTransport(MemoryBroker())) as c:
        made = [c._connection._calls.new_context() for _ in range(3)]
        assert made == ["5", "10", "2"]
        for _ in range(USED_CONTEXTS + 5):
            c._connection._calls.new_context()
        assert len(c._connection._calls.used) == USED_CONTEXTS
        assert "5" not in c._connection._calls.used  # the oldest forgotten: memory is bounded


def test_a_forged_cancel_for_a_context_to_come_does_not_stop_a_call(
    backend: MemoryBroker,
) -> None:
    with Client("climate", transport=MemoryTransport(backend), timeout=10) as c:
        for context in range(1, 101):  # what a counting client would use next
            control = make_control(context=str(context), response_topic=c.response_topic)
            publish(backend, "climate_control", control)
        time.sleep(0.2)  # the backend has heard them
        for _ in range(20):
            assert c.call({"func_name": "total", "values": [1, 2]}, timeout=5) == 3.0
