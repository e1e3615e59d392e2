"""``python -m benchmarks --dasf``: demessaging against DASF's demessaging 0.6.4, same run.

One dasf-broker-django (:mod:`tools.dasf_broker`), with its stock permissions and its daphne
server's frame limit raised to :data:`FRAME`, serves both sides. One module (:data:`MODULE`,
written as DASF users write it, with its codec in a file next to it) is started as DASF users
start it, ``python module.py -t TOPIC --websocket-url URL listen``: once under demessaging
0.6.4, called by the client 0.6.4 generates for it, and once under demessaging, called by
:class:`demessaging.client.Client` (``DEMESSAGING_FRAME_SIZE`` = :data:`FRAME` for both).

Measured: the median (and p99) round trip of ``noop()``, and ``total(a)`` of a 10 MiB float64
array. demessaging 0.6.4 has no numpy type, so its client sends the array through the module's
own codec (``configure(serializers=..., validators=...)``: base64 of the ``.npy`` bytes, in a
JSON request: about 14 MB, then base64 again on the WebSocket: about 18.7 MB a frame).
demessaging's client sends the array itself (msgpack, the raw buffer: 14 MB a frame), and the
module's validator gets it as it is.

The 0.6.4 environment is the integration tests' (``<cache>/dasf-0.6.4-env``), made if missing.
"""

from __future__ import annotations

import functools
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import venv
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from demessaging._local import locked
from demessaging.client import Client
from demessaging.config import Settings
from demessaging.message import Prop
from tools import dasf_broker
from tools.pulsar import cache_dir

from .procs import ROOT, BenchmarkError, Child, environment, progress

__all__ = ["FRAME", "MODULE", "run"]

MIB = 1024 * 1024
#: The broker's, the backends' and the clients' frame limit: 24 MiB, room for 0.6.4's request.
FRAME = 24 * MIB
ARRAY_MIB = 10
OLD = "demessaging[backend]==0.6.4"
OLD_EXTRAS = ("numpy",)
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "dasf.json"

CODEC = '''
"""The module's array codec: base64 of the array's .npy bytes."""

import base64
import io

import numpy as np


def encode_array(value):
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(value), allow_pickle=False)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def validate_array(cls, value):
    if isinstance(value, np.ndarray):
        return value
    return np.load(io.BytesIO(base64.b64decode(value)), allow_pickle=False)
'''

MODULE = '''
"""The module of the DASF benchmark: a no-op, and the sum of an array."""

import numpy as np
from dasf_codec import encode_array, validate_array

from demessaging import configure, main

__all__ = ["noop", "total"]


def noop() -> None:
    """Do nothing."""


@configure(serializers={"a": encode_array}, validators={"a": [validate_array]})
def total(a: np.ndarray) -> float:
    """The sum of an array.

    Parameters
    ----------
    a
        The array.
    """
    return float(np.sum(a))


if __name__ == "__main__":
    main()
'''

#: What runs under 0.6.4 with its generated client: the same measurements as :func:`_ours`.
OLD_CALLS = """
import json, sys, time

import numpy

import client

pings, warmup, repetitions, size = map(int, sys.argv[1:5])
for _ in range(warmup):
    client.noop()
noop = []
for _ in range(pings):
    start = time.perf_counter()
    client.noop()
    noop.append(time.perf_counter() - start)
array = numpy.random.default_rng(16).random(size // 8)
client.total(array[:1024])
calls = []
for _ in range(repetitions):
    start = time.perf_counter()
    result = client.total(array)
    calls.append(time.perf_counter() - start)
    assert abs(result - float(array.sum())) < 1e-6 * abs(result), result
print(json.dumps({"noop": noop, "array": calls}))
"""


