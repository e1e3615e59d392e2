"""A backend module with xarray parameters and results."""

import xarray as xr


def anomaly(field: xr.DataArray) -> xr.DataArray:
    """Subtract the time mean.

    Parameters
    ----------
    field
        A field with a time dimension.
    """
    out = field - field.mean("t")
    out.attrs = dict(field.attrs)
    return out


def combine(ds: xr.Dataset, factor: float = 2.0) -> xr.Dataset:
    """Scale every variable."""
    return ds * factor
