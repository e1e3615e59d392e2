"""Raw pulsar-client baselines: what the broker and the client library give without demessaging.

An *echo* process, started like a backend (``python -m benchmarks.raw echo URL REQUESTS
REPLIES``), consumes the request topic on a Shared subscription of its own. A message without
``num_fragments`` goes straight back to the reply topic; pieces of a payload (``fragment``,
``num_fragments`` and ``requestContext`` properties, as demessaging writes them) are counted,
and one small message goes back when all pieces of a payload have come.

The measuring side (:class:`RawPeer`, in the benchmark's process) uses the synchronous
``pulsar.Client``: producers with batching off and ``block_if_queue_full``, and a Shared
subscription of its own on the reply topic. Each process has one consumer per subscription, so
pulsar-lite's clash of consumer ids between processes cannot occur.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pulsar

from demessaging.transport.pulsar import DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_PIECE_SIZE

from .procs import BenchmarkError, Child, spawn

__all__ = ["PIECE", "WHOLE", "RawPeer", "StallError", "echo", "main"]

#: Payloads up to this size go in one message, larger ones in pieces, as demessaging sends.
WHOLE = DEFAULT_MAX_MESSAGE_SIZE
PIECE = DEFAULT_PIECE_SIZE
#: Messages the consumers let the broker push ahead (demessaging's PIECE_PREFETCH).
PREFETCH = 16
#: Messages a producer has on their way at most (sends block beyond).
IN_FLIGHT = 16
#: The burst's depth: its echo's prefetch, its reply consumer's, and its producer's messages
#: on their way; as deep as the burst, so that neither side ever waits for the other.
BURST_DEPTH = 1000
#: Seconds to wait for any one reply (a raw transfer of 100 MiB takes about one).
REPLY_TIMEOUT = 30


class StallError(BenchmarkError):
    """The echo did not answer in time: pulsar-lite 0.2 stalls a topic now and then."""


def _logger() -> Any:
    """pulsar-client's logger: warnings and errors only, on stderr."""
    return pulsar.FileLogger(pulsar.LoggerLevel.Warn, "/dev/stderr")


def _client(url: str) -> pulsar.Client:
    return pulsar.Client(url, operation_timeout_seconds=30, logger=_logger())


def _producer(client: pulsar.Client, topic: str, in_flight: int = IN_FLIGHT) -> pulsar.Producer:
    return client.create_producer(
        topic,
        batching_enabled=False,
        block_if_queue_full=True,
        max_pending_messages=in_flight,
        send_timeout_millis=30_000,
    )


def _sent(result: Any, message_id: Any) -> None:
    """``send_async`` callback; it must never raise (that would end the process)."""
    if result != pulsar.Result.Ok:
        with contextlib.suppress(Exception):
            print(f"send failed: {result}", file=sys.stderr, flush=True)


def echo(url: str, requests: str, replies: str, depth: int = PREFETCH) -> int:
    """Answer every message on ``requests`` on ``replies``, until SIGTERM or SIGINT.

    Parameters
    ----------
    url
        The broker's ``pulsar://`` URL.
    requests, replies
        The topics.
    depth
        Messages the broker pushes ahead, and replies on their way at most.
    """
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        raise SystemExit(0)  # a waiting receive() raises pulsar.Interrupted instead

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    client = _client(url)
    try:
        consumer = client.subscribe(
            requests,
            "raw-echo",
            consumer_type=pulsar.ConsumerType.Shared,
            receiver_queue_size=depth,
        )
        producer = _producer(client, replies, depth)
        print("ready", flush=True)
        pieces: dict[str, int] = {}
        while not stopping:
            # no timeout: receive() waits for the next message and lets signals in
            try:
                message = consumer.receive()
            except pulsar.Interrupted:
                continue
            consumer.acknowledge(message)
            properties = message.properties()
            count = properties.get("num_fragments")
            if count is None:
                producer.send_async(message.data(), _sent, properties=properties)
                continue
            context = properties.get("requestContext", "")
            pieces[context] = pieces.get(context, 0) + 1
            if pieces[context] == int(count):
                del pieces[context]
                print(f"all {count} pieces of {context}", flush=True)
                reply = {"requestContext": context, "messageType": "response"}
                producer.send_async(b"done", _sent, properties=reply)
        producer.flush()
    finally:
        client.close()
    return 0


def _request_properties(reply_topic: str) -> dict[str, str]:
    """Properties like those of a demessaging request."""
    return {
        "messageType": "request",
        "requestContext": uuid.uuid4().hex,
        "response_topic": reply_topic,
        "content_type": "application/json",
    }


