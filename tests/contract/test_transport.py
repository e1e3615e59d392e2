"""What every transport does, on every broker: the ``Transport`` interface's contract.

Run on ``memory://``, pulsar-lite, Apache Pulsar (binary protocol and WebSocket API) and
dasf-broker-django; see conftest.py for how each target departs from Pulsar's semantics.
"""

from __future__ import annotations

import asyncio

import pytest

from demessaging.errors import TransportError
from demessaging.message import Message
from demessaging.transport import Subscription

from .conftest import CLOSE_WITHIN, QUIET, WAIT, Contract


def properties(topic: str) -> dict[str, str]:
    """Properties as the protocol uses them: names and values of every kind it sends.

    The reply topic is made for ``topic``: dasf-broker-django makes a topic of each reply
    topic it sees, belonging to the request topic, and refuses the same one for another.
    """
    return {
        "messageType": "request",
        "requestMessageId": "7f0c-41",
        "response_topic": f"reply-{topic}",
        "note": "Grüße, 東京 ✓",
        "digits": "0042",
    }


def message(text: str, **properties: str) -> Message:
    """A message whose payload is ``text``."""
    return Message(payload=text.encode(), properties={"n": text, **properties})


def pattern(size: int) -> bytes:
    """``size`` bytes that are not all alike (a prime period, so pieces do not repeat)."""
    return (bytes(range(251)) * (size // 251 + 1))[:size]


async def receive(sub: Subscription, seconds: float = WAIT) -> Message:
    """The next message, within ``seconds``."""
    return await asyncio.wait_for(sub.receive(), seconds)


async def nothing_comes(sub: Subscription, seconds: float = QUIET) -> None:
    """Assert that no message comes within ``seconds``.

    The receive is cancelled; a message arriving after may be lost to this consumer, so the
    subscription is not read further (close it: the broker gives it to the next consumer).
    """
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(sub.receive(), seconds)


def test_a_message_arrives_with_its_payload_and_properties_intact(
    contract: Contract, topic: str
) -> None:
    payload = bytes(range(256)) * 4  # every byte value, not text

    async def scenario() -> Message:
        transport = contract.transport()
        sub = await transport.subscribe(topic, "contract")
        await transport.publish(topic, Message(payload=payload, properties=properties(topic)))
        got = await receive(sub)
        await sub.ack(got)
        return got

    got = contract.run(scenario)
    assert bytes(got.payload) == payload
    assert got.properties == properties(topic)
    assert got.message_id


def test_two_transports_talk_and_each_subscription_gets_every_message(
    contract: Contract, topic: str
) -> None:
    async def scenario() -> tuple[list[bytes], list[bytes]]:
        sender, receiver = contract.transport(), contract.transport()
        one = await receiver.subscribe(topic, "one")
        two = await receiver.subscribe(topic, "two")
        for n in range(3):
            await sender.publish(topic, message(str(n)))
        got = [[bytes((await receive(sub)).payload) for _ in range(3)] for sub in (one, two)]
        return got[0], got[1]

    one, two = contract.run(scenario)
    assert one == two == [b"0", b"1", b"2"]  # in order, too


def test_an_acknowledged_message_is_not_delivered_again(contract: Contract, topic: str) -> None:
    async def scenario() -> bytes:
        transport = contract.transport()
        first = await transport.subscribe(topic, "contract")
        await transport.publish(topic, message("done"))
        await first.ack(await receive(first))
        await first.close()
        await transport.publish(topic, message("next"))
        second = await transport.subscribe(topic, "contract")
        return bytes((await receive(second)).payload)

    # the subscription lives on between its consumers and holds only what was not acknowledged
    assert contract.run(scenario) == b"next"


def test_a_nacked_message_is_delivered_again(contract: Contract, topic: str) -> None:
    behaviour = contract.behaviour

    async def scenario() -> list[bytes]:
        transport = contract.transport()
        sub = await transport.subscribe(topic, "contract")
        await transport.publish(topic, message("again"))
        first = await receive(sub)
        await sub.nack(first)
        if not behaviour.nack_redelivers:
            # dasf-broker-django has no negative acknowledgement (transport/websocket.py): the
            # nack is a no-op, the message is not redelivered; the next one comes as usual
            await transport.publish(topic, message("next"))
            got = [bytes(first.payload), bytes((await receive(sub)).payload)]
            await nothing_comes(sub)
            return got
        again = await receive(sub, behaviour.nack_delay)
        await sub.ack(again)
        return [bytes(first.payload), bytes(again.payload)]

    expected = [b"again", b"again"] if contract.behaviour.nack_redelivers else [b"again", b"next"]
    assert contract.run(scenario, timeout=contract.behaviour.nack_delay + 60) == expected


def test_messages_left_unacknowledged_by_a_closed_consumer_come_to_the_next(
    contract: Contract, topic: str
) -> None:
    async def scenario() -> list[bytes]:
        transport = contract.transport()
        first = await transport.subscribe(topic, "contract")
        for n in range(3):
            await transport.publish(topic, message(str(n)))
        held = [await receive(first) for _ in range(3)]
        await first.ack(held[0])
        await first.close()  # 1 and 2 not acknowledged
        second = await transport.subscribe(topic, "contract")
        got = [await receive(second) for _ in range(2)]
        for m in got:
            await second.ack(m)
        return sorted(bytes(m.payload) for m in got)

    assert contract.run(scenario) == [b"1", b"2"]


def test_consumers_of_a_shared_subscription_split_its_messages(
    contract: Contract, topic: str
) -> None:
    count = 20

    async def scenario() -> tuple[list[bytes], list[bytes]]:
        transport = contract.transport()
        subs = [await transport.subscribe(topic, "workers", prefetch=1) for _ in range(2)]
        got: tuple[list[bytes], list[bytes]] = ([], [])

        async def consume(sub: Subscription, into: list[bytes]) -> None:
            while True:
                received = await sub.receive()
                into.append(bytes(received.payload))
                await sub.ack(received)
                await asyncio.sleep(0.01)  # a worker busy for a moment: the other gets some

        tasks = [asyncio.ensure_future(consume(s, into)) for s, into in zip(subs, got, strict=True)]
        try:
            for n in range(count):
                await transport.publish(topic, message(str(n)))
            expected = count if contract.behaviour.shared else 2 * count
            deadline = asyncio.get_running_loop().time() + WAIT
            while len(got[0]) + len(got[1]) < expected:
                assert asyncio.get_running_loop().time() < deadline, got
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)  # room for a message delivered twice to show
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return got

    one, two = contract.run(scenario)
    every = sorted(str(n).encode() for n in range(count))
    if contract.behaviour.shared:
        assert one
        assert two
        assert sorted(one + two) == every  # each message once, to one of them
    else:
        # dasf-broker-django ignores subscription names and gives every message to every
        # consumer of a topic (transport/websocket.py): both get all
        assert sorted(one) == sorted(two) == every


def test_unsubscribe_deletes_the_subscription_and_stops_receiving(
    contract: Contract, topic: str
) -> None:
    async def scenario() -> list[bytes]:
        transport = contract.transport()
        sub = await transport.subscribe(topic, "contract")
        await sub.unsubscribe()
        with pytest.raises(TransportError):
            await asyncio.wait_for(sub.receive(), WAIT)
        await transport.publish(topic, message("meanwhile"))  # while there is no subscription
        again = await transport.subscribe(topic, "contract")
        await transport.publish(topic, message("after"))
        got = [await receive(again)]
        if got[0].payload != b"after":
            got.append(await receive(again))
        return [bytes(m.payload) for m in got]

    if contract.behaviour.unsubscribe_deletes:
        # the subscription made again is new: it starts at the end of the topic
        assert contract.run(scenario) == [b"after"]
    else:
        # on pulsar-lite the subscription is only closed (PulsarTransport's pulsar_lite), and
        # dasf-broker-django has none to delete: what came meanwhile is kept for it
        assert contract.run(scenario) == [b"meanwhile", b"after"]


def test_close_is_quick_and_receiving_after_it_fails_cleanly(
    contract: Contract, topic: str
) -> None:
    async def scenario() -> float:
        transport = contract.transport()
        one = await transport.subscribe(topic, "contract-one")
        two = await transport.subscribe(topic, "contract-two")
        await transport.publish(topic, message("x"))
        await one.ack(await receive(one))
        await one.close()
        with pytest.raises(TransportError):
            await asyncio.wait_for(one.receive(), WAIT)
        loop = asyncio.get_running_loop()
        started = loop.time()
        await asyncio.wait_for(transport.close(), CLOSE_WITHIN)
        elapsed = loop.time() - started
        with pytest.raises(TransportError):
            await asyncio.wait_for(two.receive(), WAIT)
        return elapsed

    assert contract.run(scenario) < CLOSE_WITHIN


def test_a_payload_of_the_largest_size_goes_in_one_message(contract: Contract, topic: str) -> None:
    async def scenario() -> tuple[int, bytes, dict[str, str]]:
        transport = contract.transport()
        size = transport.max_message_size or 8 * 1024 * 1024  # unlimited: 8 MiB for the test
        payload = pattern(size)
        sub = await transport.subscribe(topic, "contract")
        await transport.publish(topic, Message(payload=payload, properties=properties(topic)))
        got = await receive(sub)
        await sub.ack(got)
        return size, bytes(got.payload), got.properties

    size, payload, received = contract.run(scenario)
    assert len(payload) == size
    assert payload == pattern(size)
    assert received == properties(topic)
