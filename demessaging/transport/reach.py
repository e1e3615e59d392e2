"""Is anything listening at a broker URL? A quick answer before a library's long retries.

pulsar-client retries a refused connection, or a host name that does not resolve, until its
operation timeout (30 s by default), logging each attempt. :func:`check_reachable` opens one
TCP connection to the broker's host and port first, for ``PROBE_TIMEOUT`` seconds at most, and
raises :class:`~demessaging.errors.BrokerUnreachableError` at once if the connection is
refused or the host unknown. A host that does not answer in time may be a slow broker: that is
left to the library and its timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from urllib.parse import urlsplit

from ..errors import BrokerUnreachableError

__all__ = ["PROBE_TIMEOUT", "check_reachable", "hosts", "unreachable_reason"]

#: Seconds the TCP connection to a broker may take before it is left to the library.
PROBE_TIMEOUT = 1.5
#: Address lookup failures that say the name does not exist.
_UNKNOWN_NAME = {
    getattr(socket, name)
    for name in ("EAI_NONAME", "EAI_NODATA", "EAI_ADDRFAMILY")
    if hasattr(socket, name)
}


def hosts(url: str, default_port: int) -> list[tuple[str, int]]:
    """The hosts and ports of a broker URL, of several for ``scheme://h1:p1,h2:p2``.

    Hosts whose part cannot be read are left out (the library judges those).
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return []
    netloc = urlsplit(f"{scheme}://{rest}").netloc
    found = []
    for part in netloc.rsplit("@", 1)[-1].split(","):
        with contextlib.suppress(ValueError):
            parts = urlsplit(f"//{part}")
            if parts.hostname:
                found.append((parts.hostname, parts.port or default_port))
    return found


def unreachable_reason(exc: BaseException, host: str) -> str | None:
    """Why ``host`` cannot be reached, if ``exc`` (of a connection attempt) says it cannot.

    None for errors that are no such answer (a timeout, a connection reset).
    """
    if isinstance(exc, socket.gaierror):
        if exc.errno in _UNKNOWN_NAME:
            return f"unknown host {host!r}"
        return f"cannot look up host {host!r} ({exc.strerror or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return (exc.strerror or str(exc)).lower()
    return None


async def _probe(host: str, port: int, timeout: float) -> str | None:
    """Why a TCP connection to ``host:port`` fails at once, or None if it may work."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        return unreachable_reason(exc, host)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return None


async def check_reachable(
    url: str, default_port: int, timeout: float = PROBE_TIMEOUT, *, shown: str = ""
) -> None:
    """Raise if no host of the broker URL ``url`` can be connected to; else return.

    ``shown`` is the URL the error names, if not ``url``.

    Raises
    ------
    BrokerUnreachableError
        If every host refuses the connection, is unknown or has no route to it.
    """
    targets = hosts(url, default_port)
    if not targets:
        return
    reasons = await asyncio.gather(*(_probe(h, p, timeout) for h, p in targets))
    if all(reasons):
        if len(targets) == 1:
            reason = str(reasons[0])
        else:
            reason = "; ".join(f"{h}:{p}: {r}" for (h, p), r in zip(targets, reasons, strict=True))
        raise BrokerUnreachableError(shown or url, reason)
