"""JSON: the encoding every DASF peer understands.

``encode(value, adapter)`` and ``decode(data, adapter)``; every codec module has these two.
numpy arrays and scalars become (nested) lists and numbers, also where the annotation is
``Any``. NaN and infinities are written ``NaN``, ``Infinity`` and ``-Infinity``, as Python's
and JavaScript's JSON parsers read them (pydantic's own JSON output would turn them into
``null``).
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import numpy as np
from pydantic import ConfigDict, TypeAdapter, ValidationError

from ..core.xarrays import xarray_kind
from .errors import MalformedPayloadError

__all__ = ["CONTENT_TYPE", "decode", "encode"]

CONTENT_TYPE = "application/json"
T = TypeVar("T")
_ANY: TypeAdapter[Any] = TypeAdapter(Any, config=ConfigDict(ser_json_inf_nan="constants"))


def _fallback(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if xarray_kind(type(value)) is not None:
        return value.to_dict(data="list")  # DataArray and Dataset: values, not dtypes
    raise TypeError(f"cannot encode a {type(value).__qualname__} as JSON")


def encode(value: Any, adapter: TypeAdapter[Any] = _ANY) -> bytes:
    """Encode ``value`` as UTF-8 JSON, serialized as ``adapter`` describes it.

    Raises
    ------
    pydantic_core.PydanticSerializationError
        If the value cannot be represented in JSON.
    """
    plain = adapter.dump_python(value, mode="json", by_alias=True, fallback=_fallback)
    return json.dumps(plain, allow_nan=True, ensure_ascii=False, separators=(",", ":")).encode()


def decode(data: bytes | bytearray | str, adapter: TypeAdapter[T] = _ANY) -> T:
    """Decode and validate UTF-8 JSON.

    Raises
    ------
    MalformedPayloadError
        If ``data`` is not UTF-8 JSON (or nests too deeply).
    pydantic.ValidationError
        If the value does not validate.
    """
    try:
        return adapter.validate_json(data)
    except ValidationError as exc:
        if is_malformed(exc):
            raise MalformedPayloadError(f"not a valid JSON payload: {_first(exc)}") from None
        raise


def is_malformed(exc: ValidationError) -> bool:
    """Whether a validation error says that its input was not JSON at all."""
    return any(error["type"] == "json_invalid" for error in exc.errors())


def _first(exc: ValidationError) -> str:
    return str(exc.errors()[0]["msg"])
