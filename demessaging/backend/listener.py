"""The listener: takes requests from a transport, runs them in a worker pool, replies, acks.

- At most ``workers`` requests run at once; the listener receives the next one only when a
  worker is free. The broker pushes at most ``prefetch`` more ahead (one per worker by
  default), so the rest wait in the broker where other backend instances can take them
  (back-pressure without a local queue to lose). A call whose reply waits for the broker's
  receipt lends its worker slot to the next request (:class:`.intake.Lender`). Where the
  subscription can be received from threads (Pulsar), the workers receive themselves and
  serve plain calls without the event loop (:mod:`.receivers`); the rest comes to the loop.
- Each message is parsed once (:func:`~demessaging.protocol.envelope.parse_request`); a request
  in pieces is gathered from its side topic first, without a worker slot, within a memory
  budget and one deadline for the whole upload (:mod:`.uploads`).
- A request is acknowledged only after its reply was published; if the backend dies before,
  the broker delivers the request again. A repeat of a request this listener has already
  answered (the last 10,000, by response topic, context, message type and a digest of the
  payload: :func:`.recent.repeat_key`) is acknowledged, not run again; another message naming
  the same response topic and context is not a repeat.
- A message that cannot be handled is answered with an error when it names a response topic,
  and otherwise logged and acknowledged: it never stops the listener. A response topic that is
  not a topic name, or a full name outside the backend's namespaces, names nobody
  (:mod:`demessaging.protocol.topics`): such a request is logged, acknowledged and not run.
- A reply that cannot be published is handled by :mod:`.deadletter`: dropped if it fails for
  good, else retried (without running the function again), then dead-lettered.
- :meth:`Listener.stop` stops taking requests, drops the uploads not running yet (their
  requests go back to the broker) and waits for the calls in flight.

Replies, progress messages and items are sent by :mod:`.replies`; cancellations and stream
credit are read by :mod:`.cancel`; :mod:`.thread` runs a listener in a thread or until a signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import threading
import time
import warnings
from collections.abc import Coroutine, Iterable
from typing import TYPE_CHECKING, Any

from ..errors import DemessagingError, ProtocolError, TransportError
from ..message import Message
from ..observe import tracing
from ..protocol.control import is_control
from ..protocol.envelope import Address, ErrorInfo, Query, Request, Stage, parse_request
from ..protocol.fragments import DEFAULT_MAX_PAYLOAD
from ..protocol.outgoing import error_reply
from ..protocol.pieces import Gathered
from ..protocol.topics import DEFAULT_NAMESPACE, ReplyTopics
from ..transport import bridge
from ..transport.base import Subscription, Transport
from .cancel import Cancellations
from .deadletter import DEFAULT_REPLY_RETRIES, DLQ_SUFFIX, Unsent, unsendable
from .dispatcher import Dispatcher, type_name
from .intake import CLOCK_SKEW, Lender, take
from .queries import Queries
from .receivers import Receivers
from .recent import Recent, repeat_key
from .replies import Replies
from .slots import Slots
from .uploads import DEFAULT_UPLOAD_TIMEOUT, DEFAULT_UPLOADS, Hold, Uploads
from .workers import Workers

if TYPE_CHECKING:
    from ..observe.metrics import Metrics

__all__ = ["CLOCK_SKEW", "DEFAULT_SUBSCRIPTION", "Listener"]

log = logging.getLogger("demessaging.backend")
DEFAULT_SUBSCRIPTION = "demessaging-backend"


class Listener:
    """Serves a dispatcher on a topic.

    Parameters
    ----------
    dispatcher, transport, topic
        What handles requests, the broker connection, the request topic.
    subscription
        The shared subscription every instance of this backend joins.
    workers
        How many requests run at once.
    prefetch
        How many requests the broker pushes ahead to this instance, beyond those running;
        ``workers`` if None. More carry more short calls a second (fewer flow permits), but
        requests then wait in a busy instance where another could run them.
    max_payload
        The largest request taken, in bytes.
    upload_memory
        The bytes that requests in pieces, reassembled in memory, may claim together, from
        their head until they are answered; ``2 * max_payload`` if None. A head that does not
        fit waits for memory until its upload deadline.
    upload_timeout
        Seconds for the whole upload of a request in pieces, from when its head is taken:
        waiting for memory and for every piece.
    uploads
        How many requests in pieces are held at once; heads beyond are refused.
    fragment_timeout
        Deprecated name of ``upload_timeout``.
    reply_namespaces, reply_namespaces_only
        ``tenant/namespace`` names whose topics replies may go to, besides the transport's own
        and that of ``topic`` (when a full name); with ``reply_namespaces_only``, those alone.
    reply_retries
        Failed attempts to publish a reply before the request goes to the dead-letter topic.
    dead_letter_topic
        Where requests go whose reply could not be published; ``<topic>-DLQ`` if empty.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        transport: Transport,
        topic: str,
        *,
        subscription: str = DEFAULT_SUBSCRIPTION,
        workers: int = 4,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        upload_memory: int | None = None,
        upload_timeout: float = DEFAULT_UPLOAD_TIMEOUT,
        uploads: int = DEFAULT_UPLOADS,
        fragment_timeout: float | None = None,
        reply_namespaces: Iterable[str] = (),
        reply_namespaces_only: bool = False,
        reply_retries: int = DEFAULT_REPLY_RETRIES,
        dead_letter_topic: str = "",
        prefetch: int | None = None,
    ) -> None:
        if workers < 1 or (prefetch is not None and prefetch < 1):
            raise ValueError(f"workers and prefetch must be at least 1, got {workers}, {prefetch}")
        if reply_retries < 1:
            raise ValueError(f"reply_retries must be at least 1, got {reply_retries}")
        if fragment_timeout is not None:
            warnings.warn(
                "Listener(fragment_timeout=...) is deprecated: it is upload_timeout now, one "
                "deadline for the whole upload rather than one per piece",
                DeprecationWarning,
                stacklevel=2,
            )
            upload_timeout = fragment_timeout
        upload_memory = 2 * max_payload if upload_memory is None else upload_memory
        if max_payload < 1 or upload_memory < max_payload:
            raise ValueError(
                f"max_payload must be at least 1 and upload_memory at least max_payload, got "
                f"{max_payload} and {upload_memory}"
            )
        if not upload_timeout > 0 or uploads < 1:
            raise ValueError(
                f"upload_timeout must be positive and uploads at least 1, got {upload_timeout} "
                f"and {uploads}"
            )
        self.dispatcher = dispatcher
        self.transport = transport
        self.topic = topic
        self.subscription = subscription
        self.workers = workers
        self.prefetch = workers if prefetch is None else prefetch
        self.max_payload = max_payload
        self.upload_timeout = upload_timeout
        self.dead_letter_topic = dead_letter_topic or f"{topic}{DLQ_SUFFIX}"
        self.reply_topics = ReplyTopics.of(
            *_home(transport),
            topic,
            reply_namespaces,
            only_extra=reply_namespaces_only,
            dead_letter_topic=self.dead_letter_topic,
        )
        self._uploads = Uploads(
            transport,
            topic,
            max_payload=max_payload,
            memory=upload_memory,
            timeout=upload_timeout,
            uploads=uploads,
            namespaces=self.reply_topics.namespaces,
        )
        self.handled = 0
        self.replies = Replies(transport, topic)
        self.reply_retries = reply_retries
        self._unsent = Unsent()  # replies that failed, to send again when their request comes
        self._answered = Recent()  # keys of the requests answered, to spot their repeats
        self._cancellations = Cancellations()
        self._queries = Queries(dispatcher.models, topic, self._cancellations)
        #: made by :meth:`serve` (on its event loop), set by :meth:`stop`
        self._stopping: asyncio.Event | None = None
        self.ready = threading.Event()
        self.metrics: Metrics | None = None  # set by Metrics.watch: counts requests
        self._lender = Lender(workers)
        self._counting = threading.Lock()

    @property
    def uploading(self) -> int:
        """Requests in pieces held now: waiting for memory, gathering, or for a worker."""
        return self._uploads.held

    @property
    def draining(self) -> bool:
        """Whether :meth:`stop` was called: it takes no more requests, finishes those in flight."""
        return self._stopping is not None and self._stopping.is_set()

    async def serve(self) -> None:
        """Serve until :meth:`stop` is called; then finish the calls in flight and return."""
        self._stopping = asyncio.Event()
        self._uploads.stopped = False
        # the broker pushes one request per worker ahead (by default), so that the next is here
        # when a worker is free (a flow permit per message halved the throughput); the rest
        # wait in the broker, where other instances can take them
        subscription = await self.transport.subscribe(
            self.topic, self.subscription, shared=True, prefetch=self.prefetch
        )
        control = await self._cancellations.follow(self.transport, self.topic, self.subscription)
        log.info("serving %s on topic %r", self.dispatcher.models.spec.shown, self.topic)
        self.ready.set()
        in_flight: set[asyncio.Task[None]] = set()
        pool = Workers(self.workers)

        def start(work: Coroutine[Any, Any, None]) -> None:  # in a task that stopping waits for
            task = asyncio.ensure_future(work)
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)

        # each handling gives the worker slot back when done, or while it gathers pieces
        free = Slots(self.workers) if subscription.blocking else asyncio.Semaphore(self.workers)
        handle = functools.partial(self._handle, subscription, pool=pool, free=free)
        receivers = None
        if isinstance(free, Slots):  # the workers receive, and serve plain calls themselves
            receivers = Receivers(self, subscription, free, lambda m: start(handle(m)), start)
            receiver: asyncio.Future[None] = receivers.failed
        else:
            receiver = asyncio.ensure_future(take(subscription, free, handle, start))
        stop: asyncio.Future[Any] = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait([receiver, stop], return_when=asyncio.FIRST_COMPLETED)
            if receiver.done():
                receiver.result()  # receiving failed: raised
        finally:
            stop.cancel()
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await receiver
            if receivers is not None:  # their calls end, and their replies' receipts come
                receivers.stop()
                self._uploads.drop()
                await receivers.drain()
            dropped = self._uploads.drop()  # their requests come again, here or elsewhere
            if in_flight:
                if len(in_flight) > dropped:
                    log.info("waiting for %d call(s) in flight", len(in_flight) - dropped)
                await asyncio.gather(*in_flight, return_exceptions=True)
            if control is not None:
                control.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await control
            await subscription.close()
            pool.shutdown()
            self.ready.clear()
            log.info("stopped serving topic %r", self.topic)

    def stop(self) -> None:
        """Stop taking requests (call from the listener's event loop)."""
        if self._stopping is not None:
            self._stopping.set()

    def count(self) -> None:
        """One more request is done with (from any thread)."""
        with self._counting:
            self.handled += 1

    async def _handle(
        self,
        subscription: Subscription,
        message: Message,
        pool: Workers,
        free: asyncio.Semaphore | Slots,
    ) -> None:
        """Handle one message, holding a worker slot (``free``) but while it gathers pieces."""
        hold = Hold(free)
        try:
            await self._handle_holding(subscription, message, pool, hold)
        finally:
            self._lender.back(hold)
            self._uploads.finish(hold)

    async def _handle_holding(
        self, subscription: Subscription, message: Message, pool: Workers, hold: Hold
    ) -> None:
        started = asyncio.get_running_loop().time()
        # who hears of an error, even if the message is refused
        address = Address.of(message, self.reply_topics)
        key = repeat_key(address.key, message) if address is not None else None
        if is_control(message):  # read by the cancellations where they come on this topic
            await subscription.ack(message)
            return
        if self.metrics is not None:
            self.metrics.received(message)
        if key is not None and key in self._answered:
            log.debug("acknowledging a repeat of the answered request %s", message.message_id)
            await subscription.ack(message)
            return
        gathered: Gathered | None = None
        whole = message  # the request, its pieces put together: what a dead letter holds
        sent = acked = False  # by the worker that ran the call
        try:
            request = parse_request(message, self.reply_topics)
            if request.count > 1:  # gathered without a worker slot
                request, gathered = await self._uploads.gather(request, started, hold)
                whole = request.message
            # a reply that failed before is sent again; its function does not run again
            reply = self._unsent.reply(key)
            if reply is None:
                reply, sent, acked = await tracing.served(
                    self._reply(request, pool, subscription, message, hold),
                    self.topic,
                    message,
                    request,
                )
        except ProtocolError as exc:
            reply = self._error(address, "ProtocolError", str(exc), "request")
            if reply is None:
                log.warning("dropping message %s: %s", message.message_id, exc)
        except asyncio.CancelledError:  # stopping while gathering: let the request come again
            if hold.working:  # not ours: a call in flight is never cancelled
                raise
            log.info("stopped gathering request %s; it will be redelivered", message.message_id)
            with contextlib.suppress(TransportError):
                await subscription.nack(message)
            return
        except TransportError as exc:  # reading the pieces failed: let the request come again
            log.error(
                "could not read message %s (%s); it will be redelivered", message.message_id, exc
            )
            with contextlib.suppress(TransportError):
                await subscription.nack(message)
            return
        except BaseException as exc:  # a bug of ours: tell the caller rather than retry forever
            log.exception("failed to handle message %s", message.message_id)
            reply = self._error(
                address, type_name(type(exc)), f"internal error: {exc}", "execution"
            )
        await self._conclude(subscription, message, whole, key, reply, sent, acked, gathered)

    async def _conclude(
        self,
        subscription: Subscription,
        message: Message,
        whole: Message,
        key: str | None,
        reply: tuple[str, Message] | None,
        sent: bool = False,
        acked: bool = False,
        gathered: Gathered | None = None,
    ) -> None:
        """Send ``reply`` to ``message`` unless ``sent``, and acknowledge it unless ``acked``.

        A reply that cannot be sent is retried or dead-lettered (:func:`.deadletter.unsendable`).
        """
        if reply is not None and not sent:
            try:
                await self.replies.send(*reply)
            except DemessagingError as exc:
                done = await unsendable(
                    self._unsent,
                    self.replies.send,
                    message,
                    whole,
                    key,
                    reply,
                    exc,
                    topic=self.topic,
                    dead_letter_topic=self.dead_letter_topic,
                    retries=self.reply_retries,
                )
                if not done:
                    await subscription.nack(message)
                    if gathered is not None:
                        await gathered.keep()
                    return
        if not acked:
            await subscription.ack(message)
        self._unsent.forget(key)
        if key is not None:
            self._answered.add(key)
        if gathered is not None:
            await gathered.acknowledge()
        self.count()

    def _error(
        self, address: Address | None, kind: str, text: str, stage: Stage
    ) -> tuple[str, Message] | None:
        """An error reply to the message of ``address``, or None if it names nobody."""
        if self.metrics is not None:
            self.metrics.refused(kind)
        if address is None:
            return None
        info = ErrorInfo(type=kind, message=text, stage=stage)
        return error_reply(address, info, source_topic=self.topic)

    async def _reply(
        self,
        request: Request | Query,
        pool: Workers,
        subscription: Subscription,
        message: Message,
        hold: Hold,
    ) -> tuple[tuple[str, Message] | None, bool, bool]:
        """The reply, whether it is sent, and whether ``message`` is acknowledged."""
        if isinstance(request, Query):
            return self._queries.answer(request), False, False
        late = time.time() - request.deadline if request.deadline is not None else 0.0
        if late > CLOCK_SKEW:  # its caller has stopped waiting: do not start the work
            log.info("not running request %s: its deadline passed", request.message_id)
            text = f"the call's deadline passed {late:.1f} s before a worker was free"
            text += "; it was not run"
            return self._error(request, "DeadlineExceeded", text, "request"), False, False
        control = self._cancellations.start(request.key)
        if control is None:
            log.info("not running request %s: its caller cancelled it", request.message_id)
            text = "the caller cancelled the call before it started"
            return self._error(request, "CallCancelled", text, "execution"), False, False
        items = None
        if request.window is not None:
            items = self.replies.items(request, control, request.window)
        call = tracing.within(
            functools.partial(
                self.dispatcher.handle if self.metrics is None else self.metrics.handle,
                request.payload,
                request.content_type,
                self.replies.progress(request),
                control.cancelled,
                items,
            )
        )
        reply_of = functools.partial(self.replies.reply_of, request, self._queries.fingerprints)
        try:  # the worker sends the reply, and acknowledges once the broker has it
            ack = functools.partial(subscription.ack_soon, message)
            handed: asyncio.Future[None] = bridge.prepare()
            handed.add_done_callback(lambda _: self._lender.lend(hold))
            return await self.replies.run(pool, call, reply_of, ack, handed)
        finally:
            self._cancellations.done(request.key)


def _home(transport: Transport) -> tuple[str, str]:
    """The tenant and namespace where ``transport`` puts short topic names."""
    tenant, _, namespace = DEFAULT_NAMESPACE.partition("/")
    options = getattr(transport, "options", None)
    return (options.tenant, options.namespace) if options else (tenant, namespace)
