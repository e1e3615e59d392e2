"""The in-memory broker behaves like a Pulsar namespace in the ways the backend relies on."""

from __future__ import annotations

import asyncio

import pytest

from demessaging.errors import ConfigurationError, TransportError
from demessaging.protocol import Message
from demessaging.transport import connect
from demessaging.transport.memory import MemoryBroker, MemoryTransport


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 5))


def msg(n: int) -> Message:
    return Message(payload=str(n).encode(), properties={"n": str(n)})


def test_shared_consumers_take_turns_and_each_message_goes_to_one(broker: MemoryBroker) -> None:
    async def scenario() -> tuple[list[bytes], list[bytes]]:
        t = MemoryTransport(broker)
        a = await t.subscribe("topic", "sub")
        b = await t.subscribe("topic", "sub")
        for i in range(10):
            await t.publish("topic", msg(i))
        got_a = [(await a.receive()).payload for _ in range(5)]
        got_b = [(await b.receive()).payload for _ in range(5)]
        await t.close()
        return got_a, got_b

    got_a, got_b = run(scenario())
    assert got_a
    assert got_b
    assert sorted(got_a + got_b, key=int) == [str(i).encode() for i in range(10)]
    assert not set(got_a) & set(got_b)


def test_every_subscription_gets_every_message(broker: MemoryBroker) -> None:
    async def scenario() -> tuple[bytes, bytes]:
        t = MemoryTransport(broker)
        a = await t.subscribe("topic", "one")
        b = await t.subscribe("topic", "two")
        await t.publish("topic", msg(7))
        result = (await a.receive()).payload, (await b.receive()).payload
        await t.close()
        return result

    assert run(scenario()) == (b"7", b"7")


def test_messages_before_any_subscription_are_dropped(broker: MemoryBroker) -> None:
    async def scenario() -> bytes:
        t = MemoryTransport(broker)
        await t.publish("topic", msg(1))
        sub = await t.subscribe("topic", "sub")
        await t.publish("topic", msg(2))
        payload = (await sub.receive()).payload
        await t.close()
        return payload

    assert run(scenario()) == b"2"


def test_nack_redelivers_and_ack_settles(broker: MemoryBroker) -> None:
    async def scenario() -> list[int]:
        t = MemoryTransport(broker)
        sub = await t.subscribe("topic", "sub")
        await t.publish("topic", msg(1))
        first = await sub.receive()
        backlogs = [broker.backlog("topic", "sub")]
        await sub.nack(first)
        again = await sub.receive()
        assert again.payload == first.payload
        await sub.ack(again)
        backlogs.append(broker.backlog("topic", "sub"))
        await t.close()
        return backlogs

    assert run(scenario()) == [1, 0]


def test_unacked_messages_go_to_another_consumer_when_one_closes(broker: MemoryBroker) -> None:
    async def scenario() -> bytes:
        t = MemoryTransport(broker)
        first = await t.subscribe("topic", "sub")
        await t.publish("topic", msg(5))
        taken = await first.receive()
        second = await t.subscribe("topic", "sub")
        await first.close()  # dies without acknowledging
        redelivered = await second.receive()
        assert redelivered.message_id == taken.message_id
        await t.close()
        return redelivered.payload

    assert run(scenario()) == b"5"


def test_exclusive_subscription_refuses_a_second_consumer(broker: MemoryBroker) -> None:
    async def scenario() -> None:
        t = MemoryTransport(broker)
        await t.subscribe("topic", "mine", shared=False)
        try:
            with pytest.raises(TransportError, match="exclusive"):
                await t.subscribe("topic", "mine", shared=False)
        finally:
            await t.close()

    run(scenario())


def test_receive_after_close_raises(broker: MemoryBroker) -> None:
    async def scenario() -> None:
        t = MemoryTransport(broker)
        sub = await t.subscribe("topic", "sub")
        await sub.close()
        with pytest.raises(TransportError, match="closed"):
            await sub.receive()

    run(scenario())


def test_connect_picks_transport_by_scheme() -> None:
    a = connect("memory://shared-name")
    b = connect("memory://shared-name")
    assert isinstance(a, MemoryTransport)
    assert isinstance(b, MemoryTransport)
    assert a.broker is b.broker
    assert connect("memory://other").broker is not a.broker  # type: ignore[attr-defined]
    with pytest.raises(ConfigurationError, match="unknown broker URL 'carrier-pigeon://x'"):
        connect("carrier-pigeon://x")
