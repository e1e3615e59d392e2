"""Validators that DASF 0.6 modules import from ``demessaging.validators`` (see its ``xarray``)."""
