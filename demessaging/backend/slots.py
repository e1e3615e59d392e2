"""Worker slots shared by threads and by tasks of an event loop.

Where a listener's worker threads receive requests themselves (:mod:`.receivers`), a slot is
taken by a thread once it has received a request, and by a task on the loop when a request
gathered in pieces is ready to run. Both wait in one line, first come first served.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque

__all__ = ["Slots"]


class Slots:
    """``count`` slots: :meth:`take` from a thread, :meth:`acquire` on a loop, :meth:`release`.

    Parameters
    ----------
    count
        How many slots there are.
    """

    def __init__(self, count: int) -> None:
        self._free = count
        self._lock = threading.Lock()
        self._waiting: deque[threading.Event | asyncio.Future[None]] = deque()

    def take(self, timeout: float | None) -> bool:
        """Take a slot, waiting ``timeout`` seconds at most (from a thread); whether it did.

        With ``timeout`` None it waits until a slot is given back.
        """
        with self._lock:
            if self._free and not self._waiting:
                self._free -= 1
                return True
            turn = threading.Event()
            self._waiting.append(turn)
        if turn.wait(timeout):
            return True
        with self._lock:
            if turn.is_set():  # given as it gave up
                return True
            self._waiting.remove(turn)
            return False

    async def acquire(self) -> None:
        """Take a slot, waiting for one as long as it takes (from a task)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._free and not self._waiting:
                self._free -= 1
                return
            turn: asyncio.Future[None] = loop.create_future()
            self._waiting.append(turn)
        try:
            await turn
        except BaseException:
            with self._lock:
                waiting = turn in self._waiting
                if waiting:
                    self._waiting.remove(turn)
            if not waiting:  # given as it gave up: give it back
                if not turn.done():
                    turn.cancel()  # not told yet: _give sees that, and gives it back
                elif not turn.cancelled():
                    self.release()
            raise

    def release(self) -> None:
        """Give a slot back (from any thread)."""
        with self._lock:
            if not self._waiting:
                self._free += 1
                return
            turn = self._waiting.popleft()
            if isinstance(turn, threading.Event):
                turn.set()  # under the lock: take() sees it given, or gone from the line
                return
        try:
            turn.get_loop().call_soon_threadsafe(self._give, turn)
        except RuntimeError:  # its loop is closed: nobody waits there any more
            self.release()

    def _give(self, turn: asyncio.Future[None]) -> None:
        if turn.done():  # cancelled meanwhile
            self.release()
        else:
            turn.set_result(None)
