"""Transports: one interface, one module per broker. See :mod:`.base`.

:func:`connect` picks the transport from a broker URL's scheme:

- ``pulsar://HOST:PORT`` and ``pulsar+ssl://HOST:PORT``: Apache Pulsar or pulsar-lite
  (:mod:`.pulsar`);
- ``ws://HOST:PORT[/PATH]`` and ``wss://...``: the WebSocket API of Apache Pulsar or of
  dasf-broker-django (:mod:`.websocket`);
- ``pulsar-lite://HOST:PORT``: a pulsar-lite broker, with the work-around its shared
  subscriptions need (see :class:`.pulsar.PulsarOptions`);
- ``embedded://``: the embedded pulsar-lite broker of this machine (:mod:`demessaging.embedded`),
  which must be running (``demessaging listen`` and ``demessaging broker`` start it);
- ``memory://`` or ``memory://NAME``: the in-process broker (:mod:`.memory`).
"""

from __future__ import annotations

import dataclasses
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigurationError, TransportError
from .base import Subscription, Transport

__all__ = ["Subscription", "Transport", "connect"]


def connect(url: str, **options: Any) -> Transport:
    """A transport for the broker at ``url``.

    Parameters
    ----------
    url
        The broker URL.
    **options
        Options of the transport (:class:`.pulsar.PulsarOptions`,
        :class:`.websocket.WebSocketOptions`), such as ``tenant``, ``namespace``, ``token``,
        ``tls_trust_certs``; each transport ignores those it does not have, and empty ones.

    Raises
    ------
    ConfigurationError
        If the URL's scheme names no known transport.
    TransportError
        For ``embedded://`` when no embedded broker runs on this machine.
    """
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from .memory import MemoryBroker, MemoryTransport

        return MemoryTransport(MemoryBroker.named(urlsplit(url).netloc))
    if scheme == "embedded":
        from ..embedded import data_dir, find_running

        broker = find_running()
        if broker is None:
            raise TransportError(
                f"no embedded broker is running on this machine (looked in {data_dir()}); start "
                "a backend with `demessaging listen`, or the broker with `demessaging broker`, "
                "or set DEMESSAGING_BROKER_URL"
            )
        url = broker.broker_url
        scheme = "pulsar-lite"
    if scheme in ("pulsar", "pulsar+ssl", "pulsar-lite"):
        from .pulsar import PulsarOptions, PulsarTransport

        known = _known(PulsarOptions, options)
        if scheme == "pulsar-lite":
            url = "pulsar" + url[len("pulsar-lite") :]
            known["pulsar_lite"] = True
        return PulsarTransport(url, PulsarOptions(**known))
    if scheme in ("ws", "wss"):
        from .websocket import WebSocketOptions, WebSocketTransport

        return WebSocketTransport(url, WebSocketOptions(**_known(WebSocketOptions, options)))
    raise ConfigurationError(
        f"unknown broker URL {url!r}; expected pulsar://HOST:PORT, pulsar+ssl://HOST:PORT, "
        "pulsar-lite://HOST:PORT, ws://HOST:PORT[/PATH], wss://..., embedded:// or "
        "memory://[NAME]"
    )


def _known(options_class: Any, options: dict[str, Any]) -> dict[str, Any]:
    """The options ``options_class`` has, leaving out empty ones."""
    names = {f.name for f in dataclasses.fields(options_class)}
    return {k: v for k, v in options.items() if k in names and v not in (None, "", {})}
