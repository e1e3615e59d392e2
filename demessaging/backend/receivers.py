"""Worker threads that receive requests themselves and serve plain calls from start to end.

Where a subscription can be received from threads (Apache Pulsar and pulsar-lite, see
:attr:`~demessaging.transport.base.Subscription.blocking`), a listener's workers do not wait
for its event loop to hand them requests. Each worker receives the next message with the
transport's blocking receive, takes a worker slot (:class:`~.slots.Slots`: a worker idle in
its receive holds none, so a request gathered in pieces on the loop finds one at once), and
if it is a *plain call*
(a whole request, not a query, a stream, a repeat or a control message, before its deadline)
runs it, sends the reply and goes on; the request is acknowledged from the broker's receipt.
A plain call so never passes through the event loop: under load, the loop's turns and the
hand-overs between threads were most of what a call cost a backend.

Everything else goes to the event loop with the worker's slot, to be handled as any request
there (requests in pieces, queries, streams, repeats, envelopes in error, calls cancelled
before they started). So does a reply that cannot be sent from the thread (too large for one
message, no producer for its topic yet, the broker refused it): the loop sends it, retries it
or dead-letters it, and acknowledges the request. Like a worker slot lent on the loop
(:class:`.intake.Lender`), a worker does not wait for the broker's receipt of its reply; at
most :data:`.intake.LENT_PER_WORKER` receipts a worker are awaited at once.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import ProtocolError
from ..message import Message
from ..observe import tracing
from ..protocol.control import is_control
from ..protocol.envelope import Address, Request, Stage, parse_request
from ..protocol.topics import ReplyTopics
from ..transport.base import Subscription, Transport
from .cancel import Cancellations
from .deadletter import Unsent
from .dispatcher import Dispatcher, type_name
from .intake import CLOCK_SKEW, LENT_PER_WORKER
from .queries import Queries
from .recent import Recent, repeat_key
from .replies import Replies
from .slots import Slots

if TYPE_CHECKING:
    from ..observe.metrics import Metrics

__all__ = ["POLL", "Receivers", "Served"]

log = logging.getLogger("demessaging.backend")
#: Seconds a worker waits for a message before it looks whether to stop.
POLL = 0.2
#: Seconds stopping waits at most for the receipts of replies sent (a producer's send timeout
#: is 30 s by default).
RECEIPTS_TIMEOUT = 35.0

Reply = tuple[str, Message] | None


class Served(Protocol):
    """What the workers serve: the parts of a :class:`~.listener.Listener` they use."""

    topic: str
    workers: int
    transport: Transport
    reply_topics: ReplyTopics
    dispatcher: Dispatcher
    metrics: Metrics | None
    replies: Replies
    _answered: Recent
    _unsent: Unsent
    _cancellations: Cancellations
    _queries: Queries

    def count(self) -> None:
        """One more request is done with (from any thread)."""

    def _error(
        self, address: Address | None, kind: str, text: str, stage: Stage
    ) -> tuple[str, Message] | None: ...

    async def _conclude(
        self,
        subscription: Subscription,
        message: Message,
        whole: Message,
        key: str | None,
        reply: tuple[str, Message] | None,
        sent: bool = False,
    ) -> None: ...


class Receivers:
    """The worker threads of ``listener`` receiving from ``subscription`` (see the module).

    Parameters
    ----------
    listener
        What the workers serve: its dispatcher, replies, memories of calls, metrics.
    subscription
        Where requests come from; :attr:`~.Subscription.blocking` must be true.
    slots
        The listener's worker slots.
    hand_over
        Called on the event loop with a message: it handles the message there, in the slot
        its worker took (and gives the slot back).
    start
        Called on the event loop with a coroutine: runs it in a task that stopping waits for.

    Attributes
    ----------
    failed
        Done with the error when receiving failed (the listener stops then); else never.
    """

    def __init__(
        self,
        listener: Served,
        subscription: Subscription,
        slots: Slots,
        hand_over: Callable[[Message], None],
        start: Callable[[Coroutine[Any, Any, None]], None],
    ) -> None:
        self._listener = listener
        self._subscription = subscription
        self._slots = slots
        self._hand_over = hand_over
        self._start = start
        self._loop = asyncio.get_running_loop()
        self._stopping = threading.Event()
        self._receipts = threading.Condition()
        self._awaited = 0  # replies sent whose receipt has not come yet
        self._limit = LENT_PER_WORKER * listener.workers
        self._alive = listener.workers
        self.failed: asyncio.Future[None] = self._loop.create_future()
        self._gone: asyncio.Future[None] = self._loop.create_future()
        self._threads = [
            threading.Thread(target=self._work, name=f"demessaging-worker_{n}", daemon=True)
            for n in range(listener.workers)
        ]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Stop receiving: each worker ends once it is done with the message it has."""
        self._stopping.set()

    async def drain(self) -> None:
        """Wait until the workers have ended and the receipts of their replies have come."""
        self.stop()
        await self._gone
        with self._receipts:
            if not self._awaited:
                return
        await asyncio.to_thread(self._wait_for_receipts)

    def _wait_for_receipts(self) -> None:
        with self._receipts:
            if not self._receipts.wait_for(lambda: not self._awaited, RECEIPTS_TIMEOUT):
                log.warning("%d reply receipt(s) did not come while stopping", self._awaited)

    # -- on a worker thread ------------------------------------------------------------------

    def _work(self) -> None:
        error: BaseException | None = None
        try:
            while not self._stopping.is_set():
                message = self._subscription.receive_within(POLL)
                if message is None:
                    continue
                self._slots.take(None)  # a slot comes as soon as a call ends: wait for it
                try:
                    self._serve(message)
                except Exception:  # a bug of ours, before the slot went anywhere
                    log.exception("a worker failed on message %s", message.message_id)
                    self._post(functools.partial(self._hand_over, message))
        except BaseException as exc:  # receiving failed: the listener stops, with this error
            error = exc
            self._stopping.set()
        finally:
            self._post(functools.partial(self._ended, error))

    def _serve(self, message: Message) -> None:
        """Serve ``message`` holding a slot; the slot is given back, or handed over with it.

        Giving the slot away is the last thing done on each path: if this raises, the slot
        and the message are still the worker's.
        """
        plain = self._plain(message)
        listener = self._listener
        cancellations = listener._cancellations
        control = None if plain is None else cancellations.start(plain[0].key)
        if plain is None or control is None:
            if plain is not None:  # its caller cancelled it already: the loop refuses it
                cancellations.cancel(plain[0].key)
            self._post(functools.partial(self._hand_over, message))
            return
        request, key = plain
        if listener.metrics is not None:
            listener.metrics.received(message)
        reply: Reply
        try:
            with tracing.Served(listener.topic, message, request) as served:
                reply = self._run(request, control.cancelled)
                served.answered(reply)
        except BaseException as exc:  # a bug of ours: tell the caller rather than retry forever
            log.exception("failed to handle message %s", message.message_id)
            kind, text = type_name(type(exc)), f"internal error: {exc}"
            reply = listener._error(request, kind, text, "execution")
        finally:
            cancellations.done(request.key)
        if reply is None:  # (a request names who hears of it)
            self._conclude(message, key, None, sent=False, then=self._slots.release)
        else:
            self._send(message, key, reply)

    def _plain(self, message: Message) -> tuple[Request, str] | None:
        """The request of ``message`` and its repeat key, if it is a plain call; else None."""
        listener = self._listener
        if is_control(message):
            return None
        try:
            request = parse_request(message, listener.reply_topics)
        except ProtocolError:
            return None
        if not isinstance(request, Request) or request.count > 1 or request.window is not None:
            return None
        key = repeat_key(request.key, message)
        if key in listener._answered or key in listener._unsent:
            return None
        if request.deadline is not None and time.time() - request.deadline > CLOCK_SKEW:
            return None
        return request, key

    def _run(self, request: Request, cancelled: threading.Event) -> tuple[str, Message]:
        """The reply to a plain call, run here."""
        listener = self._listener
        metrics = listener.metrics
        handle = listener.dispatcher.handle if metrics is None else metrics.handle
        progress = listener.replies.progress(request, self._loop)
        call = functools.partial(
            handle, request.payload, request.content_type, progress, cancelled, None
        )
        outcome = tracing.within(call)()
        return listener.replies.reply_of(request, listener._queries.fingerprints, outcome)

    def _send(self, message: Message, key: str, reply: tuple[str, Message]) -> None:
        """Send ``reply`` to ``message`` from here if the transport can; else from the loop."""
        with self._receipts:
            self._awaited += 1
        ack = functools.partial(self._subscription.ack_soon, message)
        receipt = functools.partial(self._receipt, message, key, reply)
        if self._listener.replies.send_soon(reply, ack, receipt):
            # beyond the receipts a worker may await, it waits with its slot
            with self._receipts:
                if not self._receipts.wait_for(
                    lambda: self._awaited <= self._limit, RECEIPTS_TIMEOUT
                ):
                    log.warning("%d reply receipts are overdue", self._awaited)
            self._slots.release()
            return
        self._received()
        self._conclude(message, key, reply, sent=False, then=self._slots.release)

    # -- on the transport's thread -----------------------------------------------------------

    def _receipt(
        self, message: Message, key: str, reply: tuple[str, Message], sent: bool, acked: bool
    ) -> None:
        """The broker has the reply to ``message`` (unless not ``sent``), acknowledged or not."""
        if acked:
            self._listener._answered.add(key)
            self._listener.count()
            self._received()
        else:
            self._conclude(message, key, reply, sent=sent, then=self._received)

    def _received(self) -> None:
        with self._receipts:
            self._awaited -= 1
            self._receipts.notify_all()

    # -- to the loop -------------------------------------------------------------------------

    def _conclude(
        self,
        message: Message,
        key: str,
        reply: Reply,
        *,
        sent: bool,
        then: Callable[[], None],
    ) -> None:
        """Have the loop send ``reply`` (unless ``sent``) and acknowledge; ``then`` after."""

        async def conclude() -> None:
            try:
                await self._listener._conclude(
                    self._subscription, message, message, key, reply, sent=sent
                )
            finally:
                then()

        self._post(lambda: self._start(conclude()))

    def _post(self, action: Callable[[], None]) -> None:
        """Run ``action`` on the event loop (from a thread)."""
        try:
            self._loop.call_soon_threadsafe(action)
        except RuntimeError:  # the loop is closed: the request goes back to the broker
            log.error("the listener's event loop is closed; a request is left to the broker")

    def _ended(self, error: BaseException | None) -> None:
        """On the loop: a worker thread has ended (because of ``error``, if not None)."""
        self._alive -= 1
        if error is not None and not self.failed.done():
            self.failed.set_exception(error)
        if not self._alive:
            self._gone.set_result(None)
