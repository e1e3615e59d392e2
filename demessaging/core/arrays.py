"""numpy arrays as typed, validated, schema-described parameters and return values.

``np.ndarray`` and ``numpy.typing.NDArray[...]`` in a signature are turned into
``Annotated[np.ndarray, ArraySpec(...)]`` by :func:`prepare_annotation`, so that pydantic can
validate them (from arrays or nested lists), serialize them (nested lists in JSON) and describe
them in JSON Schema (``x-dtype``, ``x-shape``). Use ``ArraySpec`` yourself to declare a shape::

    def smooth(field: Annotated[np.ndarray, ArraySpec(dtype="float64", shape=(None, 3))]) -> ...
"""

from __future__ import annotations

import collections.abc
import types
import typing
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

from .xarrays import XarraySpec, object_schema, xarray_kind

__all__ = ["ArraySpec", "prepare_annotation"]

_ARRAY_KINDS = "biufcmM"
_KIND_NAMES = {"O": "ragged or mixed data", "U": "text", "S": "bytes"}
_ITEM_SCHEMA: dict[str, dict[str, Any]] = {
    "b": {"type": "boolean"},
    "i": {"type": "integer"},
    "u": {"type": "integer", "minimum": 0},
    "f": {"type": "number"},
    "M": {"type": "string", "format": "date-time"},
    "m": {"type": "integer"},
    "U": {"type": "string"},
}


