"""Setting up a pulsar-client connection: credentials, topic names, the library's logger."""

from __future__ import annotations

import logging
import os
from typing import Any

import pulsar

from .base import TransportOptions
from .handshake import check_credentials
from .tls import client_context as tls_context

__all__ = ["authentication", "check", "full_topic", "library_logger"]

log = logging.getLogger("demessaging.transport.pulsar")
#: Where pulsar-client's file logger writes instead of stderr, if a program says so.
LIBRARY_LOG: str | None = None


def authentication(options: TransportOptions) -> Any:
    """The pulsar-client authentication object of ``options``' credentials, or None."""
    if options.token:
        return pulsar.AuthenticationToken(options.token)
    if options.oauth2:
        return pulsar.AuthenticationOauth2(options.oauth2)
    if options.tls_certificate:
        return pulsar.AuthenticationTLS(options.tls_certificate, options.tls_key)
    return None


def full_topic(name: str, tenant: str, namespace: str, *, persistent: bool = True) -> str:
    """``name`` as a full topic name; a full name is returned as it is."""
    if "://" in name:
        return name
    kind = "persistent" if persistent else "non-persistent"
    return f"{kind}://{tenant}/{namespace}/{name}"


async def check(url: str, options: TransportOptions) -> None:
    """Raise at once if the broker refuses the credentials or the TLS handshake fails.

    OAuth2 credentials are left to the library; over TLS the handshake is still checked.
    """
    tls = tls_context(options, url) if url.startswith("pulsar+ssl://") else None
    if options.tls_certificate and tls is None and not options.token:
        return  # TLS authentication without TLS: the library reports it
    if options.token:
        credentials = ("token", options.token.encode())
    elif options.tls_certificate and tls is not None:
        credentials = ("tls", b"")
    else:
        credentials = ("", b"")
    await check_credentials(
        url,
        *credentials,
        tls=tls,
        timeout=min(10, options.operation_timeout),
        options=options,
        handshake_only=bool(options.oauth2),
    )


def library_logger() -> Any:
    """pulsar-client's own logger, on stderr, at the level of our ``log`` (see the module).

    Not a Python logger: pulsar-client (3.13) calls it from its threads, also while the
    interpreter shuts down, where it falls back to printing on stdout, where command output
    goes, and aborts processes (7 of 70 runs of ``demessaging ping``, none with this logger).
    Not its console logger either, which writes to stdout.
    """
    level = log.getEffectiveLevel()
    if level >= logging.ERROR:
        chosen = pulsar.LoggerLevel.Error
    elif level > logging.DEBUG:
        chosen = pulsar.LoggerLevel.Warn
    else:
        chosen = pulsar.LoggerLevel.Info
    if LIBRARY_LOG is not None:
        return pulsar.FileLogger(chosen, LIBRARY_LOG)
    if os.path.exists("/dev/stderr"):
        return pulsar.FileLogger(chosen, "/dev/stderr")
    return pulsar.ConsoleLogger(chosen)
