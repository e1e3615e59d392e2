"""``demessaging listen`` against a bare backend of worker threads that receive and reply.

``python -m benchmarks.threaded [--broker pulsar-lite] [--bursts 5] [--rounds 2]`` measures, in
the same run and alternating, the CPU time per call of each process (as :mod:`benchmarks.cpu`)
during bursts of 1,000 concurrent ``noop()`` calls from the same client to:

- ``listen``: ``demessaging listen benchmarks/module.py --workers 8``;
- ``threads``: a sketch of another design, :func:`serve` (``python -m benchmarks.threaded serve
  URL TOPIC``): 8 threads that each take a request with pulsar-client's blocking ``receive``,
  parse it, run it through demessaging's dispatcher, log the call's line, and send the reply
  with ``send_async``, acknowledging the request from the receipt; no event loop.

The sketch is not a backend: it leaves out requests in pieces, cancellation, progress, streams,
repeats, deadlines, tracing, metrics, dead letters and stopping gracefully. It first measured
what the event loop and the hand-overs around it cost a plain call (docs/benchmarks.md, "Third
round"); ``listen`` has since served plain calls the same way
(:mod:`demessaging.backend.receivers`, "Fourth round"), and the two now show what the rest of
``listen`` costs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from . import brokers
from .calls import DemessagingPeer
from .cpu import per_call
from .procs import MODULE, backend, progress, serving

__all__ = ["main", "serve"]

WORKERS = 8
CALLS = 1000


def serve(url: str, topic: str, workers: int = WORKERS) -> None:
    """Serve ``benchmarks/module.py`` on ``topic`` with ``workers`` receiving threads; forever."""
    import pulsar

    from demessaging.backend.cancel import Cancellations
    from demessaging.backend.dispatcher import Dispatcher
    from demessaging.backend.queries import Queries
    from demessaging.message import Message
    from demessaging.protocol.envelope import Query, parse_request
    from demessaging.protocol.outgoing import error_reply, reply_to
    from demessaging.protocol.topics import ReplyTopics
    from demessaging.transport.pulsar import full_topic

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    calls = logging.getLogger("demessaging.calls")
    dispatcher = Dispatcher.from_module(str(MODULE))
    queries = Queries(dispatcher.models, topic, Cancellations())
    topics = ReplyTopics.of("public", "default", topic)
    client = pulsar.Client(url.replace("pulsar-lite://", "pulsar://"))
    consumer = client.subscribe(
        full_topic(topic, "public", "default"),
        "demessaging-backend",
        consumer_type=pulsar.ConsumerType.Shared,
        receiver_queue_size=workers,
    )
    producers: dict[str, Any] = {}
    lock = threading.Lock()

    def producer(name: str) -> Any:
        with lock:
            if name not in producers:
                producers[name] = client.create_producer(
                    full_topic(name, "public", "default"), batching_enabled=False
                )
            return producers[name]

    def work() -> None:
        while True:
            raw = consumer.receive()
            message = Message(payload=raw.data(), properties=raw.properties())
            request = parse_request(message, topics)
            if isinstance(request, Query):
                target, reply = queries.answer(request)
            else:
                outcome = dispatcher.handle(request.payload, request.content_type)
                if outcome.error is not None:
                    target, reply = error_reply(request, outcome.error, source_topic=topic)
                else:
                    target, reply = reply_to(request, outcome.payload, source_topic=topic)
                calls.info("%s %s: %s", outcome.member, request.context, "done")
            producer(target).send_async(
                bytes(reply.payload),
                lambda result, message_id, raw=raw: consumer.acknowledge(raw),
                properties=dict(reply.properties),
            )

    for _ in range(workers):
        threading.Thread(target=work, daemon=True).start()
    print("serving", flush=True)
    threading.Event().wait()


def measure(name: str, bursts: int, rounds: int, folder: Path) -> dict[str, list[dict[str, float]]]:
    """``rounds`` measurements of each design on broker ``name``, alternating."""
    found: dict[str, list[dict[str, float]]] = {"listen": [], "threads": []}
    with brokers.running(name, folder / "broker") as broker:
        for n in range(rounds):
            for design in ("listen", "threads"):
                topic = f"bench-{design}-{n}"
                if design == "listen":
                    server = backend("listen", broker.url, topic, folder, WORKERS)
                else:
                    args = ["-m", "benchmarks.threaded", "serve", broker.url, topic]
                    server = serving("threads", args, folder)
                try:
                    with DemessagingPeer(broker.url, topic) as client:
                        client.concurrent(CALLS, 1)  # warm-up
                        progress(f"{name}: {design}, {CALLS} concurrent calls, {bursts} times")
                        pids: dict[str, int | str] = {
                            "client": "self",
                            "backend": server.pid,
                            "broker": broker.pid,
                        }
                        found[design].append(
                            per_call(pids, lambda: len(client.concurrent(CALLS, bursts)) * CALLS)
                        )
                finally:
                    server.stop()
    return found


def main(argv: list[str] | None = None) -> int:
    """Run :func:`measure`, or :func:`serve` (``serve URL TOPIC``)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        serve(argv[1], argv[2])
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.threaded", description=__doc__)
    parser.add_argument("--broker", default="pulsar-lite", choices=brokers.KNOWN)
    parser.add_argument("--bursts", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-threaded-") as folder:
        found = measure(args.broker, args.bursts, args.rounds, Path(folder))
    for design, runs in found.items():
        for run in runs:
            shown = ", ".join(f"{k} {v:.0f}" for k, v in run.items())
            print(f"{design}: us of CPU per call: {shown}")
    print(json.dumps(found, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
