"""1,000 calls while backends are SIGKILLed and the broker restarts: none lost, none twice.

Two backend instances serve a topic on a broker this test owns (pulsar-lite, or Apache Pulsar
standalone: the binary-protocol brokers chosen with ``--brokers``). Four clients
(threads, one call in flight each) make 1,000 calls; on the way one backend is SIGKILLed and
started again, then the other, then the broker is stopped and started again on the same port
and data. A caller retries a call that failed as a user would: after a timeout or a broker
error, at most a few times. Every call must return its own answer exactly once; the backend
function logs every call id it runs, so re-executions (a request redelivered after a kill or
the restart) are counted, printed and bounded.

pulsar-lite can keep the consumer of a backend SIGKILLed while requests stream in, and
refuses a consumer with its id ("Consumer 0 already exists"): the backend started in its
place tries another id within seconds (see ``PulsarTransport``'s ``pulsar_lite``).
:func:`test_a_backend_started_after_a_kill_under_load_serves` checks it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from demessaging import embedded
from demessaging.client import Client
from demessaging.errors import CallTimeoutError, RemoteError, TransportError
from tests.brokers import selected_brokers
from tools import pulsar

from .conftest import Backend

pytestmark = pytest.mark.slow

CALLS = 1000
CLIENTS = 4
#: Tries of one call by its caller (the first and the retries).
TRIES = 4
#: Calls done when each disruption happens: kill a backend, kill the other, restart the broker.
DISRUPTIONS = (150, 400, 650)

WORK = '''
import os
import time
from pathlib import Path


def work(call_id: int, runs: str) -> int:
    """Log the call id in this process's file of runs; an answer of the id's own."""
    with open(Path(runs) / f"{os.getpid()}.log", "a") as out:
        out.write(f"{call_id}\\n")
    time.sleep(0.01)
    return 3 * call_id + 1
'''


class Dropped(logging.Handler):
    """Counts the replies clients dropped because no call waited for them (late or repeats)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("dropping a reply for no pending call"):
            self.count += 1


@pytest.fixture
def dropped() -> Iterator[Dropped]:
    handler = Dropped()
    logger = logging.getLogger("demessaging.client")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


class Owned:
    """A broker of the test's own, which it can restart on the same ports and data."""

    def __init__(self, name: str, folder: Path) -> None:
        self.name, self.folder = name, folder
        self.lite: embedded.EmbeddedBroker | None = None
        self.standalone: pulsar.PulsarStandalone | None = None
        self.port = self.web_port = 0
        self.start()

    @property
    def url(self) -> str:
        if self.lite is not None:
            return self.lite.broker_url
        assert self.standalone is not None
        return self.standalone.broker_url

    @property
    def pid(self) -> int:
        running = self.lite or self.standalone
        assert running is not None
        return running.pid

    def start(self) -> None:
        if self.name == "pulsar-lite":
            self.lite = embedded.start(self.folder, port=self.port)
            self.port = int(self.lite.url.rsplit(":", 1)[1])
        else:
            self.standalone = pulsar.start(self.folder, port=self.port, web_port=self.web_port)
            self.port, self.web_port = self.standalone.port, self.standalone.web_port

    def stop(self) -> None:
        if self.lite is not None:
            self.lite.stop()
        if self.standalone is not None:
            self.standalone.stop()
        self.lite = self.standalone = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def owned(broker_name: str, tmp_path: Path) -> Iterator[Owned]:
    """A broker of the test's own, of the kind ``broker_name`` (binary protocol only)."""
    if broker_name not in ("pulsar-lite", "pulsar"):
        pytest.skip("the broker is restarted by the test: pulsar-lite and Apache Pulsar only")
    running = Owned(broker_name, tmp_path / "broker")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def lite(pytestconfig: pytest.Config, tmp_path: Path) -> Iterator[list[embedded.EmbeddedBroker]]:
    """A pulsar-lite broker of this test's own (the last of the list is the running one)."""
    if "pulsar-lite" not in selected_brokers(pytestconfig):
        pytest.skip("pulsar-lite is not among the chosen brokers")
    running = [embedded.start(tmp_path / "broker")]
    try:
        yield running
    finally:
        running[-1].stop()


