"""Transports: one interface, one module per broker. See :mod:`.base`.

:func:`connect` picks the transport from a broker URL's scheme:

- ``memory://`` or ``memory://NAME``: the in-process broker (:mod:`.memory`).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ..errors import ConfigurationError
from .base import Subscription, Transport

__all__ = ["Subscription", "Transport", "connect"]


def connect(url: str) -> Transport:
    """A transport for the broker at ``url``.

    Raises
    ------
    ConfigurationError
        If the URL's scheme names no known transport.
    """
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from .memory import MemoryBroker, MemoryTransport

        return MemoryTransport(MemoryBroker.named(urlsplit(url).netloc))
    raise ConfigurationError(f"unknown broker URL {url!r}; expected memory://[NAME]")
