"""benchmarks/observed.py: what ``--observe`` switches on in the backend it measures."""

from __future__ import annotations

import argparse

import pytest

from benchmarks import observed


def test_observe_takes_known_kinds_only() -> None:
    assert observed.chosen("metrics") == ("metrics",)
    assert observed.chosen(" metrics , tracing,metrics") == ("metrics", "tracing")
    for bad in ("", ",", "metrics,logs"):
        with pytest.raises(
            argparse.ArgumentTypeError, match="comma-separated list of metrics, tracing"
        ):
            observed.chosen(bad)


def test_the_backend_that_is_off_has_everything_off() -> None:
    off = observed.backend_environment(())
    assert off == {"DEMESSAGING_METRICS_PORT": "0", "OTEL_SDK_DISABLED": "true"}
    metrics = observed.backend_environment(["metrics"], 9464)
    assert metrics == {"DEMESSAGING_METRICS_PORT": "9464", "OTEL_SDK_DISABLED": "true"}


def test_tracing_is_the_standard_otel_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_TRACES_EXPORTER", raising=False)
    env = observed.backend_environment(["tracing"], 9464)
    assert env["DEMESSAGING_METRICS_PORT"] == "0"
    assert env["OTEL_SDK_DISABLED"] == "false"
    assert env["OTEL_TRACES_EXPORTER"] == "none"  # spans made, not sent
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "otlp")
    assert observed.backend_environment(["tracing"])["OTEL_TRACES_EXPORTER"] == "otlp"


def test_the_rows_compare_on_with_off() -> None:
    found = {"kinds": ["metrics"], "off": [0.001] * 50 + [0.003], "on": [0.002] * 50 + [0.004]}
    (median, p99) = observed.figures(found)
    assert median[0] == "no-op, metrics on/off median (ms)"
    assert median[1:] == (pytest.approx(2.0), pytest.approx(1.0), "observed_median")
    assert p99[3] == "observed_p99"
    assert p99[1] > p99[2]
