"""xarray's ``DataArray`` and ``Dataset`` as parameters and return values (``demessaging[xarray]``).

An annotation ``xarray.DataArray`` or ``xarray.Dataset`` becomes
``Annotated[..., XarraySpec(kind)]``: values validate from the object itself, from its
dictionary form (``to_dict``/``from_dict``), or from netCDF in base64 as DASF 0.6 clients send
it (:mod:`demessaging.core.netcdf`), travel in JSON as that dictionary with lists, and
in msgpack as that dictionary with every variable and coordinate a raw buffer (see
:mod:`demessaging.serialization.msgpack`), so that dimensions, coordinates, attributes and
dtypes arrive intact. xarray is imported only when a module uses it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

__all__ = ["KINDS", "XarraySpec", "from_value", "object_schema", "xarray_kind"]

#: The xarray classes served, by name.
KINDS = ("DataArray", "Dataset")


def object_schema(
    validate: Callable[[Any], Any], to_jsonable: Callable[[Any], Any]
) -> core_schema.CoreSchema:
    """A value checked by ``validate``, kept as it is in Python, written by ``to_jsonable`` in JSON.

    Arrays and xarray objects are such values: the msgpack codec sends them as buffers.
    """
    return core_schema.no_info_plain_validator_function(
        validate,
        serialization=core_schema.plain_serializer_function_ser_schema(
            to_jsonable, when_used="json"
        ),
    )


def xarray_kind(cls: type) -> str | None:
    """``"DataArray"`` or ``"Dataset"`` if ``cls`` is that class of xarray, else None.

    For a value, ask about ``type(value)``. xarray itself is not imported: the codecs ask
    about every value they meet.
    """
    if cls.__module__.split(".")[0] == "xarray" and cls.__name__ in KINDS:
        return cls.__name__
    return None


def from_value(kind: str, value: Any) -> Any:
    """``value`` as an ``xarray.<kind>``; None if it is of none of the forms taken.

    The forms: the object itself, its dictionary form (``to_dict``) and netCDF, in base64 as
    DASF 0.6 clients send it or as bytes (:mod:`demessaging.core.netcdf`). A dictionary or
    netCDF value that does not hold one raises :class:`~demessaging.core.netcdf.NetCDFError`
    (a ``ValueError``) saying why.
    """
    if xarray_kind(type(value)) == kind:
        return value
    from .netcdf import NetCDFError, decode

    if isinstance(value, dict):
        import xarray

        try:
            return getattr(xarray, kind).from_dict(value)
        except Exception as exc:  # from_dict raises many kinds for malformed input
            raise NetCDFError(f"not a valid {kind} dictionary: {exc}") from None
    if isinstance(value, (str, bytes, bytearray)):  # DASF's: netCDF (in base64)
        return decode(value, kind)
    return None


@dataclass(frozen=True)
class XarraySpec:
    """Validation, serialization and JSON Schema of an xarray parameter or return value."""

    kind: str

    def validate(self, value: Any) -> Any:
        """``value`` as an xarray object of this kind, or raise a pydantic validation error."""
        from .netcdf import NetCDFError

        try:
            found = from_value(self.kind, value)
        except NetCDFError as exc:
            raise PydanticCustomError("xarray", "{e}", {"e": str(exc)}) from None
        if found is None:
            raise PydanticCustomError(
                "xarray",
                "expected an xarray.{kind}, its dictionary form or netCDF in base64, got {type}",
                {"kind": self.kind, "type": type(value).__name__},
            )
        return found

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return object_schema(self.validate, _to_jsonable)

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        variable: dict[str, Any] = {
            "type": "object",
            "properties": {
                "dims": {"type": "array", "items": {"type": "string"}},
                "data": {"type": "array"},
                "attrs": {"type": "object"},
            },
        }
        properties: dict[str, Any] = {
            "coords": {"type": "object", "additionalProperties": variable},
            "attrs": {"type": "object"},
        }
        if self.kind == "DataArray":
            properties |= {"dims": variable["properties"]["dims"], "data": {"type": "array"}}
            properties["name"] = {"type": ["string", "null"]}
        else:
            properties["data_vars"] = {"type": "object", "additionalProperties": variable}
        return {
            "type": "object",
            "description": f"an xarray.{self.kind} in the layout of its to_dict()",
            "properties": properties,
            "x-xarray": self.kind,
        }


def _to_jsonable(value: Any) -> Any:
    return value.to_dict(data="list")
