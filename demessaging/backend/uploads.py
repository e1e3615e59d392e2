"""Requests in pieces, as a backend takes them: without a worker, within a memory budget.

The listener takes a head (piece 0 of a request in pieces) as it takes any request, with a
worker slot; it gives the slot back at once and gathers the pieces with :class:`Uploads`:

- At most ``uploads`` heads are held at once (waiting for memory, or reading pieces); a head
  beyond is refused at once with a ``ProtocolError`` reply and acknowledged, so that a flood of
  heads whose pieces never come is gone instead of coming back forever.
- Every upload reserves the size its head claims (at most ``max_payload``) from one memory
  budget (``upload_memory``), first come first served; memory itself grows with the pieces that
  come. A head that does not fit waits for the budget, without a worker slot, and is refused
  when its deadline passes. The reservation is kept until the request is answered, as its
  payload is held until then.
- An upload has one deadline, ``upload_timeout`` seconds after its head was taken: waiting for
  the budget and for every piece count against it, so a trickle of pieces cannot hold it.
- :meth:`Uploads.drop` (the listener stops) ends every upload not yet running at once: its
  head goes back to the broker (nack), its side subscription keeps the pieces.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass

from ..errors import ProtocolError
from ..protocol.envelope import Query, Request
from ..protocol.pieces import Gathered, check_head, drop_pieces, gather, side_topic_refusal
from ..transport.base import Transport
from .slots import Slots

__all__ = ["DEFAULT_UPLOADS", "DEFAULT_UPLOAD_TIMEOUT", "Budget", "Hold", "Uploads"]

#: Seconds for a whole upload, from when its head is taken.
DEFAULT_UPLOAD_TIMEOUT = 60.0
#: How many requests in pieces a backend holds at once (waiting for memory, or gathering).
DEFAULT_UPLOADS = 16


@dataclass
class Hold:
    """What the handling of one message holds.

    A worker slot (given back while it gathers pieces, and once its call ran and the reply is
    on its way: ``lent``), and the bytes its upload reserved.
    """

    free: asyncio.Semaphore | Slots
    working: bool = True
    reserved: int = 0
    lent: bool = False


class Budget:
    """Bytes shared by uploads: each reserves its size, and waits in turn if it does not fit.

    Parameters
    ----------
    limit
        The bytes all reservations may take together.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def reserve(self, size: int, deadline: float) -> None:
        """Reserve ``size`` bytes, waiting until the event loop's time ``deadline`` at most.

        Raises
        ------
        ProtocolError
            If ``size`` exceeds the budget, or did not fit in it before the deadline.
        """
        if size > self.limit:
            raise ProtocolError(
                f"{size} bytes do not fit in the upload memory budget of {self.limit} bytes"
            )
        if not self._waiting and self.used + size <= self.limit:
            self.used += size
            return
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[None] = loop.create_future()
        entry = (size, turn)
        self._waiting.append(entry)
        waited = loop.time()
        try:
            await asyncio.wait_for(turn, max(0.0, deadline - loop.time()))
        except BaseException as exc:
            if turn.done() and not turn.cancelled():  # granted as it gave up: give it back
                self.release(size)
            else:
                with contextlib.suppress(ValueError):
                    self._waiting.remove(entry)
                self._wake()  # those behind it may fit now
            if isinstance(exc, asyncio.TimeoutError):
                raise ProtocolError(
                    f"the request's {size} bytes did not fit in the upload memory budget of "
                    f"{self.limit} bytes within {loop.time() - waited:.1f} s ({self.used} "
                    "bytes in use by other requests); try again later"
                ) from None
            raise

    def release(self, size: int) -> None:
        """Give back ``size`` reserved bytes."""
        self.used -= size
        self._wake()

    def _wake(self) -> None:
        while self._waiting:
            size, turn = self._waiting[0]
            if turn.done():
                self._waiting.popleft()
                continue
            if self.used + size > self.limit:
                return
            self._waiting.popleft()
            self.used += size
            turn.set_result(None)


