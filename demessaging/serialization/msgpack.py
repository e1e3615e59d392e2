"""msgpack with numpy arrays as raw buffers: the encoding between demessaging peers.

``encode(value, adapter)`` and ``decode(data, adapter)``, as in :mod:`.json`. The payload is::

    8 bytes   D, the length of the msgpack document (unsigned, little-endian)
    D bytes   the document: the value, arrays replaced by extension objects (type 1)
    8 bytes   N, the number of arrays (unsigned, little-endian)
    N x 16    for each array, where its buffer starts in the payload and its length in bytes
    ...       the array buffers, each starting at a multiple of 64 bytes

An array's extension object holds the msgpack list ``[index, dtype, shape, order]``: its
index in the table above, its dtype as ``numpy.dtype.str`` (byte order included, e.g.
``"<f8"``, ``">i4"``, ``"<M8[ns]"``), its shape, and ``"C"`` or ``"F"``, the order of its
buffer. Arrays are copied once into the payload by ``encode``, and not at all by
``encode_buffers`` where they are contiguous (C or Fortran order: the payload is then a
sequence of buffers, views of the arrays, sent in pieces cut from it); they are decoded without
a copy: they are views of the payload where it is writable (a ``bytearray``, as
reassembled payloads are); a read-only payload is copied once first, so that callers always get
writable arrays. Each buffer serves one array, and buffers may not overlap.

Other values go as msgpack's own types; what msgpack lacks is sent as JSON would send it
(datetimes and dates as ISO strings, enums as their values, sets as lists, numpy scalars as
Python numbers...), and pydantic turns it back on decoding. Arrays of numbers, booleans,
datetimes, timedeltas, bytes and text go as buffers; other arrays (objects, records) are
refused.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import math
import pathlib
import struct
import uuid
from typing import Any, TypeVar

import msgpack
import numpy as np
from pydantic import TypeAdapter
from pydantic_core import PydanticSerializationError, to_jsonable_python

from ..core.xarrays import xarray_kind
from .buffers import Buffers
from .errors import MalformedPayloadError

__all__ = ["CONTENT_TYPE", "decode", "encode", "encode_buffers"]

CONTENT_TYPE = "application/vnd.demessaging.msgpack"
ARRAY = 1
#: xarray objects: extension types holding the msgpack of their ``to_dict(data="array")``.
XARRAY = {"DataArray": 2, "Dataset": 3}
_PACK: dict[str, Any] = {"use_bin_type": True, "datetime": False}
_UNPACK: dict[str, Any] = {"raw": False, "strict_map_key": False}
ALIGN = 64
T = TypeVar("T")
_ANY: TypeAdapter[Any] = TypeAdapter(Any)
_U64 = struct.Struct("<Q")
_ENTRY = struct.Struct("<QQ")
_BUFFER_KINDS = "biufcmMSU"
_ZEROS = memoryview(bytes(ALIGN))  # the padding before a buffer: less than ALIGN bytes


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _layout(array: np.ndarray[Any, Any]) -> tuple[np.ndarray[Any, Any], str]:
    """A contiguous array with the data of ``array`` (itself if it is one) and its order."""
    if array.dtype.kind not in _BUFFER_KINDS or array.dtype.fields is not None:
        raise TypeError(f"cannot encode an array of dtype {array.dtype} (not numbers or text)")
    if array.flags.c_contiguous:
        return array, "C"
    if array.flags.f_contiguous:
        return array.T, "F"  # the transpose of a Fortran-ordered array is C-contiguous
    return np.ascontiguousarray(array), "C"


def _plain(value: Any) -> Any:
    """What msgpack cannot encode, as JSON would have it."""
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else str(np.datetime_as_string(value))
    if isinstance(value, np.timedelta64):
        return None if np.isnat(value) else float(value / np.timedelta64(1, "s"))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return list(value)
    if isinstance(value, decimal.Decimal | uuid.UUID | pathlib.PurePath | complex):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, int):  # msgpack asks only for those beyond 64 bits
        raise TypeError(f"cannot encode the integer {value} in msgpack: it needs over 64 bits")
    try:  # URLs, IP addresses, patterns...: what pydantic writes for them in JSON
        return to_jsonable_python(value)
    except PydanticSerializationError:
        raise TypeError(f"cannot encode a {type(value).__qualname__} in msgpack") from None


def _xarray(code: int, form: Any) -> Any:
    """The xarray object of extension type ``code`` from its dictionary form."""
    try:
        import xarray
    except ImportError:
        raise ValueError("an xarray object arrived, but xarray is not installed") from None
    kind = next(name for name, number in XARRAY.items() if number == code)
    try:
        return getattr(xarray, kind).from_dict(form)
    except Exception as exc:  # from_dict raises many kinds for malformed input
        raise ValueError(f"not a valid xarray.{kind}: {exc}") from exc


def _plan(
    value: Any, adapter: TypeAdapter[Any]
) -> tuple[bytes, list[np.ndarray[Any, Any]], list[int], int]:
    """The head (document and table), the arrays, where their buffers start, the size."""
    arrays: list[np.ndarray[Any, Any]] = []

    def default(obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            data, order = _layout(obj)
            arrays.append(data)
            header = [len(arrays) - 1, data.dtype.str, list(obj.shape), order]
            return msgpack.ExtType(ARRAY, msgpack.packb(header))
        kind = xarray_kind(type(obj))
        if kind is not None:  # its dictionary form, every variable a buffer
            inner = msgpack.packb(obj.to_dict(data="array"), default=default, **_PACK)
            return msgpack.ExtType(XARRAY[kind], inner)
        return _plain(obj)

    plain = adapter.dump_python(value, mode="python", by_alias=True)
    try:
        document = msgpack.packb(plain, default=default, **_PACK)
    except (OverflowError, ValueError) as exc:
        raise TypeError(f"cannot encode the value in msgpack: {exc}") from exc
    table_end = _U64.size + len(document) + _U64.size + _ENTRY.size * len(arrays)
    offsets, position = [], _aligned(table_end)
    for data in arrays:
        offsets.append(position)
        position = _aligned(position + data.nbytes)
    end = offsets[-1] + arrays[-1].nbytes if arrays else table_end
    head = b"".join(
        [
            _U64.pack(len(document)),
            document,
            _U64.pack(len(arrays)),
            *(_ENTRY.pack(at, data.nbytes) for data, at in zip(arrays, offsets, strict=True)),
        ]
    )
    return head, arrays, offsets, end


def _bytes_of(data: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The buffer of a C-contiguous array as bytes (uint8), without a copy."""
    return data.reshape(-1).view(np.uint8)


