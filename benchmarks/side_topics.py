"""What a side topic per request costs, measured with raw pulsar-client (docs/benchmarks.md).

``python -m benchmarks.side_topics [--broker pulsar] [--mib 10] [--runs 12]`` starts a broker
and sends a payload in pieces of 1 MiB (cut as demessaging cuts them), timing each transfer
from the first send to the last piece received, four ways, one after the other in each run:

- ``warm``: one topic whose consumer is connected all along (the raw baseline's case);
- ``fresh``: a new topic per transfer, its consumer and producer made before the first piece;
- ``late``: a new topic per transfer, its subscription and producer made ahead of need (the
  subscription's consumer closed), and the consumer connecting as the first piece is sent,
  as a demessaging backend's does once the head of a request arrives;
- ``held``: as ``late``, with a consumer that takes nothing (a receiver queue of 0) connected
  from before the first piece until the transfer is done;
- ``apart``: as ``held``, the consumer that takes nothing being of a subscription of its own,
  deleted after the transfer.

It prints the median, least and most milliseconds of each.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulsar

from . import brokers
from .raw import PIECE, PREFETCH, _client, _producer, _sent

__all__ = ["measure"]

MIB = 1024 * 1024
#: Milliseconds a piece may take to arrive before the transfer is taken for stuck.
RECEIVE_TIMEOUT = 60_000
WAYS = ("warm", "fresh", "late", "held", "apart")


def _subscribe(
    client: pulsar.Client, topic: str, queue: int = PREFETCH, name: str = "pieces"
) -> Any:
    return client.subscribe(
        topic, name, consumer_type=pulsar.ConsumerType.Shared, receiver_queue_size=queue
    )


def _transfer(producer: Any, pieces: list[bytes], receive: Callable[[], None]) -> float:
    """Seconds from the first send until ``receive`` (in a thread of its own) returned."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            receive()
        except BaseException as exc:  # seen below
            failure.append(exc)

    start = time.perf_counter()
    reader = threading.Thread(target=run)
    reader.start()
    for piece in pieces:
        producer.send_async(piece, _sent)
    producer.flush()
    reader.join(RECEIVE_TIMEOUT / 1000 + 5)
    if failure or reader.is_alive():
        raise RuntimeError(f"the transfer did not complete: {failure or 'stuck'}")
    return time.perf_counter() - start


def _receive_all(consumer: Any, count: int) -> None:
    for _ in range(count):
        consumer.acknowledge(consumer.receive(timeout_millis=RECEIVE_TIMEOUT))


def measure(url: str, mib: int, runs: int) -> dict[str, list[float]]:
    """Seconds of each transfer of ``mib`` MiB, by way (see the module's docstring)."""
    payload = bytes(mib * MIB)
    step = PIECE - PIECE % 3
    pieces = [payload[i : i + step] for i in range(0, len(payload), step)]
    count = len(pieces)
    client = _client(url)
    times: dict[str, list[float]] = {way: [] for way in WAYS}
    try:
        warm = f"side-warm-{uuid.uuid4().hex[:8]}"
        warm_consumer = _subscribe(client, warm)
        warm_producer = _producer(client, warm)
        _transfer(warm_producer, pieces, lambda: _receive_all(warm_consumer, count))  # warm-up
        for _ in range(runs):
            elapsed = _transfer(warm_producer, pieces, lambda: _receive_all(warm_consumer, count))
            times["warm"].append(elapsed)

            topic = f"side-fresh-{uuid.uuid4().hex[:8]}"
            fresh, producer = _subscribe(client, topic), _producer(client, topic)
            time.sleep(0.2)  # made ahead of need
            times["fresh"].append(
                _transfer(producer, pieces, functools.partial(_receive_all, fresh, count))
            )
            fresh.close()
            producer.close()

            for way in ("late", "held", "apart"):
                topic = f"side-{way}-{uuid.uuid4().hex[:8]}"
                holder = _subscribe(client, topic, 0)
                if way != "held":
                    holder.close()  # the subscription stays
                if way == "apart":
                    holder = _subscribe(client, topic, 0, "holder")
                producer = _producer(client, topic)
                time.sleep(0.2)

                def late(topic: str = topic) -> None:
                    consumer = _subscribe(client, topic)
                    _receive_all(consumer, count)
                    consumer.close()

                times[way].append(_transfer(producer, pieces, late))
                producer.close()
                if way == "held":
                    holder.close()
                elif way == "apart":
                    holder.unsubscribe()
    finally:
        client.close()
    return times


def main(argv: list[str] | None = None) -> int:
    """Run :func:`measure` on a broker of its own; print the medians."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.side_topics")
    parser.add_argument("--broker", default="pulsar", choices=brokers.KNOWN)
    parser.add_argument("--mib", type=int, default=10, help="payload size (%(default)s MiB)")
    parser.add_argument("--runs", type=int, default=12, help="transfers per way (%(default)s)")
    args = parser.parse_args(argv)
    if args.mib < 1 or args.runs < 1:
        parser.error("--mib and --runs must be at least 1")
    with (
        tempfile.TemporaryDirectory(prefix="side-topics-") as folder,
        brokers.running(args.broker, Path(folder) / "broker") as broker,
    ):
        times = measure(broker.raw_url, args.mib, args.runs)
    for way, seconds in times.items():
        ms = [s * 1e3 for s in seconds]
        print(
            f"{args.broker} {args.mib} MiB {way:5}: median {statistics.median(ms):7.1f} ms "
            f"(least {min(ms):6.1f}, most {max(ms):6.1f}; {len(ms)} transfers)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
