"""``dasf_xarray.py`` moved to demessaging: xarray annotations, no codec of its own."""

import xarray as xr

from demessaging import main

__all__ = ["anomaly", "combine", "total"]


def anomaly(field: xr.DataArray) -> xr.DataArray:
    """Subtract the time mean."""
    out = field - field.mean("t")
    out.attrs = dict(field.attrs)
    out.name = field.name
    return out


def combine(ds: xr.Dataset, factor: float = 2.0) -> xr.Dataset:
    """Scale every variable."""
    return ds * factor


def total(field: xr.DataArray) -> float:
    """The sum of a field."""
    return float(field.sum())


if __name__ == "__main__":
    main(messaging_config=dict(topic="dasf-xarray"))
