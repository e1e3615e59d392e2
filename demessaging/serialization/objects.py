"""Recognising the objects the codecs treat specially, without importing their libraries."""

from __future__ import annotations

from typing import Any

__all__ = ["xarray_kind"]


def xarray_kind(obj: Any) -> str | None:
    """``"DataArray"`` or ``"Dataset"`` if ``obj`` is an xarray object of that class, else None."""
    cls = type(obj)
    if cls.__module__.startswith("xarray.") and cls.__name__ in ("DataArray", "Dataset"):
        return cls.__name__
    return None
