"""Property-based fuzzing of the codecs and the dispatcher: arbitrary and near-valid payloads.

No exception escapes but the documented ones: a codec's ``decode`` raises
:class:`~demessaging.serialization.MalformedPayloadError` or ``pydantic.ValidationError``;
:meth:`Dispatcher.handle` never raises, and answers what does not decode at stage ``request``.
The envelope parsers are fuzzed in ``test_envelope.py``. The ``slow`` variants run 10,000
examples each (about two minutes in all; ``-m "not slow"`` leaves them out).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import msgpack as msgpack_lib
import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from pydantic import ValidationError

from demessaging.backend.dispatcher import Dispatcher, Outcome
from demessaging.serialization import MalformedPayloadError, json, msgpack
from tests.helpers import fuzz

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
U64 = struct.Struct("<Q")
#: Eight-byte fields as a hostile peer may write them: lengths of 2**63 and more among them.
_FIELDS = st.one_of(
    st.integers(0, 2**64 - 1),
    st.sampled_from([0, 1, 8, 64, 2**31, 2**32, 2**63 - 1, 2**63, 2**64 - 1]),
)
_PLAIN = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=10)
    | st.binary(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
_HEADERS = st.lists(
    st.one_of(
        st.integers(-2, 3) | st.integers(-(2**63), 2**64 - 1),
        st.sampled_from(["<f8", ">i4", "|b1", "<M8[ns]", "O", "V8", "nonsense", ""]),
        st.lists(st.integers(-2, 4) | st.sampled_from([2**62, 2**63 - 1, 2**63]), max_size=3),
        st.sampled_from(["C", "F", "X"]),
        _PLAIN,
    ),
    max_size=5,
).map(msgpack_lib.packb)


@st.composite
def _documents(draw: st.DrawFn) -> bytes:
    """A msgpack document: plain values, extension objects (arrays, xarrays, unknown)."""
    ext = st.builds(msgpack_lib.ExtType, st.sampled_from([1, 2, 3, 7]), _HEADERS)
    value = draw(
        st.recursive(_PLAIN | ext, lambda inner: st.lists(inner, max_size=3), max_leaves=6)
    )
    return bytes(msgpack_lib.packb(value, use_bin_type=True))


@st.composite
def _framed(draw: st.DrawFn) -> bytes:
    """A payload with the msgpack codec's framing, its lengths and table possibly lying."""
    document = draw(_documents() | st.binary(max_size=40))
    size = draw(st.just(len(document)) | _FIELDS)
    entries = draw(st.lists(st.tuples(_FIELDS, _FIELDS), max_size=3))
    count = draw(st.just(len(entries)) | _FIELDS)
    table = b"".join(U64.pack(a) + U64.pack(b) for a, b in entries)
    tail = draw(st.binary(max_size=80))
    return U64.pack(size) + document + U64.pack(count) + table + tail


def _valid(value: Any) -> bytes:
    return bytes(msgpack.encode(value))


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    """A valid request, encoded, then cut, overwritten or with an 8-byte field replaced."""
    values = draw(st.lists(st.floats(allow_nan=False), min_size=0, max_size=5))
    request = {
        "func_name": draw(st.sampled_from(["total", "anomalies", "nothing"])),
        "values": np.array(values),
        "series": values,
    }
    payload = bytearray(_valid(request))
    where = draw(st.integers(0, len(payload)))
    how = draw(st.sampled_from(["cut", "overwrite", "field"]))
    if how == "cut":
        return bytes(payload[:where])
    if how == "overwrite":
        payload[where : where + 1] = draw(st.binary(min_size=1, max_size=4))
        return bytes(payload)
    where = min(where, max(0, len(payload) - 8))
    payload[where : where + 8] = U64.pack(draw(_FIELDS))
    return bytes(payload)


_MSGPACK = st.one_of(st.binary(max_size=200), _framed(), _mutated())
_JSON = st.one_of(
    st.binary(max_size=100),
    st.text(max_size=100).map(str.encode),
    st.recursive(
        st.sampled_from(["[", "{", '"', "1", "-", "e9", ",", ":", "]", "}", "null"]),
        lambda inner: st.lists(inner, max_size=8).map("".join),
    ).map(str.encode),
)


def _decodes(codec: Any, payload: bytes) -> bool:
    """Whether ``codec`` decodes ``payload``; raises what it must not raise."""
    try:
        codec.decode(payload)
    except MalformedPayloadError:
        return False
    except ValidationError:  # a value that does not validate: documented too
        return True
    for copy in (bytearray(payload), memoryview(payload)):  # every kind of buffer alike
        if codec is msgpack or isinstance(copy, bytearray):
            codec.decode(copy)
    return True


def check_msgpack(payload: bytes) -> None:
    _decodes(msgpack, payload)


def check_json(payload: bytes) -> None:
    _decodes(json, payload)


_DISPATCHER = Dispatcher.from_module(EXAMPLES / "climate.py")


def check_dispatcher(payload: bytes, content_type: str) -> None:
    outcome = _DISPATCHER.handle(payload, content_type)  # never raises
    assert isinstance(outcome, Outcome)
    codec = {msgpack.CONTENT_TYPE: msgpack, json.CONTENT_TYPE: json}.get(content_type)
    if codec is None or not _decodes(codec, payload):
        assert outcome.error is not None
        assert outcome.error.stage == "request", outcome.error


_CONTENT_TYPES = st.sampled_from([msgpack.CONTENT_TYPE, json.CONTENT_TYPE, "text/nonsense", ""])


@fuzz(1200, HealthCheck.data_too_large)
@given(_MSGPACK)
def test_msgpack_decodes_or_refuses_any_payload(payload: bytes) -> None:
    check_msgpack(payload)


@fuzz(300, HealthCheck.data_too_large)
@given(_JSON)
def test_json_decodes_or_refuses_any_payload(payload: bytes) -> None:
    check_json(payload)


@fuzz(800, HealthCheck.data_too_large)
@given(_MSGPACK | _JSON, _CONTENT_TYPES)
def test_the_dispatcher_answers_any_payload(payload: bytes, content_type: str) -> None:
    check_dispatcher(payload, content_type)


@pytest.mark.slow
@fuzz(10_000, HealthCheck.data_too_large)
@given(_MSGPACK)
def test_msgpack_at_length(payload: bytes) -> None:
    check_msgpack(payload)


@pytest.mark.slow
@fuzz(10_000, HealthCheck.data_too_large)
@given(_JSON)
def test_json_at_length(payload: bytes) -> None:
    check_json(payload)


@pytest.mark.slow
@fuzz(10_000, HealthCheck.data_too_large)
@given(_MSGPACK | _JSON, _CONTENT_TYPES)
def test_the_dispatcher_at_length(payload: bytes, content_type: str) -> None:
    check_dispatcher(payload, content_type)
