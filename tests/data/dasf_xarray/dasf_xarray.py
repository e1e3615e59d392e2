"""A DASF 0.6 module with xarray parameters and results, through DASF's own xarray codec."""

import xarray as xr

from demessaging import configure, main
from demessaging.serializers.xarray import encode_xarray
from demessaging.validators.xarray import validate_dataarray, validate_dataset

__all__ = ["anomaly", "combine", "total"]


@configure(
    serializers={"field": encode_xarray},
    validators={"field": [validate_dataarray]},
    return_serializer=encode_xarray,
    return_validators=[validate_dataarray],
)
def anomaly(field: xr.DataArray) -> xr.DataArray:
    """Subtract the time mean.

    Parameters
    ----------
    field
        A field with a time dimension ``t``.
    """
    out = field - field.mean("t")
    out.attrs = dict(field.attrs)
    out.name = field.name
    return out


@configure(
    serializers={"ds": encode_xarray},
    validators={"ds": [validate_dataset]},
    return_serializer=encode_xarray,
    return_validators=[validate_dataset],
)
def combine(ds: xr.Dataset, factor: float = 2.0) -> xr.Dataset:
    """Scale every variable.

    Parameters
    ----------
    ds
        The dataset.
    factor
        By how much.
    """
    return ds * factor


@configure(serializers={"field": encode_xarray}, validators={"field": [validate_dataarray]})
def total(field: xr.DataArray) -> float:
    """The sum of a field.

    Parameters
    ----------
    field
        The field.
    """
    return float(field.sum())


if __name__ == "__main__":
    main(messaging_config=dict(topic="dasf-xarray"))
