"""Fake servers on 127.0.0.1 for the unit tests: a Pulsar broker's handshake, HTTP(S)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import struct
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from demessaging.transport.handshake import _field

__all__ = ["CONNECTED", "FakeAdmin", "error_command", "fake_pulsar", "frame", "http_server"]

#: Pulsar's ``CONNECTED`` command (protocol version 21), as a broker answers ``CONNECT``.
CONNECTED = _field(1, 3) + _field(3, _field(1, b"Pulsar Server") + _field(2, 21))
#: The largest frame a fake broker reads; a larger one is not Pulsar: it closes at once.
_LARGEST = 1 << 20


def frame(command: bytes) -> bytes:
    """``command`` (a serialized ``BaseCommand``) as a frame of Pulsar's binary protocol."""
    return struct.pack(">II", len(command) + 4, len(command)) + command


def error_command(code: int, message: str) -> bytes:
    """Pulsar's ``ERROR`` command: ``code`` (a ``ServerError``) and ``message``."""
    error = _field(1, 2**64 - 1) + _field(2, code) + _field(3, message.encode())
    return _field(1, 14) + _field(14, error)


@contextlib.asynccontextmanager
async def fake_pulsar(
    answer: bytes | None = CONNECTED, context: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[int, list[bytes]]]:
    """A fake Pulsar broker: reads one command, answers ``answer`` (none if None), closes.

    Over TLS with ``context``. A frame claiming more than 1 MiB is not Pulsar: the connection
    is closed, as the broker does. Yields its port and the commands it read.
    """
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, ssl.SSLError):
            total, _ = struct.unpack(">II", await reader.readexactly(8))
            if total < _LARGEST:
                received.append(await reader.readexactly(total - 4))
                if answer is not None:
                    writer.write(frame(answer))
                    await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1], received
    finally:
        server.close()
        await server.wait_closed()


@contextlib.contextmanager
def http_server(
    handler: type[BaseHTTPRequestHandler], context: ssl.SSLContext | None = None
) -> Iterator[ThreadingHTTPServer]:
    """``handler`` serving on a free port in a thread (over TLS with ``context``); stopped."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class FakeAdmin:
    """A fake admin REST API, answering from a table, recording what it is asked.

    Attributes
    ----------
    routes
        ``(method, path) -> (status, body)``; anything else gets 404.
    seen
        Each request: method, path, ``Authorization`` header, JSON body (or None).
    url
        Where it serves, while :meth:`serving`.
    """

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], tuple[int, Any]] = {}
        self.seen: list[tuple[str, str, str, Any]] = []
        self.url = ""

    @contextlib.contextmanager
    def serving(self) -> Iterator[FakeAdmin]:
        """Serve on a free port of 127.0.0.1 until the block ends."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(size)) if size else None
                auth = self.headers.get("Authorization", "")
                fake.seen.append((self.command, self.path, auth, body))
                status, answer = fake.routes.get((self.command, self.path), (404, {"reason": "?"}))
                data = b"" if answer is None else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = _answer  # noqa: N815 (http.server names)

            def log_message(self, *args: Any) -> None:
                pass

        with http_server(Handler) as server:
            self.url = f"http://127.0.0.1:{server.server_address[1]}"
            yield self
