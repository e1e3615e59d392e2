"""A first handshake with a Pulsar broker, to report refused credentials at once.

When a broker refuses a client's credentials, it answers the ``CONNECT`` command with an
``ERROR`` and closes the connection. pulsar-client 3.x (C++) takes that for a network failure
and retries until its operation timeout, so a missing or wrong token looks like an unreachable
broker. Before the library connects, :func:`check_credentials` sends one ``CONNECT`` of its own
and raises :class:`~demessaging.errors.AuthenticationError` with the broker's reason if it is
refused. Anything else (no answer, a closed connection, ``CONNECTED``, an authentication
challenge) is left to the library. It also names TLS failures and a scheme that does not fit
the port at once, where the library would try until its operation timeout (see
:func:`check_credentials`).

The frames are those of Pulsar's binary protocol (``PulsarApi.proto``): a 4-byte big-endian
total size, a 4-byte command size, and a protobuf ``BaseCommand``. Only the fields used here are
encoded: ``BaseCommand.type`` (1), ``.connect`` (2), ``.error`` (14); ``CommandConnect``
``client_version`` (1), ``auth_data`` (3), ``protocol_version`` (4), ``auth_method_name`` (5);
``CommandError`` ``error`` (2) and ``message`` (3).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from urllib.parse import urlsplit

from ..errors import AuthenticationError, AuthorizationError, TransportError
from .base import TransportOptions
from .tls import failure

__all__ = ["check_credentials", "connect_frame", "refusal"]

CONNECT, ERROR = 2, 14
AUTHENTICATION_ERROR, AUTHORIZATION_ERROR = 3, 4
PROTOCOL_VERSION = 21
MAX_REPLY = 64 * 1024
#: Seconds to find out whether a port speaks TLS or Pulsar in clear, after a failure.
PROBE = 2.0


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number: int, value: int | bytes) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _fields(data: bytes) -> dict[int, int | bytes]:
    """The top-level fields of a protobuf message (the last of repeated ones)."""
    found: dict[int, int | bytes] = {}
    pos = 0

    def varint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while pos < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            found[number] = varint()
        elif wire == 2:
            size = varint()
            found[number] = data[pos : pos + size]
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
    return found


def connect_frame(auth_method: str = "", auth_data: bytes = b"") -> bytes:
    """A ``CONNECT`` command frame, with credentials if ``auth_method`` is given."""
    connect = _field(1, b"demessaging") + _field(4, PROTOCOL_VERSION)
    if auth_method:
        connect += _field(5, auth_method.encode()) + _field(3, auth_data)
    command = _field(1, CONNECT) + _field(2, connect)
    return struct.pack(">II", len(command) + 4, len(command)) + command


def refusal(command: bytes) -> str | None:
    """The broker's reason if ``command`` (a ``BaseCommand``) refuses the credentials."""
    refused = _refused(command)
    return None if refused is None else refused[1]


def _refused(command: bytes) -> tuple[int, str] | None:
    """The error code and the broker's reason if ``command`` refuses the credentials."""
    try:
        base = _fields(command)
        if base.get(1) != ERROR or not isinstance(base.get(14), bytes):
            return None
        error = _fields(base[14])  # type: ignore[arg-type]
    except (ValueError, IndexError):
        return None
    if error.get(2) not in (AUTHENTICATION_ERROR, AUTHORIZATION_ERROR):
        return None
    message = error.get(3, b"")
    text = message.decode(errors="replace") if isinstance(message, bytes) else str(message)
    return int(error[2]), text


async def _exchange(
    host: str, port: int, tls: ssl.SSLContext | None, frame: bytes, timeout: float
) -> bytes | None:
    """Send ``frame``; the answer's command, ``b""`` if closed unanswered, None if unclear.

    TLS and connection errors are raised (``OSError``, ``ssl.SSLError``).
    """
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=tls), timeout)
    try:
        if not frame:
            return None
        writer.write(frame)
        await writer.drain()
        try:
            header = await asyncio.wait_for(reader.readexactly(8), timeout)
        except asyncio.IncompleteReadError as exc:
            return b"" if not exc.partial else None
        total, size = struct.unpack(">II", header)
        if size > min(total - 4, MAX_REPLY):
            return None
        return await asyncio.wait_for(reader.readexactly(size), timeout)
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError, asyncio.TimeoutError):
            await asyncio.wait_for(writer.wait_closed(), 1)