def encode(value: Any, adapter: TypeAdapter[Any] = _ANY) -> bytearray:
    """Encode ``value`` (serialized as ``adapter`` describes it) as msgpack with buffers.

    Raises
    ------
    TypeError
        If the value holds something that cannot be encoded.
    """
    head, arrays, offsets, end = _plan(value, adapter)
    out = bytearray(end)
    out[: len(head)] = head
    for data, start in zip(arrays, offsets, strict=True):
        if data.nbytes:
            target = np.frombuffer(out, dtype=np.uint8, count=data.nbytes, offset=start)
            target[:] = _bytes_of(data)
    return out


def encode_buffers(value: Any, adapter: TypeAdapter[Any] = _ANY) -> Buffers:
    """Encode ``value`` as :func:`encode` does, as a sequence of buffers instead of one copy.

    The head as bytes, then, for each array, zeros up to its start and a view of its buffer
    (contiguous arrays are not copied: they must not change until the payload is sent). The
    bytes are those of :func:`encode`.

    Raises
    ------
    TypeError
        If the value holds something that cannot be encoded.
    """
    head, arrays, offsets, _ = _plan(value, adapter)
    parts: list[bytes | memoryview] = [head]
    position = len(head)
    for data, start in zip(arrays, offsets, strict=True):
        parts.append(_ZEROS[: start - position])
        if data.nbytes:
            parts.append(_bytes_of(data).data)
        position = start + data.nbytes
    return Buffers(parts)