class Uploads:
    """Gathers the requests in pieces of one listener (see the module's docstring).

    Parameters
    ----------
    transport
        The backend's broker connection.
    topic
        The request topic.
    max_payload
        The largest request taken, in bytes.
    memory
        The memory budget of all uploads, in bytes.
    timeout
        Seconds for a whole upload, from when its head is taken.
    uploads
        How many heads are held at once.
    namespaces
        Where side topics may be besides next to ``topic``: the reply namespaces.
    """

    def __init__(
        self,
        transport: Transport,
        topic: str,
        *,
        max_payload: int,
        memory: int,
        timeout: float,
        uploads: int,
        namespaces: Collection[str] = (),
    ) -> None:
        self.transport = transport
        self.namespaces = namespaces
        self.topic = topic
        self.max_payload = max_payload
        self.budget = Budget(memory)
        self.timeout = timeout
        self.uploads = uploads
        self._held: set[asyncio.Task[object]] = set()
        #: Set by :meth:`drop`: heads that come after go back to the broker at once.
        self.stopped = False

    @property
    def held(self) -> int:
        """Heads held now (waiting for memory, gathering, or waiting for a worker)."""
        return len(self._held)

    async def gather(
        self, head: Request | Query, started: float, hold: Hold
    ) -> tuple[Request | Query, Gathered]:
        """The whole request of ``head``, and its pieces to acknowledge once it is answered.

        Gives the worker slot of ``hold`` back while it gathers, and waits for one again after;
        the bytes reserved are in ``hold`` until :meth:`finish`.

        Raises
        ------
        ProtocolError
            If the head or a piece is refused, too many heads are held, the budget or the
            pieces did not come before the deadline (the side subscription is deleted then).
        """
        task = asyncio.current_task()
        assert task is not None
        if self.stopped:  # a head taken as the listener stops: it goes back to the broker
            hold.free.release()
            hold.working = False
            raise asyncio.CancelledError
        try:  # refused with the worker slot: refusing a flood of heads takes a bounded effort
            if len(self._held) >= self.uploads:
                raise ProtocolError(
                    f"{self.uploads} requests in pieces are being received already; try again later"
                )
            size = check_head(
                head, topic=self.topic, max_payload=self.max_payload, namespaces=self.namespaces
            )
        except ProtocolError:
            await self._refuse(head)
            raise
        self._held.add(task)
        hold.free.release()
        hold.working = False
        try:
            await self.budget.reserve(size, started + self.timeout)
        except ProtocolError:
            await self._refuse(head)
            raise
        hold.reserved = size
        whole, gathered = await gather(
            self.transport,
            head,
            topic=self.topic,
            max_payload=self.max_payload,
            timeout=self.timeout,
            started=started,
            namespaces=self.namespaces,
        )
        try:
            await hold.free.acquire()
        except BaseException:
            await gathered.keep()
            raise
        hold.working = True
        self._held.discard(task)  # it runs now: stopping waits for it
        return whole, gathered

    def finish(self, hold: Hold) -> None:
        """The handling of a message is over: give back what it holds."""
        self._held.discard(asyncio.current_task())
        if hold.working and not hold.lent:
            hold.free.release()
        self.budget.release(hold.reserved)
        hold.working, hold.reserved = False, 0

    def drop(self) -> int:
        """Cancel every upload not running yet (the listener stops); returns how many.

        Heads that come after are not gathered (until ``stopped`` is cleared).
        """
        self.stopped = True
        for task in self._held:
            task.cancel()
        return len(self._held)

    async def _refuse(self, head: Request | Query) -> None:
        """Delete the pieces of a refused head, if its side topic is one of ours."""
        side = head.fragments_topic or ""
        refusal = side_topic_refusal(side, self.topic, self.namespaces, caller=head.response_topic)
        if refusal is None:
            await drop_pieces(self.transport, side)
