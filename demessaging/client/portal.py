"""An event loop in a background thread: the one async core behind sync and async faces.

Synchronous callers block on a future; asynchronous callers on any event loop (Jupyter's
running loop included) await it. The transport is connected and closed on the portal's loop;
a call made on another loop sends from there once connected, and on Pulsar brokers replies are
read by a thread of their own (:mod:`.connection`, :mod:`.reader`).

The sync face of a class is written once, from its async face: :func:`blocking` turns an
async method into the method that runs it on the portal and returns its result, and
:func:`blocking_iterator` an async generator method into a generator method. :class:`Client
<demessaging.client.Client>` and :class:`~demessaging.client.RemoteModule` (whose ``call``
and ``stream`` the functions of generated packages use) make their sync faces so.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import functools
import inspect
import threading
import weakref
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

__all__ = ["Portal", "PortalOwner", "blocking", "blocking_iterator"]

T = TypeVar("T")
P = ParamSpec("P")
F = TypeVar("F", bound=Callable[..., Any])


class Portal:
    """Runs coroutines on a private event loop in a daemon thread."""

    def __init__(self, name: str = "demessaging-client") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        close = weakref.WeakMethod(self.close)
        self._atexit = lambda: (method := close()) is not None and method()
        atexit.register(self._atexit)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def _submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if self.loop.is_closed():
            coro.close()
            raise RuntimeError("this client is closed")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the portal and wait for it (the coroutine bounds its own time)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            coro.close()
            raise RuntimeError("a synchronous call cannot run on the client's own event loop")
        future = self._submit(coro)
        try:
            return future.result()
        except BaseException:
            future.cancel()  # e.g. KeyboardInterrupt: do not leave the call running
            raise

    def iterate(self, items: AsyncGenerator[T, None]) -> Generator[T, None, None]:
        """Iterate an async generator on the portal, from synchronous code.

        Closing the returned generator (or leaving a ``for`` loop early) closes ``items``.
        """

        async def step() -> T:
            return await items.__anext__()

        async def stop() -> None:
            await items.aclose()

        try:
            while True:
                try:
                    item = self.run(step())
                except StopAsyncIteration:
                    return
                yield item
        finally:
            with contextlib.suppress(RuntimeError):  # the client was closed first
                self.run(stop())

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await ``coro`` on the portal from any event loop."""
        future = self._submit(coro)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.cancel()
            raise

    def close(self, timeout: float = 5.0) -> None:
        """Cancel what still runs on the loop, stop it and join the thread."""
        atexit.unregister(self._atexit)
        if self.loop.is_closed():
            return
        with contextlib.suppress(concurrent.futures.TimeoutError, RuntimeError):
            asyncio.run_coroutine_threadsafe(_cancel_all(), self.loop).result(timeout)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self.loop.close()


async def _cancel_all() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class PortalOwner(Protocol):
    """What has a portal to run its async face on: a client, or what calls through one."""

    def _portal(self) -> Portal:
        """The portal, started on first use."""
        ...


Owner = TypeVar("Owner", bound=PortalOwner)


def blocking(
    method: Callable[Concatenate[Owner, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[Owner, P], T]:
    """The sync form of an async method: it runs the method on the owner's portal.

    The result has the method's signature (for type checkers too), its name without the
    leading ``a`` and its docstring.
    """

    @functools.wraps(method)
    def run(self: Owner, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._portal().run(method(self, *args, **kwargs))

    return _named(run, method)


def blocking_iterator(
    method: Callable[Concatenate[Owner, P], AsyncGenerator[T, None]],
) -> Callable[Concatenate[Owner, P], Generator[T, None, None]]:
    """The sync form of an async generator method: a generator of the same items.

    Nothing runs before the first item is asked for; closing the generator (or leaving a
    ``for`` loop early) closes the async generator, on the owner's portal.
    """

    @functools.wraps(method)
    def iterate(self: Owner, /, *args: P.args, **kwargs: P.kwargs) -> Generator[T, None, None]:
        yield from self._portal().iterate(method(self, *args, **kwargs))

    # not an async generator's return annotation: help() shows none rather than a wrong one
    shown: Any = iterate
    shown.__annotations__ = {k: v for k, v in method.__annotations__.items() if k != "return"}
    shown.__signature__ = inspect.signature(method).replace(
        return_annotation=inspect.Signature.empty
    )
    return _named(iterate, method)


def _named(function: F, method: Callable[..., Any]) -> F:
    """Name and document the sync form of ``method``: ``acall`` becomes ``call``."""
    name = method.__name__.removeprefix("a")
    owner, _, _ = method.__qualname__.rpartition(".")
    function.__name__ = name
    function.__qualname__ = f"{owner}.{name}" if owner else name
    summary, _, rest = inspect.cleandoc(method.__doc__ or "").partition("\n\n")
    note = f"The blocking form of :meth:`{method.__name__}`: it waits in the calling thread."
    function.__doc__ = "\n\n".join(part for part in (summary, note, rest) if part)
    return function
