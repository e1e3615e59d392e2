"""Transports: one interface, one module per broker. See :mod:`.base`.

:func:`connect` picks the transport from a broker URL's scheme:

- ``pulsar://HOST:PORT`` and ``pulsar+ssl://HOST:PORT``: Apache Pulsar or pulsar-lite
  (:mod:`.pulsar`);
- ``pulsar-lite://HOST:PORT``: a pulsar-lite broker, with the work-around its shared
  subscriptions need (see :class:`.pulsar.PulsarOptions`);
- ``embedded://``: the embedded pulsar-lite broker of this machine (:mod:`demessaging.embedded`),
  which must be running (``demessaging listen`` and ``demessaging broker`` start it);
- ``memory://`` or ``memory://NAME``: the in-process broker (:mod:`.memory`).
"""

from __future__ import annotations

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
        Options of the Pulsar transport (see :class:`.pulsar.PulsarOptions`): ``tenant``,
        ``namespace``, ``token``, ``oauth2``, ``tls_trust_certs``, ``tls_certificate``,
        ``tls_key``. Other transports ignore them.

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

        known = {k: v for k, v in options.items() if v not in (None, "")}
        if scheme == "pulsar-lite":
            url = "pulsar" + url[len("pulsar-lite") :]
            known["pulsar_lite"] = True
        return PulsarTransport(url, PulsarOptions(**known))
    raise ConfigurationError(
        f"unknown broker URL {url!r}; expected pulsar://HOST:PORT, pulsar+ssl://HOST:PORT, "
        "pulsar-lite://HOST:PORT, embedded:// or memory://[NAME]"
    )
