"""``validate_dataarray`` and ``validate_dataset``, as DASF 0.6 modules import them.

Each takes ``(cls, value)``, as a validator of ``configure``, and returns the xarray object
that ``value`` holds: the object itself, its ``to_dict()`` form, netCDF in base64 (what
:func:`demessaging.serializers.xarray.encode_xarray` and DASF 0.6 clients write) or netCDF
bytes. Anything else is refused with a ``ValueError`` saying what arrived (which the backend
answers as an invalid request). Needs ``demessaging[xarray]``.
"""

from __future__ import annotations

from typing import Any

from ..core.netcdf import NetCDFError
from ..core.xarrays import from_value

__all__ = ["validate_dataarray", "validate_dataset"]


def validate_dataarray(cls: Any, v: Any) -> Any:
    """``v`` as an ``xarray.DataArray``."""
    return _validate("DataArray", v)


def validate_dataset(cls: Any, v: Any) -> Any:
    """``v`` as an ``xarray.Dataset``."""
    return _validate("Dataset", v)


def _validate(kind: str, value: Any) -> Any:
    import xarray

    target = getattr(xarray, kind)
    if isinstance(value, target):
        return value
    found = from_value(kind, bytes(value) if isinstance(value, memoryview) else value)
    if found is not None:
        return found
    try:  # anything else goes to the constructor, as under DASF 0.6 (a list of numbers...)
        return target(value)
    except Exception as exc:
        raise NetCDFError(
            f"expected an xarray.{kind}, netCDF in base64 or a dictionary, "
            f"got {type(value).__name__} ({exc})"
        ) from None
