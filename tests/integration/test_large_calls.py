"""Many large calls in a row on the embedded broker (pulsar-lite), none of them lost.

pulsar-lite 0.2 holds back a message for a consumer whose connection has more bytes waiting
than its write-buffer high-water mark (64 KiB by default) and sends it only at the
subscription's next event (a publish, a flow permit, a consumer coming or going). A request
in 1 MiB pieces then stalled now and then (about one call in 20 to 100) when that happened to
the last pieces on the side topic: the upload was done, the backend had permits left, so no
event came and the backend gave the request up after its fragment timeout. Replies in pieces
stalled the same way on the client's reply topic (one call in 40 to 80 timed out). The
embedded broker is configured with a high-water mark above what its consumers let come.

pulsar-lite keeps every byte it was given (300 such calls leave 30 GB): the test runs its own
broker, in a folder it deletes at the end, instead of the session's, and renews it (restarts
it with its data deleted, :meth:`~demessaging.embedded.EmbeddedBroker.renew`) every
``ROUND`` calls, between two clients, while the backend keeps serving.
"""

from __future__ import annotations

import shutil
import statistics
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from demessaging import embedded
from demessaging.client import Client
from tests.brokers import selected_brokers

from .conftest import Backend

pytestmark = pytest.mark.slow

CALLS = 300
#: Calls of one client; the broker's data is deleted between two.
ROUND = 50
#: Calls with a large result: each takes about as long as a large request.
REPLIES = 100
SIZE = 100 * 1024 * 1024
#: Stop after this many failed calls: the test has failed, and each waits for a timeout.
MAX_FAILURES = 3

MODULE = '''
"""The checksum of an array, to check that a large request arrived whole."""

from __future__ import annotations

import zlib

import numpy as np
import numpy.typing as npt


def checksum(values: npt.NDArray[np.float64]) -> int:
    """The CRC-32 of the array's bytes.

    Parameters
    ----------
    values
        The values.
    """
    return zlib.crc32(np.ascontiguousarray(values).view(np.uint8))


def count(n: int) -> npt.NDArray[np.float64]:
    """The numbers from 0 to n - 1.

    Parameters
    ----------
    n
        How many.
    """
    return np.arange(n, dtype=np.float64)
'''


@pytest.fixture
def lite(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[embedded.EmbeddedBroker]:
    """An embedded broker of its own, configured as the default one; stopped and deleted."""
    if "pulsar-lite" not in selected_brokers(request.config):
        pytest.skip("the embedded broker (pulsar-lite) is not among the chosen brokers")
    folder = tmp_path / "embedded"
    broker = embedded.start(folder)
    try:
        yield broker
    finally:
        try:
            broker.stop()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    assert embedded.find_running(folder) is None
    assert not folder.exists()


@pytest.fixture
def served(
    lite: embedded.EmbeddedBroker, launch: Callable[..., Backend], tmp_path: Path
) -> tuple[str, Backend]:
    """The topic of a backend of the module above, on its own broker."""
    module = tmp_path / "checksums.py"
    module.write_text(MODULE)
    topic = f"large-{uuid.uuid4().hex[:8]}"
    return topic, launch(module, topic, lite.broker_url)


def figures(seconds: list[float], what: str) -> str:
    ranked = sorted(seconds)
    return (
        f"{len(seconds)} calls {what}: median {statistics.median(seconds):.2f} s, "
        f"p99 {ranked[int(0.99 * (len(ranked) - 1))]:.2f} s, slowest {ranked[-1]:.2f} s, "
        f"total {sum(seconds):.0f} s"
    )


def renew(lite: embedded.EmbeddedBroker, done: int) -> None:
    """After ``done`` calls (a multiple of ``ROUND``), delete the data they left."""
    if done == 0:
        return
    held = embedded.data_size(lite.folder)
    assert held > ROUND * SIZE  # every call's request or reply stays whole until now
    assert lite.renew(keep=0) > 0
    assert embedded.data_size(lite.folder) < held // 10


def test_300_calls_of_100_mib_all_arrive_whole(
    lite: embedded.EmbeddedBroker, served: tuple[str, Backend]
) -> None:
    topic, backend = served
    values = np.random.default_rng(14).random(SIZE // 8)
    seconds: list[float] = []
    failures: list[str] = []
    for first in range(0, CALLS, ROUND):
        renew(lite, first)
        with Client(topic, broker_url=lite.broker_url, timeout=120) as client:
            for n in range(first, first + ROUND):
                values[n % values.size] = n  # another array each time
                expected = zlib.crc32(values.view(np.uint8))
                start = time.perf_counter()
                try:
                    result = client.call({"func_name": "checksum", "values": values})
                except Exception as exc:
                    result = f"{type(exc).__name__}: {exc}"
                seconds.append(time.perf_counter() - start)
                if result != expected:
                    failures.append(f"call {n} ({seconds[-1]:.1f} s): {result!r}, not {expected}")
                    if len(failures) >= MAX_FAILURES:
                        break
        if len(failures) >= MAX_FAILURES:
            break
    print(figures(seconds, f"of {SIZE >> 20} MiB"))  # with -s
    assert not failures, "\n".join(failures) + f"\nbackend log ends:\n{backend.output()[-3000:]}"
    assert len(seconds) == CALLS


def test_100_results_of_100_mib_all_arrive_whole(
    lite: embedded.EmbeddedBroker, served: tuple[str, Backend]
) -> None:
    topic, backend = served
    seconds: list[float] = []
    failures: list[str] = []
    for first in range(0, REPLIES, ROUND):
        renew(lite, first)
        with Client(topic, broker_url=lite.broker_url, timeout=120) as client:
            for n in range(SIZE // 8 + first, SIZE // 8 + first + ROUND):  # another size each
                start = time.perf_counter()
                try:
                    result = client.call({"func_name": "count", "n": n})
                    whole = len(result) == n and bool((result == np.arange(n)).all())
                except Exception as exc:
                    result, whole = f"{type(exc).__name__}: {exc}", False
                seconds.append(time.perf_counter() - start)
                if not whole:
                    failures.append(f"call for {n} values ({seconds[-1]:.1f} s): {result!r}")
                    if len(failures) >= MAX_FAILURES:
                        break
                del result
        if len(failures) >= MAX_FAILURES:
            break
    print(figures(seconds, f"returning {SIZE >> 20} MiB"))  # with -s
    assert not failures, "\n".join(failures) + f"\nbackend log ends:\n{backend.output()[-3000:]}"
    assert len(seconds) == REPLIES
