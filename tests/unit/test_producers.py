"""The producer pool shared by the Pulsar and WebSocket transports."""

from __future__ import annotations

import asyncio
import random
from collections import Counter

import pytest

from demessaging.errors import TransportError
from demessaging.transport.producers import ProducerPool


class FakeProducer:
    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.closed = 0
        self.sent = 0


class Factory:
    """Makes producers after a random delay; can be told to fail for a topic."""

    def __init__(self, seed: int = 0) -> None:
        self.made: list[FakeProducer] = []
        self.failing: set[str] = set()
        self.random = random.Random(seed)

    async def make(self, topic: str) -> FakeProducer:
        await asyncio.sleep(self.random.random() / 100)
        if topic in self.failing:
            raise TransportError(f"no producer for {topic}")
        producer = FakeProducer(topic)
        self.made.append(producer)
        return producer

    async def close(self, producer: FakeProducer) -> None:
        await asyncio.sleep(self.random.random() / 100)
        producer.closed += 1


async def send(pool: ProducerPool[FakeProducer], topic: str, factory: Factory) -> None:
    async with pool.use(topic) as producer:
        assert not producer.closed  # never closed while in use
        await asyncio.sleep(factory.random.random() / 100)
        assert not producer.closed
        producer.sent += 1


def test_one_producer_per_topic_however_many_send_at_once() -> None:
    factory = Factory()

    async def run() -> None:
        pool = ProducerPool(factory.make, factory.close, limit=10)
        await asyncio.gather(*(send(pool, "a", factory) for _ in range(20)))
        assert len(factory.made) == 1
        assert factory.made[0].sent == 20
        await pool.close()

    asyncio.run(run())
    assert [p.closed for p in factory.made] == [1]


@pytest.mark.parametrize("seed", range(5))
def test_a_burst_over_the_limit_closes_idle_producers_only_and_each_once(seed: int) -> None:
    factory = Factory(seed)
    topics = [f"t{i}" for i in range(6)]

    async def run() -> None:
        pool = ProducerPool(factory.make, factory.close, limit=2)
        for _ in range(10):
            sends = [send(pool, factory.random.choice(topics), factory) for _ in range(12)]
            await asyncio.gather(*sends)
            assert len(pool) <= 2  # trimmed once the burst is over
        await pool.close()

    asyncio.run(run())
    assert Counter(p.closed for p in factory.made) == {1: len(factory.made)}


def test_a_failed_send_retires_the_producer_after_its_last_user() -> None:
    factory = Factory()

    async def run() -> None:
        pool = ProducerPool(factory.make, factory.close, limit=10)
        other_done = asyncio.Event()

        async def slow_user() -> None:
            async with pool.use("a") as producer:
                await other_done.wait()
                assert not producer.closed  # still in use: not closed yet
            await asyncio.sleep(0.05)
            assert producer.closed == 1

        slow = asyncio.ensure_future(slow_user())
        await asyncio.sleep(0.02)
        with pytest.raises(TransportError):
            async with pool.use("a"):
                raise TransportError("send failed")
        other_done.set()
        await slow
        await send(pool, "a", factory)  # a new producer
        assert len(factory.made) == 2
        await pool.close()

    asyncio.run(run())


def test_a_producer_that_cannot_be_made_fails_its_users_and_is_tried_again() -> None:
    factory = Factory()
    factory.failing.add("a")

    async def run() -> None:
        pool = ProducerPool(factory.make, factory.close, limit=10)
        results = await asyncio.gather(
            *(send(pool, "a", factory) for _ in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, TransportError) for r in results)
        factory.failing.clear()
        await send(pool, "a", factory)
        assert len(factory.made) == 1
        await pool.close()

    asyncio.run(run())


def test_prepare_makes_ahead_and_release_closes_when_idle() -> None:
    factory = Factory()

    async def run() -> None:
        pool = ProducerPool(factory.make, factory.close, limit=10)
        await pool.prepare("side")
        assert "side" in pool
        assert len(factory.made) == 1
        await send(pool, "side", factory)
        assert len(factory.made) == 1  # the one made ahead was used
        await pool.release("side")
        assert "side" not in pool
        assert factory.made[0].closed == 1
        await pool.close()

    asyncio.run(run())
    assert factory.made[0].closed == 1
