"""The backend: the dispatcher (no I/O) and the listener that feeds it from a transport."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from ..config import Settings
from .dispatcher import Dispatcher, Outcome
from .listener import Listener
from .thread import ListenerThread, serve_until_signal

__all__ = ["Dispatcher", "Listener", "ListenerThread", "Outcome", "serve", "serve_until_signal"]


def serve(
    module: str | Path | ModuleType,
    *,
    topic: str | None = None,
    broker_url: str | None = None,
    workers: int = 4,
    debug: bool = False,
) -> ListenerThread:
    """Serve a module from a background thread of this process.

    Parameters
    ----------
    module
        A file path, a dotted module name or a module.
    topic
        The request topic; the ``topic`` setting, else the module's name.
    broker_url
        The broker; the ``broker_url`` setting by default.
    workers
        Requests handled at once.
    debug
        Send tracebacks to callers with errors.

    Returns
    -------
    ListenerThread
        The running backend; ``stop()`` it, or use it as a context manager.

    Examples
    --------
    >>> with serve("examples/climate.py", broker_url="memory://"):  # doctest: +SKIP
    ...     climate_client.total([1.0, 2.0])
    """
    dispatcher = Dispatcher.from_module(module, debug=debug)
    settings = Settings.from_env(broker_url=broker_url, topic=topic)
    name = settings.topic or dispatcher.models.spec.name.rsplit(".", 1)[-1]
    transport = settings.connect()
    listener = Listener(dispatcher, transport, name, workers=workers, **settings.listener_options())
    return ListenerThread(listener).start()