@dataclass(frozen=True)
class ArraySpec:
    """The dtype and shape a numpy array parameter or return value must have.

    Parameters
    ----------
    dtype
        A numpy dtype name such as ``"float64"``; None accepts any numeric or bool dtype.
    shape
        The expected shape; ``None`` in a dimension accepts any length, and ``shape=None``
        accepts any number of dimensions.
    """

    dtype: str | None = None
    shape: tuple[int | None, ...] | None = None

    def __post_init__(self) -> None:
        if self.dtype is not None:
            object.__setattr__(self, "dtype", np.dtype(self.dtype).name)
        if self.shape is not None:
            object.__setattr__(self, "shape", tuple(self.shape))

    def validate(self, value: Any) -> np.ndarray[Any, Any]:
        """Return ``value`` as an array of this spec, or raise a pydantic validation error.

        Values are converted to the declared dtype when no value changes on the way: integers
        to any integer type whose range holds them, integers to floats, floats to narrower
        floats while they stay finite. Datetimes and timedeltas are read from ISO strings.
        """
        target = np.dtype(self.dtype) if self.dtype is not None else None
        try:
            if isinstance(value, np.ndarray):
                source = value
            elif target is not None and target.kind in "mM":
                source = np.array(value, dtype=target)
            else:
                source = np.asarray(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise PydanticCustomError(
                "ndarray", "not convertible to an array: {e}", {"e": str(exc)}
            ) from exc
        if source.dtype.kind not in _ARRAY_KINDS:
            raise PydanticCustomError(
                "ndarray",
                "expected a rectangular array of numbers, booleans or datetimes, got {kind}",
                {"kind": _KIND_NAMES.get(source.dtype.kind, source.dtype.name)},
            )
        array = source
        if target is not None and source.dtype != target:
            array = _convert(source, target)
        if self.shape is not None and (
            array.ndim != len(self.shape)
            or any(
                want is not None and want != got
                for want, got in zip(self.shape, array.shape, strict=True)
            )
        ):
            raise PydanticCustomError(
                "ndarray_shape",
                "expected shape {expected}, got {actual}",
                {"expected": _shape_text(self.shape), "actual": _shape_text(array.shape)},
            )
        return array

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return object_schema(self.validate, _to_jsonable)

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        kind = np.dtype(self.dtype).kind if self.dtype else None
        items: dict[str, Any] = dict(_ITEM_SCHEMA.get(kind, {})) if kind else {}
        if self.shape is None:
            result: dict[str, Any] = {"type": "array", "items": {}}
        else:
            result = items
            for length in reversed(self.shape):
                level: dict[str, Any] = {"type": "array", "items": result}
                if length is not None:
                    level["minItems"] = level["maxItems"] = length
                result = level
            if not self.shape:  # 0-d: a bare scalar
                result = items or {}
        if self.dtype:
            result["x-dtype"] = self.dtype
        if self.shape is not None:
            result["x-shape"] = list(self.shape)
        return result


def _convert(source: np.ndarray[Any, Any], target: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """``source`` as ``target``, refusing conversions that would change a value."""
    kinds = source.dtype.kind + target.kind
    if target.kind in "mM" and np.datetime_data(target)[0] == "generic":
        return source if source.dtype.kind == target.kind else _refuse(source, target)
    if kinds[0] in "iu" and kinds[1] in "iu":
        limits = np.iinfo(target)
        if source.size and (source.min() < limits.min or source.max() > limits.max):
            raise PydanticCustomError(
                "ndarray_range",
                "values from {low} to {high} do not fit in {expected}",
                {"low": int(source.min()), "high": int(source.max()), "expected": target.name},
            )
        return source.astype(target)
    if not np.can_cast(source.dtype, target, casting="same_kind"):
        return _refuse(source, target)
    with np.errstate(over="ignore", invalid="ignore"):
        result = source.astype(target)
    if kinds[1] in "fc" and not np.array_equal(np.isfinite(source), np.isfinite(result)):
        raise PydanticCustomError(
            "ndarray_range",
            "values do not fit in {expected} (they would become infinite)",
            {"expected": target.name},
        )
    return result


def _refuse(source: np.ndarray[Any, Any], target: np.dtype[Any]) -> np.ndarray[Any, Any]:
    raise PydanticCustomError(
        "ndarray_dtype",
        "expected dtype {expected}, got {actual} (no safe conversion)",
        {"expected": target.name, "actual": source.dtype.name},
    )


def _shape_text(shape: tuple[int | None, ...]) -> str:
    return (
        "("
        + ", ".join("*" if n is None else str(n) for n in shape)
        + ("," if len(shape) == 1 else "")
        + ")"
    )


def _to_jsonable(array: np.ndarray[Any, Any]) -> Any:
    if array.dtype.kind == "M":
        return np.datetime_as_string(array).tolist()
    return array.tolist()


def _spec_for(annotation: Any) -> ArraySpec | None:
    """The ArraySpec an ndarray annotation implies, or None if it is not an ndarray."""
    if annotation is np.ndarray:
        return ArraySpec()
    if typing.get_origin(annotation) is np.ndarray:
        args = typing.get_args(annotation)
        dtype_arg = args[1] if len(args) > 1 else Any
        scalar = typing.get_args(dtype_arg)[0] if typing.get_args(dtype_arg) else Any
        if isinstance(scalar, type) and issubclass(scalar, np.generic):
            try:
                return ArraySpec(dtype=np.dtype(scalar).name)
            except TypeError:  # abstract scalar types such as np.floating
                return ArraySpec()
        return ArraySpec()
    return None


def prepare_annotation(annotation: Any) -> Any:
    """Replace numpy array types inside ``annotation`` by validated, described ones.

    Recurses through unions, containers and ``Annotated``; other annotations are returned
    unchanged. An ``Annotated[np.ndarray, ArraySpec(...)]`` is kept as written.
    """
    spec = _spec_for(annotation)
    if spec is not None:
        return Annotated[np.ndarray, spec]
    kind = xarray_kind(annotation) if isinstance(annotation, type) else None
    if kind is not None:
        return Annotated[annotation, XarraySpec(kind)]
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is None or not args:
        return annotation
    if origin is Annotated:
        base, *metadata = args
        if any(isinstance(m, ArraySpec | XarraySpec) for m in metadata):
            return annotation
        params = (prepare_annotation(base), *metadata)
        return Annotated[params]
    if origin is typing.Literal:
        return annotation
    new_args = tuple(prepare_annotation(a) for a in args)
    if new_args == args:
        return annotation
    if origin in (typing.Union, types.UnionType):
        return typing.Union[new_args]  # noqa: UP007
    if isinstance(annotation, types.GenericAlias) or origin in vars(collections.abc).values():
        return types.GenericAlias(origin, new_args)
    return annotation.copy_with(new_args)
