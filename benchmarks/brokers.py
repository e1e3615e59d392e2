"""The brokers the benchmarks run on, each started on 127.0.0.1 in a folder of its own.

- ``pulsar-lite``: the embedded broker (:mod:`demessaging.embedded`), reached by demessaging
  as ``pulsar-lite://`` (with its work-arounds) and by raw pulsar-client as ``pulsar://``;
- ``pulsar``: Apache Pulsar standalone (:mod:`tools.pulsar`), which needs Java 17
  and Maven, and takes tens of seconds to start.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from demessaging import embedded
from tools import pulsar

from .procs import BenchmarkError, progress

__all__ = ["KNOWN", "Broker", "running"]

KNOWN = ("pulsar-lite", "pulsar")


@dataclass(frozen=True)
class Broker:
    """A running broker.

    Attributes
    ----------
    name
        ``pulsar-lite`` or ``pulsar``.
    url
        The URL demessaging uses.
    raw_url
        The ``pulsar://`` URL raw pulsar-client uses.
    pid
        Its process id.
    """

    name: str
    url: str
    raw_url: str
    pid: int


@contextmanager
def running(name: str, folder: Path) -> Iterator[Broker]:
    """Start broker ``name`` with its data in ``folder``; stop it by its PID on leaving.

    Raises
    ------
    BenchmarkError
        If ``name`` is unknown, or the broker already ran for ``folder``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    if name == "pulsar-lite":
        lite = embedded.start(folder)
        try:
            if not lite.owned:
                raise BenchmarkError(f"a pulsar-lite broker already runs for {folder}")
            progress(f"pulsar-lite serves at {lite.url} (pid {lite.pid})")
            yield Broker(name, lite.broker_url, lite.url, lite.pid)
        finally:
            lite.stop()
            progress(f"stopped pulsar-lite (pid {lite.pid})")
    elif name == "pulsar":
        progress("starting Apache Pulsar standalone (this takes a while)")
        standalone = pulsar.start(folder, timeout=300)
        try:
            progress(
                f"Apache Pulsar serves at {standalone.broker_url} (pid {standalone.pid}) "
                f"after {time.monotonic() - started:.0f} s"
            )
            yield Broker(name, standalone.broker_url, standalone.broker_url, standalone.pid)
        finally:
            standalone.stop()
            progress(f"stopped Apache Pulsar (pid {standalone.pid})")
    else:
        raise BenchmarkError(f"unknown broker {name!r}; known: {', '.join(KNOWN)}")
