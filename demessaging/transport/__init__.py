"""Transports: one interface, one module per broker. See :mod:`.base`.

:func:`connect` picks the transport from a broker URL's scheme:

- ``pulsar://HOST:PORT`` and ``pulsar+ssl://HOST:PORT``: Apache Pulsar or pulsar-lite
  (:mod:`.pulsar`);
- ``ws://HOST:PORT[/PATH]`` and ``wss://...``: the WebSocket API of Apache Pulsar or of
  dasf-broker-django (:mod:`.websocket`);
- ``pulsar-lite://HOST:PORT``: a pulsar-lite broker, with the work-arounds it needs (see
  :class:`.pulsar.PulsarTransport`);
- ``memory://`` or ``memory://NAME``: the in-process broker (:mod:`.memory`).

``embedded://``, the pulsar-lite broker of this machine, is not a transport of its own:
:meth:`demessaging.config.Settings.connect` finds that broker and connects to its
``pulsar-lite://`` URL.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ..errors import ConfigurationError
from .base import Subscription, Transport, TransportOptions

__all__ = ["Subscription", "Transport", "TransportOptions", "connect"]


def connect(url: str, options: TransportOptions | None = None) -> Transport:
    """A transport for the broker at ``url``.

    Parameters
    ----------
    url
        The broker URL.
    options
        Topics, credentials and limits; each transport uses those that apply to it. The
        defaults if None.

    Raises
    ------
    ConfigurationError
        If the URL's scheme names no known transport.
    """
    options = options or TransportOptions()
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from .memory import MemoryBroker, MemoryTransport

        return MemoryTransport(MemoryBroker.named(urlsplit(url).netloc))
    if scheme in ("pulsar", "pulsar+ssl"):
        from .pulsar import PulsarTransport

        return PulsarTransport(url, options)
    if scheme == "pulsar-lite":
        from .pulsar import PulsarTransport

        return PulsarTransport("pulsar" + url[len("pulsar-lite") :], options, pulsar_lite=True)
    if scheme in ("ws", "wss"):
        from .websocket import WebSocketTransport

        return WebSocketTransport(url, options)
    if scheme == "embedded":
        raise ConfigurationError(
            "embedded:// names the embedded broker of this machine; connect to it with "
            "demessaging.config.Settings.connect(), which finds it"
        )
    raise ConfigurationError(
        f"unknown broker URL {url!r}; expected pulsar://HOST:PORT, pulsar+ssl://HOST:PORT, "
        "pulsar-lite://HOST:PORT, ws://HOST:PORT[/PATH], wss://..., embedded:// or "
        "memory://[NAME]"
    )
