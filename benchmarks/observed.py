"""What observability costs: the no-op round trip with it on and off, in the same run.

Two backends of ``benchmarks/module.py`` on two topics of the same broker, one with
everything off, one with what ``--observe`` (``DEMESSAGING_BENCH_OBSERVE``) switches on:

``metrics``
    ``DEMESSAGING_METRICS_PORT``: the backend counts every request for Prometheus
    (docs/deploying.md, "Metrics"); the benchmark scrapes it once at the end to check that it
    counted the calls it measured.
``tracing``
    The standard ``OTEL_*`` environment, with which ``demessaging listen`` configures the
    OpenTelemetry SDK when it is installed: spans are made, and dropped unless
    ``OTEL_TRACES_EXPORTER`` (``none`` here by default) sends them somewhere. The backend
    that is off gets ``OTEL_SDK_DISABLED=true``. The client of this process is not traced.

The calls alternate between the two in rounds of :data:`ROUND` (off-on, then on-off), so that
a machine that gets busier or quieter meanwhile weighs on both alike. The row's baseline (the
``raw`` column) is the backend with everything off; the target is :data:`TARGET`.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import urllib.request
import uuid
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from .calls import DemessagingPeer
from .procs import BenchmarkError, backend, progress

__all__ = ["KINDS", "ROUND", "TARGET", "backend_environment", "chosen", "figures", "measure"]

#: What ``--observe`` may switch on.
KINDS = ("metrics", "tracing")
#: The environment variable ``--observe`` defaults to.
VARIABLE = "DEMESSAGING_BENCH_OBSERVE"
#: Calls to one backend before the other's turn: short rounds, as the load of a machine drifts.
ROUND = 10
#: At most this much slower with observability on (median round trip, ratio to off).
TARGET = "<= 1.1"


def chosen(text: str) -> tuple[str, ...]:
    """The kinds of ``text`` (``"metrics,tracing"``), checked.

    Raises
    ------
    argparse.ArgumentTypeError
        If it names anything else, or nothing (``--observe`` says so).
    """
    kinds = tuple(dict.fromkeys(word.strip() for word in text.split(",") if word.strip()))
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(
            f"--observe takes a comma-separated list of {', '.join(KINDS)}: {text!r}"
        )
    return kinds


def backend_environment(kinds: Iterable[str], metrics_port: int = 0) -> dict[str, str]:
    """The environment that switches ``kinds`` on in a backend, and everything else off."""
    kinds = set(kinds)
    env = {"DEMESSAGING_METRICS_PORT": "0", "OTEL_SDK_DISABLED": "true"}
    if "metrics" in kinds:
        env["DEMESSAGING_METRICS_PORT"] = str(metrics_port)
    if "tracing" in kinds:
        env |= {
            "OTEL_SDK_DISABLED": "false",
            "OTEL_SERVICE_NAME": os.environ.get("OTEL_SERVICE_NAME", "demessaging-benchmark"),
            "OTEL_TRACES_EXPORTER": os.environ.get("OTEL_TRACES_EXPORTER", "none"),
            "OTEL_METRICS_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
        }
    return env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _counted(port: int) -> float:
    """The ``noop`` calls the backend's ``/metrics`` on ``port`` counted as ``ok``."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "demessaging_requests_total"
        and sample.labels == {"member": "noop", "status": "ok"}
    )


def measure(
    url: str, folder: Path, count: int, warmup: int, kinds: Sequence[str]
) -> dict[str, Any]:
    """``count`` no-op round trips (seconds) with ``kinds`` off and on, after ``warmup`` each.

    Raises
    ------
    BenchmarkError
        If the backend with metrics on did not count the calls made to it.
    """
    port = _free_port()
    rounds = max(2, count // ROUND)
    found: dict[str, Any] = {"kinds": list(kinds), "off": [], "on": []}
    with ExitStack() as stack:
        peers = {}
        for side, env in (
            ("off", backend_environment(())),
            ("on", backend_environment(kinds, port)),
        ):
            topic = f"bench-{side}-{uuid.uuid4().hex[:10]}"
            stack.callback(backend(f"backend-observe-{side}", url, topic, folder, env=env).stop)
            peers[side] = stack.enter_context(DemessagingPeer(url, topic))
            peers[side].noop(0, warmup)
        progress(f"no-op calls, {', '.join(kinds)} off and on: {rounds} x {ROUND} of each")
        for n in range(rounds):
            for side in ("off", "on") if n % 2 == 0 else ("on", "off"):
                found[side] += peers[side].noop(ROUND, 0)
        if "metrics" in kinds:
            made = warmup + rounds * ROUND
            counted = _counted(port)
            if counted != made:
                raise BenchmarkError(f"the backend with metrics counted {counted} calls of {made}")
            found["counted"] = counted
    return found


def figures(found: Mapping[str, Any]) -> list[tuple[str, float, float, str]]:
    """Label, figure with observability on, the same off (ms), and the measure's target key."""
    kinds = "+".join(found["kinds"])
    rows = []
    for what, key in (("median", "observed_median"), ("p99", "observed_p99")):
        on, off = (_ms(found[side], what) for side in ("on", "off"))
        rows.append((f"no-op, {kinds} on/off {what} (ms)", on, off, key))
    return rows


def _ms(seconds: list[float], what: str) -> float:
    if what == "median":
        return statistics.median(seconds) * 1e3
    return statistics.quantiles(seconds, n=100)[98] * 1e3
