"""xarray objects as netCDF in base64: how DASF 0.6 sends them (``demessaging[xarray]``).

DASF's demessaging 0.6 carries an ``xarray.DataArray`` or ``Dataset`` as the text of base64 over
the object's netCDF bytes, written in the ``NETCDF3_CLASSIC`` format. xarray writes and reads
netCDF 3 in memory with its ``scipy`` engine, which is why the ``xarray`` extra installs scipy.
netCDF 4 (HDF5) bytes are read too when ``h5netcdf`` is installed.

:func:`decode` turns such a value (text or bytes) into the xarray object, or raises
:class:`NetCDFError` (a ``ValueError``) saying what is wrong with it, whatever the input;
:func:`encode` writes an object as DASF does. xarray is imported only when these are called.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

__all__ = ["ENGINE", "NetCDFError", "NetCDFInJSON", "decode", "encode"]

#: xarray's engine for netCDF 3 in memory, the format DASF writes.
ENGINE = "scipy"
#: The netCDF format DASF writes.
FORMAT = "NETCDF3_CLASSIC"
_HDF5 = b"\x89HDF\r\n\x1a\n"
_NETCDF3 = (b"CDF\x01", b"CDF\x02")


class NetCDFError(ValueError):
    """A value that is not netCDF in base64 of the expected kind; the message says why."""


@dataclass(frozen=True)
class NetCDFInJSON:
    """Metadata of an xarray result: in JSON (to DASF clients) it goes as DASF writes it.

    For results of DASF's own xarray codec (``demessaging.serializers.xarray``); in msgpack
    the object goes as itself.
    """

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        schema = handler(source)
        serialization = core_schema.plain_serializer_function_ser_schema(encode, when_used="json")
        return {**schema, "serialization": serialization}


def decode(value: str | bytes | bytearray | memoryview, kind: str) -> Any:
    """The ``xarray.<kind>`` (``"DataArray"`` or ``"Dataset"``) that ``value`` holds.

    ``value`` is base64 text of netCDF bytes (what DASF sends) or the bytes themselves.
    """
    raw = _bytes(value)
    if raw.startswith(_NETCDF3):
        engine = ENGINE
        _need("scipy", "netCDF 3")
    elif raw.startswith(_HDF5):
        engine = "h5netcdf"
        _need("h5netcdf", "netCDF 4 (HDF5)")
    else:
        raise NetCDFError(f"not netCDF: the bytes begin with {raw[:8]!r}")
    import xarray

    opener = xarray.open_dataarray if kind == "DataArray" else xarray.open_dataset
    try:
        with opener(io.BytesIO(raw), engine=engine) as opened:
            return opened.load()
    except Exception as exc:  # the readers raise many kinds for malformed files
        raise NetCDFError(f"not a valid netCDF {kind}: {type(exc).__name__}: {exc}") from None


def encode(value: Any) -> str:
    """``value`` (an xarray object) as DASF writes it: base64 of its ``NETCDF3_CLASSIC`` bytes."""
    _need("scipy", "netCDF 3")
    try:
        written = value.to_netcdf(format=FORMAT, engine=ENGINE)
    except Exception as exc:  # netCDF 3 cannot hold every dtype (int64, for one)
        raise NetCDFError(f"cannot be written as {FORMAT}: {exc}") from None
    return base64.b64encode(bytes(written)).decode("ascii")


def _bytes(value: str | bytes | bytearray | memoryview) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if not isinstance(value, str):
        raise NetCDFError(f"expected netCDF in base64, got {type(value).__name__}")
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):  # ValueError: characters outside ASCII
        raise NetCDFError("not netCDF in base64: the text is not valid base64") from None


def _need(module: str, what: str) -> None:
    try:
        __import__(module)
    except ImportError:
        raise NetCDFError(
            f"reading or writing {what} needs {module}: pip install {module}"
            + (" (or demessaging[xarray])" if module == "scipy" else "")
        ) from None
