"""Malformed payloads are the sender's error: a ProtocolError, stage ``request``, no traceback."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import msgpack as msgpack_lib
import pytest

from demessaging.backend.dispatcher import Dispatcher
from demessaging.errors import ProtocolError
from demessaging.serialization import json, msgpack

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
U64 = struct.Struct("<Q")


def _with_document(document: bytes, table: bytes = U64.pack(0)) -> bytes:
    return U64.pack(len(document)) + document + table


def _array_ext(header: object) -> bytes:
    return msgpack_lib.packb(msgpack_lib.ExtType(msgpack.ARRAY, msgpack_lib.packb(header)))


MALFORMED_MSGPACK = {
    "document length 2^63": U64.pack(2**63) + b"\0" * 16,
    "document length 2^64-1": U64.pack(2**64 - 1) + b"\0" * 16,
    "buffer count 2^63": _with_document(b"\xc0", U64.pack(2**63)),
    "buffer start 2^63": _with_document(b"\xc0", U64.pack(1) + U64.pack(2**63) + U64.pack(8)),
    "buffer length 2^64-1": _with_document(
        b"\xc0", U64.pack(1) + U64.pack(64) + U64.pack(2**64 - 1)
    ),
    "truncated": b"\x05\0\0",
    "truncated document": _with_document(b"\x92\x01")[:-8],
    "empty": b"",
    "nested depth bomb": _with_document(b"\x91" * 100_000 + b"\xc0"),
    "array header not a list": _with_document(_array_ext(7)),
    "array header of wrong types": _with_document(_array_ext([0, 5, "x", None])),
    "array shape of 2^63": _with_document(_array_ext([0, "<f8", [2**63 - 1, 2**63 - 1], "C"])),
    "array of a dtype that is not one": _with_document(_array_ext([0, "no dtype", [1], "C"])),
    "xarray of nonsense": _with_document(
        msgpack_lib.packb(msgpack_lib.ExtType(2, msgpack_lib.packb([1, 2])))
    ),
    "map with an unhashable key": _with_document(b"\x81\x90\x01"),
}

MALFORMED_JSON = {
    "not JSON": b"\xff\xfe{",
    "nested depth bomb": b"[" * 100_000,
    "truncated": b'{"func_name": ',
    "huge number": b"1" * 10_000,
}


@pytest.mark.parametrize("payload", MALFORMED_MSGPACK.values(), ids=MALFORMED_MSGPACK.keys())
def test_msgpack_refuses_malformed_payloads_with_a_protocol_error(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        msgpack.decode(payload)
    with pytest.raises(ValueError, match="msgpack"):  # as documented before: a ValueError too
        msgpack.decode(bytearray(payload))


@pytest.mark.parametrize("payload", MALFORMED_JSON.values(), ids=MALFORMED_JSON.keys())
def test_json_refuses_malformed_payloads_with_a_protocol_error(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        json.decode(payload)


@pytest.mark.parametrize(
    ("payload", "content_type"),
    [(p, msgpack.CONTENT_TYPE) for p in MALFORMED_MSGPACK.values()]
    + [(p, json.CONTENT_TYPE) for p in MALFORMED_JSON.values()],
    ids=[f"msgpack {k}" for k in MALFORMED_MSGPACK] + [f"json {k}" for k in MALFORMED_JSON],
)
def test_the_dispatcher_answers_malformed_payloads_at_stage_request(
    payload: bytes, content_type: str, caplog: pytest.LogCaptureFixture
) -> None:
    dispatcher = Dispatcher.from_module(EXAMPLES / "climate.py")
    with caplog.at_level(logging.DEBUG):
        outcome = dispatcher.handle(payload, content_type)
    assert outcome.error is not None
    # JSON that is not JSON stays a ValidationError, as DASF backends answer it
    expected = "ProtocolError" if content_type == msgpack.CONTENT_TYPE else "ValidationError"
    assert (outcome.error.stage, outcome.error.type) == ("request", expected)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not [r for r in caplog.records if r.exc_info]
