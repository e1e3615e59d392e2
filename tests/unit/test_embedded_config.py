"""The embedded broker's configuration: room for large payloads (see test_large_calls)."""

from __future__ import annotations

from pathlib import Path

import pytest

from demessaging import embedded
from demessaging.backend.uploads import DEFAULT_UPLOADS
from demessaging.protocol.fragments import PIECE_PREFETCH
from demessaging.transport.pulsar import DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_PIECE_SIZE

tomllib = pytest.importorskip("tomllib")

HIGH = "pulsar_channel_write_buffer_high_water_mark_bytes"
LOW = "pulsar_channel_write_buffer_low_water_mark_bytes"


def test_the_write_buffer_holds_what_a_backends_consumers_let_come() -> None:
    config = tomllib.loads(embedded.CONFIG)
    # a backend gathering every upload it holds at once, and taking a request
    let_come = DEFAULT_UPLOADS * PIECE_PREFETCH * DEFAULT_PIECE_SIZE + DEFAULT_MAX_MESSAGE_SIZE
    high = config.get(HIGH, 64 * 1024)  # pulsar-lite's defaults
    low = config.get(LOW, 32 * 1024)
    assert high > let_come
    assert let_come // 2 < low <= high
    assert config["metrics"] == {"enabled": False}


def test_pulsar_lite_knows_the_settings() -> None:
    """pulsar-lite ignores keys it does not know: a misspelt one would change nothing."""
    finder = pytest.importorskip("pulsar_lite.binary_finder")
    binary = Path(finder.find_pulsar_lite_binary()).read_bytes()
    for key in (HIGH, LOW):
        assert key.encode() in binary
