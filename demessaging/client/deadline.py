"""A client's deadlines: each call's (no task of its own), and each step of closing's.

``asyncio.wait_for`` runs what it waits for in a task of its own (before Python 3.12); a
client makes one call after another, each under a deadline, so on Python 3.11 and later the
deadline is ``asyncio.timeout``'s, which cancels the awaiting task itself.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Awaitable
from typing import TypeVar

from ..errors import DemessagingError

__all__ = ["bounded", "within"]

log = logging.getLogger("demessaging.client")

T = TypeVar("T")


async def within(awaitable: Awaitable[T], seconds: float | None) -> T:
    """Await ``awaitable``, for ``seconds`` at most (None: no limit).

    Raises
    ------
    asyncio.TimeoutError
        If it takes longer; it is cancelled then.
    """
    if seconds is None:
        return await awaitable
    if sys.version_info < (3, 11):  # pragma: no cover - Python 3.10
        return await asyncio.wait_for(awaitable, seconds)
    async with asyncio.timeout(seconds):
        return await awaitable


async def bounded(step: Awaitable[None], timeout: float, what: str) -> None:
    """Await one step of closing for ``timeout`` seconds at most, then move on."""
    try:
        await asyncio.wait_for(step, max(timeout, 0.01))
    except asyncio.TimeoutError:
        log.debug("closing %s took too long (the broker does not answer): dropped", what)
    except DemessagingError as exc:
        log.debug("closing %s: %s", what, exc)