def test_a_thousand_calls_survive_backend_kills_and_a_broker_restart(
    owned: Owned,
    topic: str,
    launch: Callable[..., Backend],
    tmp_path: Path,
    dropped: Dropped,
) -> None:
    url = owned.url
    module, runs = tmp_path / f"crashing_{topic[3:]}.py", tmp_path / "runs"
    module.write_text(WORK)
    runs.mkdir()
    serving = [launch(module, topic, url, workers=2) for _ in range(2)]

    results: dict[int, list[int]] = {}
    errors: Counter[str] = Counter()
    lost: dict[int, str] = {}
    done = threading.Semaphore(0)
    lock = threading.Lock()

    def caller(first: int) -> None:
        with Client(topic, broker_url=url, timeout=15, close_timeout=5) as client:
            for call_id in range(first, CALLS, CLIENTS):
                for attempt in range(TRIES):
                    try:
                        value = client.call(
                            {"func_name": "work", "call_id": call_id, "runs": str(runs)}
                        )
                    except (CallTimeoutError, TransportError, RemoteError) as exc:
                        with lock:
                            errors[f"{type(exc).__name__}: {str(exc)[:100]}"] += 1
                        if attempt == TRIES - 1:
                            lost[call_id] = repr(exc)
                        else:
                            time.sleep(1)  # a user waits a moment before trying again
                        continue
                    with lock:
                        results.setdefault(call_id, []).append(value)
                    break
                done.release()

    started = time.monotonic()
    threads = [threading.Thread(target=caller, args=(k,), daemon=True) for k in range(CLIENTS)]
    for thread in threads:
        thread.start()
    finished = 0
    timeline = []

    def wait_for(calls: int) -> None:
        nonlocal finished
        while finished < calls:
            assert done.acquire(timeout=120), f"no call finished in 120 s ({finished} done)"
            finished += 1

    for n, at in enumerate(DISRUPTIONS):
        wait_for(at)
        if n < 2:  # SIGKILL a backend, start another in its place
            victim = serving.pop(0)
            os.kill(victim.pid, signal.SIGKILL)
            victim.process.wait(10)
            serving.append(launch(module, topic, url, workers=2))
            timeline.append(f"{at}: killed backend {victim.pid}, started {serving[-1].pid}")
        else:  # restart the broker on its port, with its data
            owned.restart()
            timeline.append(f"{at}: restarted the broker (pid {owned.pid})")
    wait_for(CALLS)
    for thread in threads:
        thread.join(30)
    elapsed = time.monotonic() - started

    ran = Counter(
        int(line) for log in runs.glob("*.log") for line in log.read_text().split() if line
    )
    reexecuted = sum(ran.values()) - len(ran)
    print(
        f"{CALLS} calls in {elapsed:.1f} s; {'; '.join(timeline)}\n"
        f"lost: {len(lost)}; delivered twice: {sum(len(v) > 1 for v in results.values())};"
        f" failed attempts retried by the caller: {sum(errors.values())} {dict(errors)};"
        f" re-executions: {reexecuted} (of call ids {sorted(k for k, v in ran.items() if v > 1)});"
        f" replies dropped by clients (late or repeated): {dropped.count}"
    )
    assert not lost
    assert all(len(values) == 1 for values in results.values())
    assert results == {i: [3 * i + 1] for i in range(CALLS)}
    assert set(ran) == set(range(CALLS))
    # a kill repeats the calls that backend had taken (2 running, 2 fetched ahead, and those
    # whose reply waited for the broker's receipt) and those whose acknowledgement was still
    # on its way (pulsar-client sends them in groups, every 100 ms); the restart, the same of
    # both backends. Seen: 6 to 14.
    assert reexecuted <= 40
    for backend in serving:
        assert backend.process.poll() is None, backend.output()[-3000:]


QUICK = """
def work(x: int) -> int:
    return x
"""


def test_a_backend_started_after_a_kill_under_load_serves(
    lite: list[embedded.EmbeddedBroker],
    topic: str,
    launch: Callable[..., Backend],
    tmp_path: Path,
) -> None:
    url = lite[0].broker_url
    module = tmp_path / f"quick_{topic[3:]}.py"
    module.write_text(QUICK)
    backend = launch(module, topic, url, workers=2)
    stop = threading.Event()

    def load() -> None:  # requests streaming in, as callers make them
        with Client(topic, broker_url=url, timeout=5, close_timeout=2) as client:
            while not stop.is_set():
                with contextlib.suppress(CallTimeoutError):
                    client.call({"func_name": "work", "x": 1})

    callers = [threading.Thread(target=load, daemon=True) for _ in range(8)]
    for thread in callers:
        thread.start()
    try:
        for _ in range(3):  # (a kill leaves no ghost now and then)
            time.sleep(2)
            os.kill(backend.pid, signal.SIGKILL)
            backend.process.wait(10)
            backend = launch(module, topic, url, workers=2, wait=False)
            deadline = time.monotonic() + 15
            while "serving" not in backend.output():
                assert time.monotonic() < deadline, "the new backend does not serve in 15 s"
                time.sleep(0.1)
    finally:
        stop.set()
        for thread in callers:
            thread.join(15)
