"""CPU time per call of each process, during bursts of concurrent no-op calls.

``python -m benchmarks.cpu [--broker pulsar-lite] [--calls 1000] [--bursts 5] [--workers 8]
[--prefetch 0,16]`` starts a broker, a backend and the raw burst echo, then measures, in the
same run:

- the raw burst (:meth:`benchmarks.raw.RawPeer.burst`): this process, the echo, the broker;
- ``calls`` concurrent ``noop()`` calls (:meth:`benchmarks.calls.DemessagingPeer.concurrent`):
  this process (the client), the backend, the broker. With several ``--prefetch`` values
  (the backend's ``DEMESSAGING_PREFETCH``; 0: one per worker), one backend each, on topics of
  their own, measured in turn burst by burst (``demessaging`` is then the first, the others
  ``prefetch N``): side by side, as a change of 10 % is below the swing of separate runs.

Each figure is the CPU time (user + system, all threads) the process spent during the bursts,
divided by the calls: on a shared machine calls per second swing with the load, CPU time per
call much less. The raw burst is the baseline of the same run.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

from . import brokers
from .calls import DemessagingPeer
from .procs import backend, progress
from .raw import RawPeer

__all__ = ["cpu_seconds", "main", "per_call"]

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | str = "self") -> float:
    """User and system CPU seconds of process ``pid`` so far (all its threads)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def per_call(pids: dict[str, int | str], run: Callable[[], int]) -> dict[str, float]:
    """Microseconds of CPU per call of each process while ``run()`` makes its calls; calls/s."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    start = time.perf_counter()
    total = run()
    elapsed = time.perf_counter() - start
    found = {name: (cpu_seconds(pid) - before[name]) * 1e6 / total for name, pid in pids.items()}
    found["calls_per_s"] = total / elapsed
    return found


def measure(
    name: str, calls: int, bursts: int, workers: int, folder: Path, prefetch: Sequence[int] = (0,)
) -> dict[str, object]:
    """The figures of one broker: ``raw`` and ``demessaging``, each per process."""
    found: dict[str, object] = {"broker": name, "calls": calls, "bursts": bursts}
    with brokers.running(name, folder / "broker") as broker:
        with RawPeer(broker.raw_url, folder) as raw:
            echo = raw._burst_echo
            assert echo is not None
            raw.burst(calls)  # warm-up
            pids: dict[str, int | str] = {"client": "self", "echo": echo.pid, "broker": broker.pid}
            progress(f"{name}: raw burst of {calls}, {bursts} times")

            def bursts_of_raw() -> int:
                for _ in range(bursts):
                    raw.burst(calls)
                return bursts * calls

            found["raw"] = per_call(pids, bursts_of_raw)
        with ExitStack() as stack:
            peers: list[tuple[str, DemessagingPeer, dict[str, int | str]]] = []
            for n, depth in enumerate(prefetch):
                env = {"DEMESSAGING_PREFETCH": str(depth)}
                server = backend(f"backend-{n}", broker.url, f"bench-cpu-{n}", folder, workers, env)
                stack.callback(server.stop)
                client = stack.enter_context(DemessagingPeer(broker.url, f"bench-cpu-{n}"))
                client.concurrent(calls, 1)  # warm-up
                label = "demessaging" if n == 0 else f"prefetch {depth}"
                peers.append((label, client, {"client": "self", "backend": server.pid}))
            progress(f"{name}: {calls} concurrent calls, {bursts} times")
            means: dict[str, dict[str, float]] = {label: {} for label, _, _ in peers}
            for _ in range(bursts):
                for label, client, pids in peers:
                    one = per_call(
                        pids | {"broker": broker.pid}, functools.partial(_burst, client, calls)
                    )
                    for key, value in one.items():
                        means[label][key] = means[label].get(key, 0.0) + value / bursts
            found.update(means)
    return found


def _burst(client: DemessagingPeer, calls: int) -> int:
    """One burst of ``calls`` concurrent calls (and the one call before it); the calls made."""
    client.concurrent(calls, 0)
    return calls + 1


def main(argv: list[str] | None = None) -> int:
    """Measure and print the figures as JSON, with the load average before and after."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cpu", description=__doc__)
    parser.add_argument("--broker", default="pulsar-lite", choices=brokers.KNOWN)
    parser.add_argument("--calls", type=int, default=1000, help="calls at once per burst")
    parser.add_argument("--bursts", type=int, default=5, help="bursts measured")
    parser.add_argument("--workers", type=int, default=8, help="the backend's workers")
    parser.add_argument(
        "--prefetch", default="0", help="the backends' prefetch, comma-separated (0: workers)"
    )
    args = parser.parse_args(argv)
    try:
        prefetch = [int(n) for n in args.prefetch.split(",")]
    except ValueError:
        parser.error("--prefetch takes whole numbers, comma-separated")
    if args.calls < 1 or args.bursts < 1 or args.workers < 1 or min(prefetch) < 0:
        parser.error("--calls, --bursts and --workers must be at least 1, --prefetch 0")
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-cpu-") as folder:
        found = measure(args.broker, args.calls, args.bursts, args.workers, Path(folder), prefetch)
    found["load_before"], found["load_after"] = load, os.getloadavg()[0]
    for side in [key for key, value in found.items() if isinstance(value, dict)]:
        figures = found[side]
        assert isinstance(figures, dict)
        text = ", ".join(f"{k} {v:.0f}" for k, v in figures.items())
        print(f"{side}: us of CPU per call: {text}", file=sys.stderr)
    print(json.dumps(found, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