def decode(data: bytes | bytearray | memoryview, adapter: TypeAdapter[T] = _ANY) -> T:
    """Decode msgpack with buffers and validate the value.

    Raises
    ------
    MalformedPayloadError
        If ``data`` is not such a payload (also a ``ValueError``).
    pydantic.ValidationError
        If the value does not validate.
    """
    if isinstance(data, bytes | memoryview) and memoryview(data).readonly:
        data = bytearray(data)  # one copy, so that arrays can be writable views of it
    try:
        plain = _unpack(memoryview(data))
    except MalformedPayloadError:
        raise
    except (
        msgpack.UnpackException,
        ValueError,
        TypeError,
        LookupError,
        ArithmeticError,
        RecursionError,
    ) as exc:
        # whatever a hostile payload makes msgpack, numpy or struct raise (lengths of 2**63
        # and more raise OverflowError): the sender's error, not the backend's
        raise MalformedPayloadError(f"not a valid msgpack payload: {exc}") from None
    return adapter.validate_python(plain)


def _unpack(view: memoryview) -> Any:
    """The plain value of a payload, arrays as views of it."""
    if len(view) < _U64.size * 2:
        raise MalformedPayloadError(f"not a msgpack payload with buffers: {len(view)} bytes")
    (size,) = _U64.unpack_from(view, 0)
    if size > len(view) - _U64.size * 2:
        raise MalformedPayloadError(
            "not a msgpack payload with buffers: the document runs past the end"
        )
    (count,) = _U64.unpack_from(view, _U64.size + size)
    table = _U64.size * 2 + size
    if count > (len(view) - table) // _ENTRY.size:
        raise MalformedPayloadError(
            "not a msgpack payload with buffers: the buffer table runs past the end"
        )
    spans = [_ENTRY.unpack_from(view, table + _ENTRY.size * i) for i in range(count)]
    end = table + _ENTRY.size * count
    for start, nbytes in sorted(spans):  # in order, after the table, apart, inside the payload
        if start < end or start + nbytes > len(view):
            raise MalformedPayloadError(
                "not a msgpack payload with buffers: they overlap or run past the end"
            )
        end = start + nbytes
    used: set[int] = set()

    def array(header: bytes) -> np.ndarray[Any, Any]:
        index, dtype_text, shape, order = msgpack.unpackb(header)
        if not (isinstance(index, int) and 0 <= index < count) or index in used:
            raise ValueError(f"array {index!r} is not a buffer of this payload, or used twice")
        used.add(index)
        start, nbytes = spans[index]
        if not (isinstance(shape, list) and all(isinstance(n, int) and n >= 0 for n in shape)):
            raise ValueError(f"array {index} has the shape {shape!r}, which is not one")
        dtype, shape = np.dtype(dtype_text), tuple(shape)
        if dtype.kind not in _BUFFER_KINDS or dtype.fields is not None:
            raise ValueError(f"array {index} has the dtype {dtype}, which is not a buffer")
        if order == "F":
            shape = shape[::-1]
        items = math.prod(shape)
        if items * dtype.itemsize != nbytes:
            raise ValueError(f"array {index}: {nbytes} bytes do not hold {shape} of {dtype}")
        result = np.frombuffer(view, dtype=dtype, count=items, offset=start).reshape(shape)
        return result.T if order == "F" else result

    def inner_hook(code: int, header: bytes) -> Any:  # inside an xarray object: arrays only
        if code != ARRAY:
            raise ValueError(f"msgpack extension type {code} inside an xarray object")
        return array(header)

    def ext_hook(code: int, header: bytes) -> Any:
        if code == ARRAY:
            return array(header)
        if code in XARRAY.values():
            return _xarray(code, msgpack.unpackb(header, ext_hook=inner_hook, **_UNPACK))
        raise ValueError(f"unknown msgpack extension type {code}")

    return msgpack.unpackb(view[_U64.size : _U64.size + size], ext_hook=ext_hook, **_UNPACK)
