"""The demessaging side of the benchmarks, through the public :class:`~demessaging.client.Client`.

The backends are ``demessaging listen benchmarks/module.py`` processes (see
:func:`benchmarks.procs.backend`); this module only calls them.
"""

from __future__ import annotations

import asyncio
import math
import time

import numpy as np

from demessaging.client import Client
from demessaging.message import Prop
from demessaging.serialization import msgpack

from .procs import BenchmarkError

__all__ = ["CALL_TIMEOUT", "DemessagingPeer", "array_of"]

#: The deadline of one call, in seconds (large arrays take long while they travel as JSON).
CALL_TIMEOUT = 180.0
NOOP = {"func_name": "noop"}


def array_of(nbytes: int) -> np.ndarray:
    """A float64 array of ``nbytes`` bytes of random values in [0, 1), always the same."""
    return np.random.default_rng(2024).random(nbytes // 8)


class DemessagingPeer:
    """A demessaging client of the benchmark module served on ``topic``.

    Parameters
    ----------
    url
        The broker URL demessaging uses.
    topic
        The backends' topic.
    """

    def __init__(self, url: str, topic: str) -> None:
        self.client = Client(topic, broker_url=url, timeout=CALL_TIMEOUT)

    @property
    def encoding(self) -> str:
        """The encoding of the client's requests (``DEMESSAGING_ENCODING``)."""
        chosen = str(self.client.settings.encoding)
        if chosen != "auto":
            return chosen
        pong = getattr(self.client, "_pong", None) or {}  # what the backend offered, once asked
        offered = str(pong.get(Prop.CONTENT_TYPES, "")).split(",")
        return "msgpack" if msgpack.CONTENT_TYPE in offered else "json"

    def ping(self, count: int, warmup: int) -> list[float]:
        """Seconds of ``count`` sequential :meth:`Client.ping` calls, after ``warmup`` more."""
        times = []
        for n in range(warmup + count):
            start = time.perf_counter()
            self.client.ping()
            if n >= warmup:
                times.append(time.perf_counter() - start)
        return times

    def noop(self, count: int, warmup: int) -> list[float]:
        """Seconds of ``count`` sequential calls of ``noop()``, after ``warmup`` more."""
        times = []
        for n in range(warmup + count):
            start = time.perf_counter()
            self.client.call(NOOP)
            if n >= warmup:
                times.append(time.perf_counter() - start)
        return times

    def sequential(self, count: int) -> float:
        """Seconds for ``count`` calls of ``noop()``, one after the other."""
        self.client.call(NOOP)
        start = time.perf_counter()
        for _ in range(count):
            self.client.call(NOOP)
        return time.perf_counter() - start

    def concurrent(self, count: int, rounds: int = 1) -> list[float]:
        """Seconds for ``count`` calls of ``noop()`` made at once with ``asyncio.gather``.

        ``rounds`` times, after one more to warm up (the backends' workers start then).
        """

        async def calls() -> float:
            start = time.perf_counter()
            await asyncio.gather(*(self.client.acall(NOOP) for _ in range(count)))
            return time.perf_counter() - start

        self.client.call(NOOP)
        return [asyncio.run(calls()) for _ in range(rounds + 1)][1:]

    def transfer(self, values: np.ndarray) -> float:
        """Seconds for ``total(values)``, from the call to its result.

        Raises
        ------
        BenchmarkError
            If the result is not the sum of ``values``.
        """
        start = time.perf_counter()
        result = self.client.call({"func_name": "total", "values": values})
        elapsed = time.perf_counter() - start
        if not math.isclose(float(result), float(values.sum()), rel_tol=1e-9):
            raise BenchmarkError(f"total() returned {result!r}, not {values.sum()!r}")
        return elapsed

    def close(self) -> None:
        """Close the client."""
        self.client.close()

    def __enter__(self) -> DemessagingPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
