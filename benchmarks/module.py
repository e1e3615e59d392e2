"""The backend module the benchmarks serve: a no-op and a sum over an array."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["noop", "total"]


def noop() -> None:
    """Do nothing: measures the cost of a call itself."""


def total(values: npt.NDArray[np.float64]) -> float:
    """Sum an array: measures the cost of moving its bytes.

    Parameters
    ----------
    values
        The values to add up.
    """
    return float(values.sum())
