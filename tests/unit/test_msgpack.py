"""The msgpack codec: numpy arrays as raw buffers, every other value as JSON would have it."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import struct
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from pydantic import BaseModel, TypeAdapter

from demessaging.core.arrays import prepare_annotation
from demessaging.serialization import codec_for, json, msgpack

DTYPES = [
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "longdouble",
    "complex64",
    "complex128",
    "datetime64[ns]",
    "datetime64[D]",
    "timedelta64[s]",
    "S3",
    "U4",
]


def _sample(dtype: str, shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    n = int(np.prod(shape))
    kind = np.dtype(dtype).kind
    if kind == "b":
        flat = np.arange(n) % 3 == 0
    elif kind == "M":
        flat = np.datetime64("2024-01-01", "D") + np.arange(n)
    elif kind == "m":
        flat = np.arange(n).astype("timedelta64[s]")
    elif kind in "SU":
        flat = np.array([f"a{i}"[-3:] for i in range(n)])
    else:
        flat = np.arange(n) - (n // 2 if kind in "if" else 0)
    return flat.astype(dtype).reshape(shape)


def _same(left: np.ndarray[Any, Any], right: np.ndarray[Any, Any]) -> None:
    assert left.dtype == right.dtype
    assert left.shape == right.shape
    assert np.array_equal(left, right)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (5,), (2, 0, 3), (3, 4), (2, 3, 4)])
def test_every_dtype_and_shape_round_trips(dtype: str, shape: tuple[int, ...]) -> None:
    array = _sample(dtype, shape)
    _same(msgpack.decode(msgpack.encode(array)), array)


@pytest.mark.parametrize("order", [">", "<"])
@pytest.mark.parametrize("dtype", ["i4", "u8", "f8", "c16", "M8[us]"])
def test_byte_order_is_kept(order: str, dtype: str) -> None:
    array = _sample(dtype, (4,)).astype(order + dtype)
    back = msgpack.decode(msgpack.encode(array))
    assert back.dtype.str == array.dtype.str
    _same(back, array)


@pytest.mark.parametrize(
    "view",
    [
        lambda a: a[:, ::2],  # strided
        lambda a: a.T,  # Fortran order
        lambda a: np.asfortranarray(a),
        lambda a: a[::-1],  # negative strides
        lambda a: a[1:, 1:],  # an offset into its base
    ],
    ids=["strided", "transposed", "fortran", "reversed", "offset"],
)
def test_non_contiguous_arrays_round_trip(view: Any) -> None:
    array = view(np.arange(24.0).reshape(4, 6))
    _same(msgpack.decode(msgpack.encode(array)), array)


def test_arrays_from_a_writable_payload_are_views_of_it() -> None:
    payload = msgpack.encode({"a": np.arange(1000.0), "b": np.ones((3, 3), dtype="i2")})
    assert isinstance(payload, bytearray)
    decoded = msgpack.decode(payload)
    whole = np.frombuffer(payload, dtype=np.uint8)
    assert np.shares_memory(decoded["a"], whole)
    assert np.shares_memory(decoded["b"], whole)
    assert decoded["a"].ctypes.data % msgpack.ALIGN == whole.ctypes.data % msgpack.ALIGN
    decoded["a"][0] = 42.0  # writable
    assert decoded["a"].flags.writeable


def test_arrays_from_a_read_only_payload_are_writable_copies() -> None:
    payload = bytes(msgpack.encode(np.arange(10)))
    decoded = msgpack.decode(payload)
    assert decoded.flags.writeable
    decoded += 1
    _same(msgpack.decode(payload), np.arange(10))


def test_a_contiguous_array_is_copied_once_into_the_payload() -> None:
    array = np.arange(1 << 16, dtype=np.float64)
    payload = msgpack.encode(array)
    assert len(payload) < array.nbytes + 256  # the buffer plus a small header
    assert bytes(array.data) in payload


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: float
    when: datetime.date


class Reading(BaseModel):
    values: npt.NDArray[np.float64]
    colour: Colour
    at: datetime.datetime
    tags: set[str]
    point: Point
    pair: tuple[int, bytes]

    model_config = {"arbitrary_types_allowed": True}


def test_models_with_arrays_enums_dates_and_dataclasses_round_trip() -> None:
    adapter = TypeAdapter(prepare_annotation(dict[str, npt.NDArray[np.float64]]))
    value = {"x": np.arange(3.0), "y": np.zeros((2, 2))}
    back = msgpack.decode(msgpack.encode(value, adapter), adapter)
    _same(back["x"], value["x"])
    _same(back["y"], value["y"])

    reading = {
        "values": [1.0, float("nan"), float("inf")],
        "colour": Colour.RED,
        "at": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
        "tags": {"a"},
        "point": Point(1.5, datetime.date(2024, 1, 1)),
        "pair": (1, b"\x00\xff"),
    }
    model = TypeAdapter(prepare_annotation(dict[str, Any])).validate_python(reading)
    back = msgpack.decode(msgpack.encode(model))
    assert back["colour"] == "red"
    assert back["at"] == "2024-01-02T03:04:05+00:00"
    assert back["tags"] == ["a"]
    assert back["point"] == {"x": 1.5, "when": "2024-01-01"}
    assert back["pair"] == [1, b"\x00\xff"]
    assert np.isnan(back["values"][1])
    assert back["values"][2] == float("inf")


def test_the_adapter_validates_what_is_decoded() -> None:
    adapter = TypeAdapter(tuple[datetime.date, Colour, frozenset[int]])
    value = (datetime.date(2024, 5, 6), Colour.RED, frozenset({1, 2}))
    assert msgpack.decode(msgpack.encode(value, adapter), adapter) == value


def test_numpy_scalars_become_python_values() -> None:
    scalars = [
        np.float32(1.5),
        np.int64(2),
        np.bool_(True),
        np.datetime64("2024-05-01"),
        np.datetime64("2024-05-01T12:00:00.000000001"),
        np.datetime64("NaT"),
        np.timedelta64(90, "s"),
        np.timedelta64(1500, "ms"),
    ]
    assert msgpack.decode(msgpack.encode(scalars)) == [
        1.5,
        2,
        True,
        "2024-05-01",
        "2024-05-01T12:00:00.000000001",
        None,
        90.0,
        1.5,
    ]


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (np.array([object(), 1], dtype=object), "dtype object"),
        (np.zeros(2, dtype=[("a", "i4")]), "cannot encode an array"),
        (object(), "cannot encode a object"),
        (2**70, "needs over 64 bits"),
    ],
    ids=["object-array", "record-array", "object", "big-int"],
)
def test_what_cannot_be_encoded_is_refused_clearly(value: Any, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        msgpack.encode(value)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x01",
        struct.pack("<Q", 1000) + b"\x90",
        bytes(msgpack.encode(np.arange(3)))[:-8],  # truncated buffer
        json.encode({"a": 1}),
    ],
    ids=["empty", "short", "document-too-long", "truncated", "json"],
)
def test_malformed_payloads_raise_value_error(payload: bytes) -> None:
    with pytest.raises(ValueError, match="msgpack"):
        msgpack.decode(payload)


def test_an_array_header_that_lies_about_its_size_is_refused() -> None:
    payload = bytearray(msgpack.encode(np.arange(4, dtype="i8")))
    entry = 8 + struct.unpack_from("<Q", payload)[0] + 8  # the first table entry
    struct.pack_into("<QQ", payload, entry, struct.unpack_from("<Q", payload, entry)[0], 16)
    with pytest.raises(ValueError, match="do not hold"):
        msgpack.decode(payload)


def test_codecs_are_found_by_content_type() -> None:
    assert codec_for("application/json") is json
    assert codec_for("application/vnd.demessaging.msgpack") is msgpack
    with pytest.raises(ValueError, match="unknown content type 'text/csv'"):
        codec_for("text/csv")


def _payload(document: bytes, spans: list[tuple[int, int]], tail: bytes) -> bytes:
    table = struct.pack("<Q", len(spans)) + b"".join(struct.pack("<QQ", *s) for s in spans)
    return struct.pack("<Q", len(document)) + document + table + tail


def test_nested_xarray_extensions_are_refused_not_recursed() -> None:
    import msgpack as raw

    inner: Any = {"data": 1}
    for _ in range(400):  # a few hundred bytes that would exhaust the C stack if recursed
        inner = raw.ExtType(2, raw.packb(inner))
    with pytest.raises(ValueError, match="inside an xarray object"):
        msgpack.decode(_payload(raw.packb(inner), [], b""))


def test_one_buffer_cannot_serve_many_arrays() -> None:
    import msgpack as raw

    header = raw.ExtType(1, raw.packb([0, "<f8", [1024], "C"]))
    document = raw.packb([header] * 1000)
    start = 8 + len(document) + 8 + 16
    payload = _payload(document, [(start, 8192)], bytes(8192))
    with pytest.raises(ValueError, match="used twice"):
        msgpack.decode(payload)
    negative = raw.packb([raw.ExtType(1, raw.packb([-1, "<f8", [1024], "C"]))])
    with pytest.raises(ValueError, match="not a buffer of this payload"):
        msgpack.decode(_payload(negative, [(8 + len(negative) + 24, 8192)], bytes(8192)))


def test_overlapping_buffers_are_refused() -> None:
    import msgpack as raw

    document = raw.packb([raw.ExtType(1, raw.packb([i, "<f8", [8], "C"])) for i in range(2)])
    start = 8 + len(document) + 8 + 32
    with pytest.raises(ValueError, match="overlap or run past the end"):
        msgpack.decode(_payload(document, [(start, 64), (start + 32, 64)], bytes(96)))


def test_a_malformed_xarray_object_is_a_value_error() -> None:
    pytest.importorskip("xarray")
    import msgpack as raw

    form = raw.ExtType(2, raw.packb({"data": [1], "dims": ["x"], "coords": 5}))
    with pytest.raises(ValueError, match=r"not a valid xarray\.DataArray"):
        msgpack.decode(_payload(raw.packb(form), [], b""))


def test_values_msgpack_lacks_go_as_pydantic_writes_them_in_json() -> None:
    import ipaddress

    from pydantic import AnyUrl

    value = {"url": AnyUrl("https://example.org/x"), "ip": ipaddress.ip_address("127.0.0.1")}
    assert msgpack.decode(msgpack.encode(value)) == {
        "url": "https://example.org/x",
        "ip": "127.0.0.1",
    }
