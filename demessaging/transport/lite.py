"""Consumer ids on pulsar-lite 0.2, which refuses a consumer whose id another one has.

pulsar-lite refuses a consumer of a shared subscription whose id another connection's
consumer of that subscription already has ("Consumer 0 already exists"): it drops the
connection, and pulsar-client tries again with the same id until its operation timeout,
while every pulsar-client connection numbers its consumers from 0. The consumer of a backend
SIGKILLed while requests stream in may stay in the broker a minute and more.

So a Pulsar transport on pulsar-lite skips a random number of consumer ids (:func:`skip_ids`,
below :data:`SPREAD`) before its first shared subscription; pulsar-client's operation
timeout there is :data:`OPERATION_TIMEOUT`; and a consumer not created by then is tried
again, after skipping more ids, until the transport's own operation timeout
(:func:`patiently`). Nothing is kept on the machine: starting takes as long for the eighth
transport as for the first.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pulsar
import pulsar.asyncio as pulsar_asyncio

__all__ = ["OPERATION_TIMEOUT", "SPREAD", "patiently", "skip_ids", "timed_out"]

log = logging.getLogger("demessaging.transport.pulsar")
T = TypeVar("T")

#: Consumer ids skipped at random (below this) before the first shared subscription and
#: after a refusal: 20 ms; two transports' next ids are equal once in 128.
SPREAD = 128
#: Scratch consumers made at once while skipping consumer ids.
_BATCH = 64
#: Seconds pulsar-client waits for pulsar-lite (which answers in milliseconds) to create a
#: consumer or producer: a refused consumer is retried with the same id until then.
OPERATION_TIMEOUT = 3


def skipped() -> int:
    """How many consumer ids to skip: at random, below :data:`SPREAD`."""
    return secrets.randbelow(SPREAD)


async def skip_ids(client: pulsar_asyncio.Client, tenant: str, namespace: str) -> None:
    """Create and close a random number of consumers of a scratch topic on ``client``."""
    scratch = f"non-persistent://{tenant}/{namespace}/demessaging-consumer-ids"
    name = f"ids-{uuid.uuid4().hex}"  # its own: skipping ids must not clash either

    async def burn() -> None:
        consumer = await client.subscribe(scratch, name, consumer_type=pulsar.ConsumerType.Shared)
        await consumer.close()

    wanted = skipped()
    for start in range(0, wanted, _BATCH):
        await asyncio.gather(*(burn() for _ in range(min(_BATCH, wanted - start))))


def timed_out(exc: BaseException) -> bool:
    """Whether a pulsar-client error is its operation timeout."""
    if isinstance(exc, pulsar_asyncio.PulsarException):
        return bool(exc.error() == pulsar.Result.Timeout)
    return isinstance(exc, pulsar.Timeout)


async def patiently(
    attempt: Callable[[], Awaitable[T]],
    what: str,
    timeout: float,
    again: Callable[[], Awaitable[Any]] | None = None,
) -> T:
    """``attempt()``, and again (after ``again()``) while it times out, for ``timeout`` s.

    Raises the library's error of the last attempt.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return await attempt()
        except (pulsar.PulsarException, pulsar_asyncio.PulsarException) as exc:
            if not timed_out(exc) or loop.time() >= deadline:
                raise
            log.info("%s: no answer in %d s, trying again", what, OPERATION_TIMEOUT)
            if again is not None:
                await again()
