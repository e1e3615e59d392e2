"""Serializers that DASF 0.6 modules import from ``demessaging.serializers`` (see its ``xarray``).

Not to be confused with :mod:`demessaging.serialization`, this package's wire codecs.
"""