def old_python() -> Path:
    """The Python of an environment with demessaging 0.6.4 and numpy (made once)."""
    env = cache_dir() / "dasf-0.6.4-env"
    env.parent.mkdir(parents=True, exist_ok=True)
    wanted = (OLD, *OLD_EXTRAS)
    marker = env / "installed"
    with locked(env.parent / "dasf-0.6.4-install.lock"):
        installed = marker.read_text().split() if marker.exists() else []
        if not set(wanted) <= set(installed):  # the tests may have installed more
            progress(f"installing {' '.join(wanted)} into {env}")
            if not marker.exists():
                venv.EnvBuilder(with_pip=True, clear=True).create(env)
            subprocess.run(
                [str(env / "bin" / "python"), "-m", "pip", "install", "--quiet", *wanted],
                check=True,
                timeout=600,
                env=_without_path(),
            )
            marker.write_text(" ".join(dict.fromkeys((*installed, *wanted))))
    return env / "bin" / "python"


def _without_path() -> dict[str, str]:
    """The environment of 0.6.4's processes: no ``PYTHONPATH``, which would hide its own."""
    return {k: v for k, v in environment().items() if k != "PYTHONPATH"}


def _start(name: str, python: Path, folder: Path, args: list[str], env: dict[str, str]) -> Child:
    log = folder / f"{name}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(python), *args],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Child(name, process, log)