class RawPeer:
    """The measuring side of the raw baselines, with its echo process.

    Parameters
    ----------
    url
        The broker's ``pulsar://`` URL.
    folder
        Where the echo process writes its log.
    """

    def __init__(self, url: str, folder: Path) -> None:
        name = f"bench-raw-{uuid.uuid4().hex[:10]}"
        self.requests, self.replies = f"{name}-requests", f"{name}-replies"
        burst_requests, burst_replies = f"{name}-burst-requests", f"{name}-burst-replies"
        self._echo: Child | None = None
        self._burst_echo: Child | None = None
        #: The context of the last transfer, which the echo names in its log.
        self.context = ""
        self._client: pulsar.Client | None = None
        try:
            self._echo = spawn(
                "raw-echo",
                ["-m", "benchmarks.raw", "echo", url, self.requests, self.replies],
                folder,
            )
            self._burst_echo = spawn(
                "raw-burst-echo",
                [
                    "-m",
                    "benchmarks.raw",
                    "echo",
                    url,
                    burst_requests,
                    burst_replies,
                    "--depth",
                    str(BURST_DEPTH),
                ],
                folder,
            )
            self._echo.wait_for("ready", timeout=60)
            self._burst_echo.wait_for("ready", timeout=60)
            self._client = _client(url)
            self._consumer = self._client.subscribe(
                self.replies,
                f"raw-client-{uuid.uuid4().hex[:8]}",
                consumer_type=pulsar.ConsumerType.Shared,
            )
            self._producer = _producer(self._client, self.requests)
            self._burst_consumer = self._client.subscribe(
                burst_replies,
                f"raw-client-{uuid.uuid4().hex[:8]}",
                consumer_type=pulsar.ConsumerType.Shared,
                receiver_queue_size=BURST_DEPTH,
            )
            self._burst_producer = _producer(self._client, burst_requests, BURST_DEPTH)
        except BaseException:
            self.close()
            raise

    def _reply(self, consumer: Any = None) -> Any:
        consumer = consumer or self._consumer
        try:
            message = consumer.receive(timeout_millis=REPLY_TIMEOUT * 1000)
        except pulsar.Timeout:
            said = self._echo.output()[-300:] if self._echo is not None else ""
            raise StallError(
                f"the raw echo did not reply within {REPLY_TIMEOUT} s (last transfer: "
                f"{self.context or 'none'}); its log ends: {said!r}"
            ) from None
        consumer.acknowledge(message)
        return message

    def ping_pong(self, count: int, warmup: int) -> list[float]:
        """Seconds of ``count`` sequential round trips of a 100-byte message."""
        payload = b'{"func_name": "noop"}'.ljust(100)
        times = []
        for n in range(warmup + count):
            properties = _request_properties(self.replies)
            start = time.perf_counter()
            self._producer.send(payload, properties=properties)
            reply = self._reply()
            elapsed = time.perf_counter() - start
            if reply.properties().get("requestContext") != properties["requestContext"]:
                raise BenchmarkError("the raw echo answered another message")
            if n >= warmup:
                times.append(elapsed)
        return times

    def burst(self, count: int) -> float:
        """Seconds to send ``count`` messages at once and receive their ``count`` replies.

        Through an echo of its own, with :data:`BURST_DEPTH` messages pushed ahead and on
        their way, on both sides.
        """
        payload = b'{"func_name": "noop"}'.ljust(100)
        start = time.perf_counter()
        for _ in range(count):
            properties = _request_properties(self.replies)
            self._burst_producer.send_async(payload, _sent, properties=properties)
        for _ in range(count):
            self._reply(self._burst_consumer)
        return time.perf_counter() - start

    def transfer(self, payload: bytes) -> float:
        """Seconds to send ``payload`` (in pieces if large) and receive the echo's one reply."""
        size = len(payload)
        step = size if size <= WHOLE else PIECE - PIECE % 3  # cut as demessaging cuts
        count = -(-size // step)
        base = _request_properties(self.replies)
        self.context = base["requestContext"]
        start = time.perf_counter()
        for index, offset in enumerate(range(0, size, step)):
            properties = base | {
                "fragment": str(index),
                "num_fragments": str(count),
                "fragment_offset": str(offset),
                "payload_size": str(size),
            }
            self._producer.send_async(payload[offset : offset + step], _sent, properties=properties)
        self._producer.flush()
        reply = self._reply()
        elapsed = time.perf_counter() - start
        if reply.properties().get("requestContext") != base["requestContext"]:
            raise BenchmarkError("the raw echo answered another payload")
        return elapsed

    def close(self) -> None:
        """Close the connection and stop the echo process."""
        try:
            if self._client is not None:
                self._client.close()
                self._client = None
        finally:
            for echo in (self._echo, self._burst_echo):
                if echo is not None:
                    echo.stop()
            self._echo = self._burst_echo = None

    def __enter__(self) -> RawPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.raw echo URL REQUESTS REPLIES``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.raw")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("echo", help="answer messages until SIGTERM")
    run.add_argument("url", help="the broker's pulsar:// URL")
    run.add_argument("requests", help="the topic to consume")
    run.add_argument("replies", help="the topic to answer on")
    run.add_argument(
        "--depth", type=int, default=PREFETCH, help="messages pushed ahead and on their way"
    )
    args = parser.parse_args(argv)
    return echo(args.url, args.requests, args.replies, args.depth)


if __name__ == "__main__":
    sys.exit(main())
