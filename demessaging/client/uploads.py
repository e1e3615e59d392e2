"""Requests in pieces, as a client sends them (see :mod:`demessaging.protocol.fragments`).

A request larger than the broker takes in one message goes as a head on the request topic
and pieces on a side topic of its own, whose subscription exists before anything is sent, so
that no piece is lost whichever backend takes the head. The head and the pieces go at the
same time. A side topic is made ahead of need (creating a topic costs tens of milliseconds on
Apache Pulsar), and an upload that fails is cleaned up in the background: an ``aborted``
marker tells the backend reading the side topic to stop waiting, or, if no backend will come
for the pieces, their subscription is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from asyncio import FIRST_EXCEPTION
from collections.abc import Awaitable, Callable

from ..errors import TransportError
from ..protocol.envelope import Message, Prop
from ..protocol.fragments import (
    FRAGMENT_SUBSCRIPTION,
    abort_marker,
    send_pieces,
    side_topic,
    split,
)
from ..transport.base import Subscription, Transport

__all__ = ["Uploads"]

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
    """

    def __init__(
        self, transport: Transport, topic: str, later: Callable[[Awaitable[None]], None]
    ) -> None:
        self._transport = transport
        self._topic = topic
        self._later = later
        #: A side topic for the next request in pieces, subscribed ahead of need.
        self._spare: asyncio.Future[tuple[str, Subscription]] | None = None

    async def publish(self, message: Message) -> None:
        """Publish a request, in pieces if the broker needs it."""
        transport = self._transport
        limit = transport.max_message_size
        if limit is None or len(message.payload) <= limit:
            await transport.publish(self._topic, message)
            return
        side = await self._take_side_topic()
        pieces = split(
            message, limit, extra={Prop.FRAGMENTS_TOPIC: side}, piece_size=transport.piece_size
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
        name = side_topic(self._topic, uuid.uuid4().hex)
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
        try:
            holder = await self._transport.subscribe(name, FRAGMENT_SUBSCRIPTION, shared=True)
            await holder.unsubscribe()
        except TransportError as exc:
            log.warning("could not delete the side topic subscription of %s: %s", name, exc)
