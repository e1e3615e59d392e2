"""``python -m benchmarks``: demessaging against raw pulsar-client, on each broker.

Prints progress on stderr, the table on stdout, and writes every figure as JSON. See
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import traceback
import uuid
from contextlib import ExitStack, suppress
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from demessaging.errors import DemessagingError

from . import brokers, dasf, memory, observed
from .calls import CALL_TIMEOUT, DemessagingPeer, array_of
from .procs import ROOT, BenchmarkError, backend, progress
from .raw import BURST_DEPTH, RawPeer, StallError

MIB = 1024 * 1024
DEFAULT_OUTPUT = ROOT / "benchmarks" / "results" / "latest.json"
#: How often the raw baselines are tried on a broker that stalls.
RAW_ATTEMPTS = 3


@dataclass(frozen=True)
class Plan:
    """How much to measure.

    Attributes
    ----------
    pings, warmup
        Round trips measured, and made before.
    calls
        Calls per calls-per-second figure.
    repetitions
        Array size in MiB -> calls whose median is taken.
    """

    pings: int
    warmup: int
    calls: int
    repetitions: dict[int, int] = field(default_factory=dict)

    @property
    def largest(self) -> int:
        """The largest array size, in MiB: the one memory is measured on."""
        return max(self.repetitions)


FULL = Plan(pings=300, warmup=30, calls=1000, repetitions={1: 5, 10: 5, 100: 3})
QUICK = Plan(pings=100, warmup=10, calls=500, repetitions={1: 3, 10: 3})
#: Bursts of concurrent calls (and raw bursts) whose median is taken, after one to warm up.
BURSTS = 3
#: Backend processes the calls-per-second rows are measured with, one more at a time.
BACKENDS = (1, 2, 4)
#: Targets by broker and measure (ratio to raw, same run); ``*`` is any broker.
TARGETS = {
    ("pulsar-lite", "noop_median"): "<= 1.5",
    ("pulsar", "noop_median"): "<= 1.1",
    ("*", "concurrent_1"): ">= 0.4",
    ("*", "concurrent_2"): ">= 0.6",
    ("*", "array_10"): ">= 0.7",
    ("*", "array_100"): ">= 0.8",
    ("*", "client_memory"): "<= 1.5x",
    ("*", "backend_memory"): "<= 1.2x",
    ("*", "observed_median"): observed.TARGET,
}


def target(broker: str, measure: str) -> str:
    """The target of ``measure`` on ``broker``, or ``""``."""
    return TARGETS.get((broker, measure), TARGETS.get(("*", measure), ""))


@dataclass
class Row:
    """One line of the table: a figure of demessaging, its raw baseline and their ratio."""

    broker: str
    measure: str
    demessaging: float
    raw: float | None = None
    ratio: float | None = None
    target: str = ""
    unit: str = ""

    @property
    def met(self) -> bool | None:
        """Whether the ratio meets the target (None without one)."""
        if not self.target or self.ratio is None:
            return None
        op, bound = self.target.split()
        limit = float(bound.rstrip("x"))
        return self.ratio <= limit if op == "<=" else self.ratio >= limit


def summary(seconds: list[float]) -> dict[str, float]:
    """Median, p99, min, max and mean of durations, in milliseconds."""
    ms = np.array(seconds) * 1e3
    return {
        "n": len(ms),
        "median_ms": float(np.median(ms)),
        "p99_ms": float(np.percentile(ms, 99)),
        "min_ms": float(ms.min()),
        "max_ms": float(ms.max()),
        "mean_ms": float(ms.mean()),
    }


def measure_raw(
    broker: brokers.Broker, plan: Plan, folder: Path, arrays: dict[int, np.ndarray]
) -> dict[str, Any]:
    """The raw baselines; again with new topics and a new echo if the broker stalls.

    Raises
    ------
    BenchmarkError
        If the broker stalls :data:`RAW_ATTEMPTS` times.
    """
    stalls: list[str] = []
    while len(stalls) < RAW_ATTEMPTS:
        raw: dict[str, Any] = {"stalls": stalls}
        try:
            with RawPeer(broker.raw_url, folder) as peer:
                progress(f"{broker.name}: raw ping-pong, {plan.pings} round trips")
                raw["ping"] = summary(peer.ping_pong(plan.pings, plan.warmup))
                progress(f"{broker.name}: raw burst of {plan.calls} messages")
                peer.burst(plan.calls)  # warm-up
                raw["burst_seconds"] = [peer.burst(plan.calls) for _ in range(BURSTS)]
                for mib, reps in plan.repetitions.items():
                    progress(f"{broker.name}: raw transfer of {mib} MiB, {reps} times")
                    payload = arrays[mib].tobytes()
                    peer.transfer(payload[:MIB])  # warm-up
                    raw[f"transfer_{mib}mib"] = [peer.transfer(payload) for _ in range(reps)]
            return raw
        except StallError as exc:
            stalls.append(str(exc))
            progress(f"{broker.name}: {stalls[-1]}; starting over with new topics")
    raise BenchmarkError(f"{broker.name} stalled {RAW_ATTEMPTS} times: {stalls}")


def measure_broker(
    broker: brokers.Broker, plan: Plan, folder: Path, observe: tuple[str, ...] = ("metrics",)
) -> dict[str, Any]:
    """Every measurement on one broker; raw first, then demessaging, then memory."""
    found: dict[str, Any] = {"demessaging": {}}
    dm = found["demessaging"]
    arrays = {mib: array_of(mib * MIB) for mib in plan.repetitions}
    found["raw"] = measure_raw(broker, plan, folder, arrays)
    topic = f"bench-{uuid.uuid4().hex[:10]}"
    started = 1
    with ExitStack() as stack:
        stack.callback(backend("backend-1", broker.url, topic, folder).stop)
        client = stack.enter_context(DemessagingPeer(broker.url, topic))
        progress(f"{broker.name}: demessaging ping, {plan.pings} round trips")
        dm["ping"] = summary(client.ping(plan.pings, plan.warmup))
        progress(f"{broker.name}: demessaging noop() calls, {plan.pings} round trips")
        dm["noop"] = summary(client.noop(plan.pings, plan.warmup))
        dm["encoding"] = client.encoding  # known once a call was made
        for backends in BACKENDS:
            while started < backends:
                started += 1
                stack.callback(backend(f"backend-{started}", broker.url, topic, folder).stop)
            progress(f"{broker.name}: {plan.calls} calls in a row, {backends} backend(s)")
            dm[f"sequential_{backends}_seconds"] = client.sequential(plan.calls)
            progress(f"{broker.name}: {plan.calls} calls at once, {backends} backend(s)")
            dm[f"concurrent_{backends}_seconds"] = client.concurrent(plan.calls, BURSTS)
            if backends == 1:
                client.transfer(arrays[1][: MIB // 8])  # warm-up
                for mib, reps in plan.repetitions.items():
                    progress(f"{broker.name}: total() of {mib} MiB, {reps} times")
                    dm[f"transfer_{mib}mib"] = [client.transfer(arrays[mib]) for _ in range(reps)]
    del arrays
    found["observed"] = observed.measure(broker.url, folder, plan.pings, plan.warmup, observe)
    progress(f"{broker.name}: peak memory of a fresh backend and client, {plan.largest} MiB")
    found["memory"] = memory.measure(broker.url, folder, plan.largest * MIB, CALL_TIMEOUT)
    return found


def rows_of(name: str, plan: Plan, found: dict[str, Any]) -> list[Row]:
    """The table's rows for one broker's measurements."""
    raw, dm = found["raw"], found["demessaging"]
    rows = []
    for kind, what in (("noop", "no-op call"), ("ping", "ping")):
        for key, label in (("median_ms", "median"), ("p99_ms", "p99")):
            ours, theirs = dm[kind][key], raw["ping"][key]
            goal = target(name, f"{kind}_{label}")
            text = f"{what} round trip {label} (ms)"
            rows.append(Row(name, text, ours, theirs, ours / theirs, goal, "ms"))
    raw_sequential = 1e3 / raw["ping"]["mean_ms"]
    raw_burst = plan.calls / float(statistics.median(raw["burst_seconds"]))
    for backends in BACKENDS:
        for kind, baseline in (("sequential", raw_sequential), ("concurrent", raw_burst)):
            seconds = dm[f"{kind}_{backends}_seconds"]  # concurrent: one per burst
            rate = plan.calls / float(statistics.median(np.atleast_1d(seconds)))
            label = f"{kind} calls/s, {backends} backend{'s' if backends > 1 else ''}"
            goal = target(name, f"{kind}_{backends}")
            rows.append(Row(name, label, rate, baseline, rate / baseline, goal, "1/s"))
    for mib in plan.repetitions:
        ours = mib / statistics.median(dm[f"transfer_{mib}mib"])
        theirs = mib / statistics.median(raw[f"transfer_{mib}mib"])
        label = f"array {mib} MiB (MiB/s)"
        goal = target(name, f"array_{mib}")
        rows.append(Row(name, label, ours, theirs, ours / theirs, goal, "MiB/s"))
    for label, ours, theirs, key in observed.figures(found["observed"]):
        rows.append(Row(name, label, ours, theirs, ours / theirs, target(name, key), "ms"))
    mem = found["memory"]
    payload = mem["payload"] / MIB
    for side in ("client", "backend"):
        peak, baseline = mem[side]["peak"] / MIB, mem[side]["baseline"] / MIB
        label = f"{side} peak, {payload:.0f} MiB call (MiB)"
        rows.append(Row(name, label, peak, None, peak / payload, "", "MiB"))
        label = f"{side} peak above idle (MiB)"
        above = peak - baseline
        goal = target(name, f"{side}_memory")
        rows.append(Row(name, label, above, None, above / payload, goal, "MiB"))
    return rows


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.2f}"


def table(rows: list[Row]) -> str:
    """The rows as a text table."""
    lines = [
        f"{'broker':<12} {'measure':<34} {'demessaging':>11} {'raw':>9} {'ratio':>7}  target",
    ]
    for row in rows:
        mark = {True: "  ok", False: "  MISSED", None: ""}[row.met]
        lines.append(
            f"{row.broker:<12} {row.measure:<34} {_number(row.demessaging):>11} "
            f"{_number(row.raw):>9} {_number(row.ratio):>7}  {row.target}{mark}".rstrip()
        )
    return "\n".join(lines)


def revision() -> dict[str, Any]:
    """The git commit measured, and whether ``demessaging/`` differs from it."""
    try:
        git = ["git", "-C", str(ROOT)]
        commit = subprocess.run(
            [*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        changes = subprocess.run(
            [*git, "status", "--porcelain", "--", "demessaging"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "modified": None}
    return {"commit": commit, "modified": bool(changes)}


def machine() -> dict[str, Any]:
    """What the benchmarks ran on."""
    cpu = ""
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if "model name" in line), "")
    except OSError:
        pass
    memory_total = 0
    with suppress(ValueError, OSError):
        memory_total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "memory_gib": round(memory_total / 2**30, 1),
        "load_average": [round(load, 2) for load in os.getloadavg()],
        "python": platform.python_version(),
        "demessaging": metadata.version("demessaging"),
        "pulsar-client": metadata.version("pulsar-client"),
        "pulsar-lite": metadata.version("pulsar-lite"),
        "numpy": np.__version__,
    }


def _terminate(signum: int, frame: object) -> None:
    progress("terminated; stopping brokers and backends")
    raise SystemExit(128 + signum)  # runs the finally blocks that stop brokers and backends


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure demessaging against raw pulsar-client on pulsar-lite and Pulsar.",
    )
    parser.add_argument(
        "--brokers",
        default=",".join(brokers.KNOWN),
        help="comma-separated brokers, of: %(default)s (default: both)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="fewer repetitions; arrays of 1 and 10 MiB only"
    )
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results (%(default)s)"
    )
    parser.add_argument("--dasf", action="store_true", help="against DASF 0.6.4 instead")
    parser.add_argument(
        "--observe",
        type=observed.chosen,
        default=os.environ.get(observed.VARIABLE, "metrics"),
        help=f"what the no-op on/off row switches on, of {','.join(observed.KINDS)} "
        f"(${observed.VARIABLE}; default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.dasf:  # docs/benchmarks.md, "Against DASF"
        output = None if args.output == DEFAULT_OUTPUT else args.output
        return dasf.run(args.quick, output, {"machine": machine(), "revision": revision()})
    names = [name.strip() for name in args.brokers.split(",") if name.strip()]
    unknown = sorted(set(names) - set(brokers.KNOWN))
    if unknown or not names:
        parser.error(f"unknown brokers {unknown}; known: {', '.join(brokers.KNOWN)}")
    plan = QUICK if args.quick else FULL
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in background
    started = dt.datetime.now(dt.timezone.utc)
    results: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "plan": {
            "pings": plan.pings,
            "warmup": plan.warmup,
            "calls": plan.calls,
            "repetitions": plan.repetitions,
            "backends": BACKENDS,
            "bursts": BURSTS,
            "raw_burst_depth": BURST_DEPTH,
            "observe": args.observe,
        },
        "machine": machine(),
        "revision": revision(),
        "brokers": {},
        "rows": [],
    }
    rows: list[Row] = []
    measured: list[dict[str, Any]] = []
    failed = False
    try:
        with tempfile.TemporaryDirectory(prefix="demessaging-bench-") as tmp:
            for name in names:
                folder = Path(tmp) / name
                try:
                    with brokers.running(name, folder / "broker") as broker:
                        found = measure_broker(broker, plan, folder, args.observe)
                except Exception as exc:  # report it, and go on with the next broker
                    if not isinstance(exc, BenchmarkError | DemessagingError):
                        traceback.print_exc()
                    progress(f"{name}: failed: {type(exc).__name__}: {exc}")
                    results["brokers"][name] = {"error": str(exc)}
                    failed = True
                    continue
                results["brokers"][name] = found
                measured.append(found)
                rows += rows_of(name, plan, found)
    except KeyboardInterrupt:
        progress("interrupted; brokers and backends are stopped")
        return 130
    elapsed = (dt.datetime.now(dt.timezone.utc) - started).total_seconds()
    results["seconds"] = round(elapsed, 1)
    results["rows"] = [vars(row) | {"met": row.met} for row in rows]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print(table(rows))
    if measured:
        encodings = sorted({found["demessaging"]["encoding"] for found in measured})
        print(f"demessaging encoding: {', '.join(encodings)}. Memory rows: ratio = multiple of")
        print("the payload; the target is on the peak above idle. Raw burst: prefetch and")
        print(f"messages on their way {BURST_DEPTH} on both sides, one echo process.")
    for name, found in results["brokers"].items():
        if found.get("raw", {}).get("stalls"):
            count = len(found["raw"]["stalls"])
            print(f"{name} stalled {count} time(s) in the raw baselines, which started over.")
    progress(f"done in {elapsed:.0f} s; results in {args.output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
