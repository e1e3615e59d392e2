"""``encode_xarray``, as DASF 0.6 modules import it (``demessaging[xarray]``).

A DASF module serves xarray objects with this serializer and the validators of
:mod:`demessaging.validators.xarray`::

    @configure(
        serializers={"da": encode_xarray},
        validators={"da": [validate_dataarray]},
        return_serializer=encode_xarray,
        return_validators=[validate_dataarray],
    )
    def smooth(da: xr.DataArray) -> xr.DataArray: ...

Such a parameter travels in JSON as DASF writes it, netCDF 3 in base64, so that DASF 0.6
clients read the replies; between demessaging peers (msgpack) the object travels as itself.
"""

from __future__ import annotations

from typing import Any

from ..core.netcdf import encode

__all__ = ["encode_xarray"]


def encode_xarray(obj: Any) -> str:
    """An ``xarray.DataArray`` or ``Dataset`` as base64 of its ``NETCDF3_CLASSIC`` bytes."""
    return encode(obj)