def _answering(client: Client, backend: Child, seconds: float = 120) -> None:
    """Ping until the backend answers (DASF backends subscribe in the background)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            client.ping(timeout=2)
            return
        except Exception as exc:
            if backend.process.poll() is not None or time.monotonic() > deadline:
                raise BenchmarkError(
                    f"{backend.name} never answered ({exc}); its log ends:\n"
                    f"{backend.output()[-2000:]}"
                ) from exc


def _ours(client: Client, pings: int, warmup: int, repetitions: int) -> dict[str, list[float]]:
    """Our client: ``noop()`` round trips, then ``total()`` of the array."""
    for _ in range(warmup):
        client.call({"func_name": "noop"})
    noop = []
    for _ in range(pings):
        start = time.perf_counter()
        client.call({"func_name": "noop"})
        noop.append(time.perf_counter() - start)
    array = np.random.default_rng(16).random(ARRAY_MIB * MIB // 8)
    client.call({"func_name": "total", "a": array[:1024]})
    calls = []
    for _ in range(repetitions):
        start = time.perf_counter()
        result = client.call({"func_name": "total", "a": array}, timeout=300)
        calls.append(time.perf_counter() - start)
        if abs(result - float(array.sum())) > 1e-6 * abs(result):
            raise BenchmarkError(f"total() answered {result}, not {array.sum()}")
    return {"noop": noop, "array": calls}


def _side(
    which: str, broker: dasf_broker.DasfBroker, folder: Path, old: Path, plan: tuple[int, ...]
) -> dict[str, Any]:
    """Serve the module and call it; the times.

    ``which``: ``dasf`` (0.6.4's backend and client), ``demessaging`` (demessaging's), or
    ``mixed`` (demessaging's backend, 0.6.4's client: where the time of each side goes).
    """
    topic = f"bench-{which}-{uuid.uuid4().hex[:8]}"
    broker.create_topic(topic, f"{topic}_control")
    frame = {"DEMESSAGING_FRAME_SIZE": str(FRAME)}
    options = ["module.py", "-t", topic, "--websocket-url", broker.url]
    settings = Settings.from_env(environ=frame)
    with ExitStack() as stack:
        if which == "dasf":
            backend = _start("dasf-backend", old, folder, [*options, "listen"], _without_path())
        else:
            env = environment(frame)
            backend = _start("backend", Path(sys.executable), folder, [*options, "listen"], env)
        stack.callback(backend.stop)
        client = stack.enter_context(Client(topic, broker_url=broker.url, settings=settings))
        _answering(client, backend)
        pings, warmup, repetitions = plan
        progress(f"{which}: {pings} noop() round trips, {repetitions} total() of {ARRAY_MIB} MiB")
        if which == "demessaging":
            found = _ours(client, pings, warmup, repetitions)
            offered = (client._pong or {}).get(Prop.CONTENT_TYPES, "")  # asked before a call
            auto = "msgpack" if "msgpack" in offered else "json"
            encoding = auto if client.settings.encoding == "auto" else client.settings.encoding
            return found | {"encoding": encoding}
        generated = subprocess.run(
            [str(old), *options, "generate"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=300,
            env=_without_path(),
        )
        if generated.returncode != 0:
            raise BenchmarkError(f"0.6.4 could not generate a client: {generated.stderr[-2000:]}")
        # 0.6.4 writes numpy.ndarray annotations without importing numpy; its users add it
        (folder / "client.py").write_text("import numpy\n" + generated.stdout)
        (folder / "calls.py").write_text(OLD_CALLS)
        args = ["calls.py", *map(str, (pings, warmup, repetitions, ARRAY_MIB * MIB))]
        ran = subprocess.run(
            [str(old), *args],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=1800,
            env=_without_path(),
        )
        if ran.returncode != 0:
            raise BenchmarkError(f"0.6.4's client failed: {ran.stderr[-2000:]}")
        theirs: dict[str, Any] = json.loads(ran.stdout.strip().splitlines()[-1])
        return theirs | {"encoding": "json, the array in the module's codec (base64 .npy)"}


def rows(found: dict[str, Any]) -> list[tuple[str, float, float, float]]:
    """(measure, demessaging, DASF 0.6.4, 0.6.4's client with demessaging's backend), in ms."""
    sides = [found["demessaging"], found["dasf"], found["mixed"]]

    def each(name: str, key: str, figure: Any) -> tuple[str, float, float, float]:
        ours, theirs, mixed = (float(figure(side[key])) * 1e3 for side in sides)
        return name, ours, theirs, mixed

    median, p99 = statistics.median, functools.partial(np.percentile, q=99)
    return [
        each("no-op round trip median (ms)", "noop", median),
        each("no-op round trip p99 (ms)", "noop", p99),
        each(f"{ARRAY_MIB} MiB array call median (ms)", "array", median),
    ]


def table(found: dict[str, Any]) -> str:
    """The rows as a text table; ratio = demessaging / DASF 0.6.4 (below 1: demessaging faster).

    The last column is 0.6.4's client calling demessaging's backend.
    """
    head = f"{'measure':<34} {'demessaging':>11} {'DASF 0.6.4':>10} {'ratio':>7} {'mixed':>9}"
    lines = [head]
    for measure, ours, theirs, mixed in rows(found):
        lines.append(
            f"{measure:<34} {ours:>11.2f} {theirs:>10.2f} {ours / theirs:>7.2f} {mixed:>9.2f}"
        )
    return "\n".join(lines)


def run(quick: bool, output: Path | None, context: dict[str, Any]) -> int:
    """Measure both sides on one dasf-broker-django; print the table; write the JSON."""
    plan = (50, 5, 3) if quick else (200, 20, 5)
    output = output or DEFAULT_OUTPUT
    old = old_python()
    pings, warmup, repetitions = plan
    found: dict[str, Any] = {"plan": {"pings": pings, "warmup": warmup, "repetitions": repetitions}}
    found |= context | {"frame": FRAME, "array_mib": ARRAY_MIB}
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-dasf-")))
        broker = stack.enter_context(dasf_broker.start(folder / "broker", frame_size=FRAME))
        progress(f"dasf-broker-django serves at {broker.url}, frames up to {FRAME} bytes")
        for which in ("dasf", "demessaging", "mixed"):
            side = folder / which
            side.mkdir()
            (side / "module.py").write_text(MODULE)
            (side / "dasf_codec.py").write_text(CODEC)
            found[which] = _side(which, broker, side, old, plan)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(found, indent=2) + "\n")
    print(table(found))
    print("ratio = demessaging / DASF 0.6.4: below 1, demessaging is faster. mixed: the client")
    print("0.6.4 generates, calling demessaging's backend.")
    print(f"requests: demessaging {found['demessaging']['encoding']}; DASF 0.6.4 ", end="")
    print(f"{found['dasf']['encoding']}. Frames up to {FRAME} bytes.")
    progress(f"results in {output}")
    return 0