async def _speaks(host: str, port: int, tls: bool) -> bool:
    """Whether ``port`` speaks TLS (a handshake completes), or else Pulsar in clear."""
    context = None
    if tls:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with contextlib.suppress(OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
        answer = await _exchange(host, port, context, b"" if tls else connect_frame(), PROBE)
        return tls or bool(answer)
    return False


async def check_credentials(
    url: str,
    auth_method: str = "",
    auth_data: bytes = b"",
    *,
    tls: ssl.SSLContext | None = None,
    timeout: float = 10.0,
    options: TransportOptions | None = None,
    handshake_only: bool = False,
) -> None:
    """Raise if the broker at ``url`` refuses these credentials; do nothing otherwise.

    Also raises at once, in one line, when the TLS handshake fails (an untrusted broker
    certificate or one for another host, a refused client certificate), and when the URL's
    scheme does not fit the port (``pulsar://`` to a TLS port, ``pulsar+ssl://`` to a plain
    one). ``handshake_only`` makes the TLS handshake and sends nothing (for credentials
    this check cannot send, such as OAuth2).

    Raises
    ------
    AuthenticationError
        With the broker's reason, if it answers ``CONNECT`` with an authentication error,
        or refuses the client certificate.
    AuthorizationError
        If it answers ``CONNECT`` with an authorization error.
    TransportError
        If the TLS handshake fails or the scheme does not fit the port.
    """
    first = url.split(",", 1)[0]  # of several brokers (pulsar://h1:6650,h2:6650), the first
    try:
        parts = urlsplit(first)
        host, port = parts.hostname or "127.0.0.1", parts.port or (6651 if tls else 6650)
    except ValueError:  # a URL the library may understand: let it judge
        return
    options = options or TransportOptions()
    frame = b"" if handshake_only else connect_frame(auth_method, auth_data)
    try:
        answer = await _exchange(host, port, tls, frame, timeout)
    except ssl.SSLCertVerificationError as exc:
        raise failure(url, exc, options) from None
    except (OSError, asyncio.TimeoutError) as exc:
        if tls is None or isinstance(exc, asyncio.TimeoutError):
            return  # nothing listens, or too slowly: the library says so
        if await _speaks(host, port, tls=False):
            raise TransportError(
                f"{url} is the broker's plain port, not its TLS port: use pulsar://, or the "
                "TLS port (brokerServicePortTls, usually 6651) with pulsar+ssl://"
            ) from None
        if isinstance(exc, ssl.SSLError):
            raise failure(url, exc, options) from None
        if await _speaks(host, port, tls=True):
            # closed after a handshake that works: our certificate was refused, or is wanted
            raise failure(url, exc, options, refused=True) from None
        return
    if answer == b"" and tls is not None:
        # closed unanswered after the handshake: it refused our certificate, or wants one
        raise failure(
            url, ConnectionResetError("closed after the handshake"), options, refused=True
        )
    if answer == b"" and tls is None and await _speaks(host, port, tls=True):
        raise TransportError(
            f"{url} is a TLS port: use pulsar+ssl:// (and DEMESSAGING_TLS_TRUST_CERTS), or "
            "the broker's plain port (brokerServicePort, usually 6650) with pulsar://"
        )
    refused = _refused(answer) if answer else None
    if refused is None:
        return
    code, reason = refused
    if code == AUTHORIZATION_ERROR:
        raise AuthorizationError(f"the broker at {url} refused to authorize the client: {reason}")
    if auth_method == "tls":
        raise AuthenticationError(
            f"the broker at {url} refused the client certificate: {reason}; check "
            "DEMESSAGING_TLS_CERTIFICATE and DEMESSAGING_TLS_KEY"
        )
    what = f"the {auth_method} credentials" if auth_method else "a client without credentials"
    raise AuthenticationError(
        f"the broker at {url} refused {what}: {reason}; set DEMESSAGING_TOKEN (or the "
        "client package's <PACKAGE>_TOKEN) to a token it accepts"
    )
