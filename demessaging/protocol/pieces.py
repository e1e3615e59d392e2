"""Requests in pieces: how a client uploads them, and how a backend gathers them.

:mod:`demessaging.protocol.fragments` describes the exchange. A request larger than the broker
takes in one message goes as a head on the request topic and pieces on a side topic of its own,
whose subscription exists before anything is sent, so that no piece is lost whichever backend
takes the head. The head and the pieces go at the same time.

Some requests go whole, however large: where clients may make no topics
(:attr:`~demessaging.transport.base.Transport.request_pieces`: dasf-broker-django), and to
backends that read no pieces (DASF's, whose clients send requests whole). One larger than the
broker takes in one message is then refused before it is sent, with an error that names the
limit and how to raise it. A side topic is made ahead of need
(creating a topic costs tens of milliseconds on Apache Pulsar), and an upload that fails is
cleaned up in the background: an ``aborted`` marker tells the backend reading the side topic to
stop waiting, or, if no backend will come for the pieces, their subscription is deleted.

The backend that takes the head reads the pieces from the side topic (:func:`gather`) and
acknowledges them only after it replied (:meth:`Gathered.acknowledge`), so that a backend
that dies before leaves them for the next attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
from asyncio import FIRST_EXCEPTION
from collections.abc import Awaitable, Callable, Collection
from typing import NoReturn, TypeVar

from ..errors import PayloadTooLargeError, ProtocolError, TransportError
from ..transport.base import Subscription, Transport
from .envelope import Incoming, Message, Prop
from .fragments import (
    FRAGMENT_SUBSCRIPTION,
    HEAD_SIZE,
    PIECE_PREFETCH,
    Outgoing,
    Reassembly,
    abort_marker,
    check_count,
    is_abort_marker,
    send_pieces,
    side_topic,
    split,
    whole,
)
from .topics import full_name, short_name, split_name

__all__ = ["Gathered", "Uploads", "check_head", "drop_pieces", "gather", "side_topic_refusal"]

_Head = TypeVar("_Head", bound=Incoming)

log = logging.getLogger("demessaging.client")


class Uploads:
    """Publishes the requests of one client to one topic, in pieces where needed.

    Parameters
    ----------
    transport
        The client's broker connection.
    topic
        The backend's request topic.
    later
        Runs clean-up work in the background (the client waits for it when it closes).
    namespace
        The client's reply namespace (``TENANT/NAMESPACE``): side topics are made there, as
        ``persistent://NAMESPACE/<short topic>_fragments_<random>``; if empty, next to
        ``topic``.
    frame_setting
        Where the client's ``frame_size`` is set, for errors (``DEMESSAGING_FRAME_SIZE``).
    """

    def __init__(
        self,
        transport: Transport,
        topic: str,
        later: Callable[[Awaitable[None]], None],
        *,
        namespace: str = "",
        frame_setting: str = "DEMESSAGING_FRAME_SIZE",
    ) -> None:
        self._transport = transport
        self._frame_setting = frame_setting
        self._topic = topic
        self._side_base = full_name(namespace, short_name(topic)) if namespace else topic
        self._later = later
        #: A side topic for the next request in pieces, subscribed ahead of need.
        self._spare: asyncio.Future[tuple[str, Subscription]] | None = None

    async def publish(
        self,
        message: Message | Outgoing,
        reads_pieces: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        """Publish a request, in pieces if the broker needs it and the backend reads them.

        An :class:`~.fragments.Outgoing` request goes in pieces cut from its buffers, never
        joined whole (a request that goes in one message is joined).

        ``reads_pieces`` tells whether the backend reads requests in pieces; it is awaited
        only for a request too large for one message (None: it does).

        Raises
        ------
        PayloadTooLargeError
            If the request must go whole and is larger than one message takes.
        """
        transport = self._transport
        limit = transport.max_message_size
        size = len(message.payload)
        if limit is None or size <= limit:
            await transport.publish(self._topic, whole(message))
            return
        if not transport.request_pieces:
            self._refuse(size, "this broker takes no requests in pieces (dasf-broker-django)")
        if reads_pieces is not None and not await reads_pieces():
            self._refuse(size, "the backend reads requests whole only (a DASF backend)")
        side = await self._take_side_topic()
        pieces = split(
            message,
            limit,
            extra={Prop.FRAGMENTS_TOPIC: side},
            piece_size=transport.piece_size,
            head_size=HEAD_SIZE,
        )
        head = asyncio.ensure_future(transport.publish(self._topic, pieces[0]))
        upload = asyncio.ensure_future(
            send_pieces(functools.partial(transport.publish, side), pieces, 1)
        )
        try:  # both at once; a refused head makes the rest of the upload pointless
            done, _ = await asyncio.wait({head, upload}, return_when=FIRST_EXCEPTION)
            for task in done:
                error = task.exception()
                if error is not None:
                    raise error
            await upload
        except BaseException:  # cleaned up in the background: the caller is not kept
            upload.cancel()
            self._later(self._abandon(side, head))
            raise
        self._later(transport.release(side))

    def _refuse(self, size: int, why: str) -> NoReturn:
        hint = self._transport.whole_message_hint(size, self._frame_setting)
        raise PayloadTooLargeError(
            f"the request has {size} bytes and must go in one message: {why}; {hint} "
            "(see docs/dasf.md)"
        )

    async def close(self) -> None:
        """Delete the subscription of the side topic made ahead of need, if it is unused."""
        spare, self._spare = self._spare, None
        if spare is not None:
            with contextlib.suppress(Exception):
                _, holder = await spare
                await holder.unsubscribe()

    async def _take_side_topic(self) -> str:
        """A side topic whose subscription exists; the next one is made in the background."""
        spare, self._spare = self._spare, None
        try:
            name, holder = await spare if spare is not None else await self._new_side_topic()
        except TransportError:  # the spare failed: try once more now
            name, holder = await self._new_side_topic()
        self._spare = asyncio.ensure_future(self._new_side_topic())
        await holder.close()  # the subscription stays, and keeps the pieces for the backend
        return name

    async def _new_side_topic(self) -> tuple[str, Subscription]:
        name = side_topic(self._side_base, secrets.token_hex(16))
        holder = await self._transport.subscribe(name, FRAGMENT_SUBSCRIPTION, shared=True)
        try:
            await self._transport.prepare(name)
        except TransportError as exc:  # publishing will try again
            log.debug("could not prepare to publish to %s: %s", name, exc)
        return name, holder

    async def _abandon(self, side: str, head: asyncio.Future[None]) -> None:
        """After a failed upload: stop the backend reading ``side``, or delete the pieces."""
        (sent,) = await asyncio.gather(head, return_exceptions=True)  # how the head fared
        try:
            if isinstance(sent, Exception):  # refused: no backend will come for the pieces
                await self._delete_side_topic(side)
                return
            try:  # sent (or maybe): the backend that takes it deletes the side subscription
                await self._transport.publish(side, abort_marker())
            except TransportError as exc:
                log.warning("could not tell the backend to stop waiting on %s: %s", side, exc)
        finally:
            await self._transport.release(side)

    async def _delete_side_topic(self, name: str) -> None:
        await drop_pieces(self._transport, name)


class Gathered:
    """The pieces of a gathered request, held on their side subscription until it is answered.

    Parameters
    ----------
    side
        The subscription of the side topic.
    pieces
        The pieces read from it (all but the head), to acknowledge.
    """

    def __init__(self, side: Subscription, pieces: list[Message]) -> None:
        self.side = side
        self.pieces = pieces

    async def acknowledge(self) -> None:
        """The request was answered: acknowledge the pieces and delete the side subscription."""
        for piece in self.pieces:
            await self.side.ack(piece)
        await self.side.unsubscribe()

    async def keep(self) -> None:
        """The request will come again: leave the pieces for the next attempt."""
        await self.side.close()


def _follows(name: str, prefix: str) -> bool:
    return name.startswith(prefix) and len(name) > len(prefix)


def side_topic_refusal(
    name: str, topic: str, namespaces: Collection[str] = (), *, caller: str | None = None
) -> str | None:
    """Why ``name`` is not a side topic for requests to ``topic``, or None if it is one.

    Next to ``topic`` (``<topic>_fragments_<name>``), or a full name in one of ``namespaces``
    (clients' reply namespaces) whose last part is ``<short topic>_fragments_<name>``. Given
    ``caller`` (the head's ``response_topic``), a side topic in a reply namespace must be in
    the caller's: a partner does not have another's upload gathered, nor its pieces deleted.
    """
    if _follows(name, side_topic(topic, "")):
        return None
    parts = split_name(name)
    if (
        parts is None
        or parts[0] not in namespaces
        or not _follows(parts[1], side_topic(short_name(topic), ""))
    ):
        return f"a request in pieces must name a fragments_topic of {topic!r}, not {name!r}"
    if caller is not None and (split_name(caller) or ("", ""))[0] != parts[0]:
        return (
            f"the fragments_topic {name!r} must be in the namespace of its response_topic "
            f"{caller!r}"
        )
    return None


async def drop_pieces(transport: Transport, name: str) -> None:
    """Delete the subscription holding the pieces on the side topic ``name`` (and them)."""
    try:
        holder = await transport.subscribe(name, FRAGMENT_SUBSCRIPTION, shared=True)
        await holder.unsubscribe()
    except TransportError as exc:
        log.warning("could not delete the side topic subscription of %s: %s", name, exc)


def check_head(
    head: Incoming, *, topic: str, max_payload: int, namespaces: Collection[str] = ()
) -> int:
    """The size of the request of ``head`` (piece 0), if it may be gathered.

    Raises
    ------
    ProtocolError
        If the head names no side topic of ``topic`` (see :func:`side_topic_refusal`; one in a
        reply namespace must be in that of the head's ``response_topic``), gives
        no ``payload_size``, claims more than ``max_payload`` bytes, or more pieces than its
        bytes allow.
    """
    refusal = side_topic_refusal(
        head.fragments_topic or "", topic, namespaces, caller=head.response_topic
    )
    if refusal is not None:
        raise ProtocolError(refusal)
    if head.payload_size is None:
        raise ProtocolError("a request in pieces must give its payload_size")
    if head.payload_size > max_payload:
        raise ProtocolError(
            f"the request has {head.payload_size} bytes, more than this backend takes "
            f"({max_payload} bytes)"
        )
    check_count(head.count, head.payload_size)
    return head.payload_size


async def gather(
    transport: Transport,
    head: _Head,
    *,
    topic: str,
    max_payload: int,
    timeout: float,
    started: float | None = None,
    namespaces: Collection[str] = (),
) -> tuple[_Head, Gathered]:
    """Read the pieces of the request of ``head`` from its side topic.

    Memory grows with the pieces that come (:class:`~.fragments.Reassembly`), not with the
    size the head claims.

    Parameters
    ----------
    transport
        The backend's broker connection.
    head
        Piece 0 of the request, parsed.
    topic
        The backend's request topic: the side topic must be one of its own.
    max_payload
        The largest request taken, in bytes.
    timeout
        Seconds for the whole upload, from ``started``: one deadline for all pieces.
    started
        When the head was taken, in the event loop's time; now if None.
    namespaces
        The namespaces where side topics may be besides ``topic``'s (see
        :func:`side_topic_refusal`).

    Returns
    -------
    tuple
        The whole request, and its pieces to acknowledge once it is answered.

    Raises
    ------
    ProtocolError
        If the head is malformed, the request too large, a piece malformed, the deadline
        passed, or the caller gave up sending (the side subscription is then deleted).
    """
    size = check_head(head, topic=topic, max_payload=max_payload, namespaces=namespaces)
    loop = asyncio.get_running_loop()
    deadline = (loop.time() if started is None else started) + timeout
    whole = Reassembly(size, head.count)
    whole.add(head.message)
    side = await transport.subscribe(  # its pieces are acknowledged after the reply
        head.fragments_topic or "",
        FRAGMENT_SUBSCRIPTION,
        shared=True,
        prefetch=PIECE_PREFETCH,
    )
    pieces: list[Message] = []
    try:
        while not whole.complete:
            left = deadline - loop.time()
            if left <= 0:
                raise asyncio.TimeoutError
            piece = await asyncio.wait_for(side.receive(), left)
            if is_abort_marker(piece):
                raise ProtocolError("the caller gave up sending the request")
            whole.add(piece)
            pieces.append(Message(b"", message_id=piece.message_id))  # to acknowledge it
    except (asyncio.TimeoutError, ProtocolError) as exc:
        await side.unsubscribe()
        if isinstance(exc, ProtocolError):
            raise
        raise ProtocolError(
            f"only {len(pieces) + 1} of {whole.count} pieces of the request arrived "
            f"within {timeout:g} s"
        ) from None
    except BaseException:  # the broker failed, or the backend stops: keep the pieces
        with contextlib.suppress(Exception):
            await side.close()
        raise
    return head.whole(whole.message()), Gathered(side, pieces)
