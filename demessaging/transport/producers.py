"""A pool of producers, one per topic, for transports whose producers are made per topic.

- A topic's producer is made once, when first needed; producers of different topics are made
  at the same time, not one after the other.
- A producer is closed only when nobody uses it: beyond ``limit`` producers, the least recently
  used idle ones are closed; a producer whose send failed is closed once its last user is done,
  and the next send to its topic makes a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ..errors import TransportError

__all__ = ["ProducerPool"]

log = logging.getLogger("demessaging.transport")
P = TypeVar("P")


@dataclass(eq=False)
class _Entry(Generic[P]):
    topic: str
    made: asyncio.Future[P]
    users: int = 0
    retired: bool = field(default=False)


class ProducerPool(Generic[P]):
    """Producers by topic.

    Parameters
    ----------
    make
        Makes the producer of a topic; raises :class:`~demessaging.errors.TransportError`.
    close
        Closes a producer.
    limit
        How many producers are kept; idle ones beyond are closed, least recently used first.
    """

    def __init__(
        self,
        make: Callable[[str], Awaitable[P]],
        close: Callable[[P], Awaitable[None]],
        limit: int,
    ) -> None:
        self._make = make
        self._close = close
        self.limit = limit
        self._entries: OrderedDict[str, _Entry[P]] = OrderedDict()
        self._closing: set[asyncio.Future[None]] = set()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, topic: object) -> bool:
        return topic in self._entries

    def __iter__(self) -> Iterator[str]:
        """The topics that have a producer, least recently used first."""
        return iter(list(self._entries))

    @contextlib.asynccontextmanager
    async def use(self, topic: str) -> AsyncIterator[P]:
        """The producer of ``topic``, kept open while the block runs.

        A :class:`~demessaging.errors.TransportError` raised in the block retires the
        producer: the next use of the topic makes a new one.
        """
        entry = self._entries.get(topic)
        if entry is None or _failed(entry.made):
            entry = _Entry(topic, asyncio.ensure_future(self._make(topic)))
            self._entries[topic] = entry
        else:
            self._entries.move_to_end(topic)
        entry.users += 1
        try:
            yield await asyncio.shield(entry.made)
        except TransportError:
            self._retire(entry)
            raise
        finally:
            entry.users -= 1
            if entry.retired and not entry.users:
                self._close_later(entry)
            self._trim()

    def ready(self, topic: str) -> P | None:
        """The producer of ``topic`` if it is made and not retired, else None; any thread.

        It is not marked as used: the pool may close it meanwhile (a send then fails).
        """
        entry = self._entries.get(topic)
        if entry is None or entry.retired or not entry.made.done() or _failed(entry.made):
            return None
        return entry.made.result()

    def failed(self, topic: str, producer: P) -> None:
        """A send through ``producer``, taken with :meth:`ready`, failed; from any thread.

        The producer is retired, as a failed send in :meth:`use` retires it: the next use of
        the topic makes a new one.
        """
        entry = self._entries.get(topic)
        made = None if entry is None else entry.made
        if entry is None or made is None or not made.done() or _failed(made):
            return
        if made.result() is producer:
            with contextlib.suppress(RuntimeError):  # the loop is closed: so is the pool
                made.get_loop().call_soon_threadsafe(self._retire_idle, entry)

    def _retire_idle(self, entry: _Entry[P]) -> None:
        if not entry.retired:
            self._retire(entry)
            if not entry.users:
                self._close_later(entry)

    async def prepare(self, topic: str) -> None:
        """Make the producer of ``topic`` ahead of need."""
        async with self.use(topic):
            pass

    async def release(self, topic: str) -> None:
        """Close the producer of ``topic`` now, unless it is in use."""
        entry = self._entries.get(topic)
        if entry is not None and not entry.users:
            self._retire(entry)
            await self._close_entry(entry)

    async def close(self) -> None:
        """Close every producer, and wait for those being closed."""
        entries = list(self._entries.values())
        for entry in entries:
            self._retire(entry)
        for entry in entries:
            await self._close_entry(entry)
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def _retire(self, entry: _Entry[P]) -> None:
        entry.retired = True
        if self._entries.get(entry.topic) is entry:
            del self._entries[entry.topic]

    def _trim(self) -> None:
        """Retire and close the least recently used idle producers beyond the limit."""
        excess = len(self._entries) - self.limit
        if excess <= 0:
            return
        idle = [e for e in self._entries.values() if not e.users and e.made.done()]
        for entry in idle[:excess]:
            self._retire(entry)
            self._close_later(entry)

    def _close_later(self, entry: _Entry[P]) -> None:
        task = asyncio.ensure_future(self._close_entry(entry))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close_entry(self, entry: _Entry[P]) -> None:
        try:
            producer = await asyncio.shield(entry.made)
        except Exception:  # never made: nothing to close (the error went to its users)
            return
        try:
            await self._close(producer)
        except Exception as exc:  # already closed, or the broker is gone
            log.debug("closing the producer of %s: %s", entry.topic, exc)


def _failed(future: asyncio.Future[P]) -> bool:
    return future.done() and (future.cancelled() or future.exception() is not None)
