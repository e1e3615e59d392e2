"""Running a :class:`~demessaging.backend.listener.Listener`: until a signal, or in a thread."""

from __future__ import annotations

import asyncio
import signal
import threading
import time

from .listener import Listener

__all__ = ["ListenerThread", "serve_until_signal"]


async def serve_until_signal(listener: Listener) -> None:
    """Serve until SIGINT or SIGTERM, finish the calls in flight, close the transport."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, listener.stop)
    try:
        await listener.serve()
    finally:
        await listener.transport.close()


class ListenerThread:
    """Runs a :class:`Listener` on its own event loop in a background thread.

    Parameters
    ----------
    listener
        The listener to run.

    Examples
    --------
    >>> with ListenerThread(listener):  # doctest: +SKIP
    ...     call_it()
    """

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self, timeout: float = 10.0) -> ListenerThread:
        """Start serving; returns once the listener is subscribed (at once if it already is)."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._thread = threading.Thread(target=self._run, name="demessaging-listener", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.listener.ready.wait(0.05):
            if not self._thread.is_alive():
                raise RuntimeError("the listener failed to start") from self._error
            if time.monotonic() > deadline:
                raise TimeoutError(f"the listener did not start within {timeout:g} s")
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self.listener.serve())
        except BaseException as exc:  # reported by start() and stop()
            self._error = exc
        finally:
            loop.run_until_complete(self.listener.transport.close())
            loop.close()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking requests, finish those in flight, and join the thread."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self.listener.stop)
            self._thread.join(timeout)

    def __enter__(self) -> ListenerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
