"""The transport contract suite: one set of tests, run on ``memory://`` and on every broker.

Every test takes ``contract``: a :class:`Contract` for one target, ``memory`` (the in-process
broker) or one of the brokers chosen with ``--brokers`` (:mod:`tests.brokers`), reached by the
transport :func:`make_transport` builds. Each test runs its scenario in a fresh event loop,
with a deadline on the whole and on every wait, and closes its transports at the end.

Where a broker departs from Apache Pulsar's semantics, its :class:`Behaviour` says so, and the
tests assert what the broker documents instead of skipping.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from demessaging.message import Message
from demessaging.transport import Transport, connect
from demessaging.transport.base import Subscription
from tests.brokers import Broker, Brokers, is_probe, selected_brokers

T = TypeVar("T")

#: Seconds to wait for a message that should come (Apache Pulsar on a busy machine is slow).
WAIT = 30.0
#: Seconds a message that should not come is waited for.
QUIET = 2.0
#: Seconds closing a transport may take.
CLOSE_WITHIN = 15.0


@dataclass(frozen=True)
class Behaviour:
    """How a target departs from Apache Pulsar's semantics, as its documentation says.

    Attributes
    ----------
    shared
        Consumers of one shared subscription split its messages, each message going to one
        of them; else every consumer of a topic gets every message.
    nack_redelivers
        A negative acknowledgement brings the message again.
    nack_delay
        Seconds within which a nacked message comes again.
    redelivers_unacked
        Messages a consumer received and did not acknowledge come to the next consumer of
        the subscription once it closes.
    unsubscribe_deletes
        Unsubscribing deletes the subscription: a new one of the same name starts at the end
        of the topic.
    """

    shared: bool = True
    nack_redelivers: bool = True
    nack_delay: float = WAIT
    redelivers_unacked: bool = True
    unsubscribe_deletes: bool = True


BEHAVIOURS: dict[str, Behaviour] = {
    "memory": Behaviour(),
    # the transport closes subscriptions instead of deleting them on pulsar-lite, which never
    # deletes data (PulsarTransport's pulsar_lite): a subscription outlives unsubscribe
    "pulsar-lite": Behaviour(unsubscribe_deletes=False),
    "pulsar": Behaviour(),
    "pulsar-ws": Behaviour(),
    # dasf-broker-django has no subscriptions and no negative acknowledgement: it keeps a
    # topic's messages until the consumer's user acknowledged them, gives each new consumer
    # those outstanding, and every message to every consumer (dasf_broker/consumers.py)
    "dasf-broker": Behaviour(shared=False, nack_redelivers=False, unsubscribe_deletes=False),
}


@dataclass
class Contract:
    """One target of the contract suite: its broker, behaviour and the transports made.

    Attributes
    ----------
    broker
        The broker (for ``memory``, a private ``memory://`` one).
    behaviour
        How it departs from Apache Pulsar's semantics.
    """

    broker: Broker
    behaviour: Behaviour
    _made: list[Transport] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The target's name: ``memory``, ``pulsar-lite``, ``pulsar``..."""
        return self.broker.name

    def transport(self) -> Transport:
        """A new transport to the target, closed at the end of :meth:`run`."""
        self._made.append(make_transport(self.broker))
        return self._made[-1]

    def run(self, scenario: Callable[[], Awaitable[T]], timeout: float = 120.0) -> T:
        """Run ``scenario()`` in a new event loop within ``timeout`` seconds; close transports."""

        async def main() -> T:
            try:
                return await asyncio.wait_for(scenario(), timeout)
            finally:
                made, self._made = self._made, []
                for transport in made:
                    await asyncio.wait_for(transport.close(), CLOSE_WITHIN)

        return asyncio.run(main())


def make_transport(broker: Broker) -> Transport:
    """The transport the suite tests on ``broker``: the one place transports are built.

    On dasf-broker-django, whose topics its admin made (:func:`tests.brokers.topic`), a
    consumer connecting to a topic with nothing outstanding is sent an ``api_info`` probe:
    its subscriptions drop those.
    """
    transport = connect(broker.url)
    if broker.django is not None:
        subscribe = transport.subscribe

        async def without_probes(topic: str, subscription: str, **options: Any) -> Subscription:
            return _Unprobed(await subscribe(topic, subscription, **options))

        transport.subscribe = without_probes  # type: ignore[method-assign]
    return transport


class _Unprobed(Subscription):
    """A subscription that drops dasf-broker-django's probes."""

    def __init__(self, inner: Subscription) -> None:
        self._inner = inner

    async def receive(self) -> Message:
        while True:
            message = await self._inner.receive()
            if not is_probe(message):  # the broker keeps no probe: nothing to acknowledge
                return message

    async def ack(self, message: Message) -> None:
        await self._inner.ack(message)

    async def nack(self, message: Message) -> None:
        await self._inner.nack(message)

    async def close(self) -> None:
        await self._inner.close()

    async def unsubscribe(self) -> None:
        await self._inner.unsubscribe()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "target_name" in metafunc.fixturenames:
        names = ["memory", *selected_brokers(metafunc.config)]
        metafunc.parametrize("target_name", names, scope="session")


@pytest.fixture(scope="session")
def target(target_name: str, brokers: Brokers) -> Broker:
    """The broker of the target: ``memory://`` or a real one running for the session."""
    if target_name == "memory":
        return Broker("memory", f"memory://contract-{uuid.uuid4().hex[:8]}")
    return brokers.get(target_name)


@pytest.fixture
def contract(target: Broker) -> Contract:
    """The target of this test run."""
    return Contract(target, BEHAVIOURS[target.name])
