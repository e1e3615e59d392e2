"""A DASF 0.6 module that sends numpy arrays through a codec of its own: base64 of ``.npy``."""

import numpy as np
from array_codec import encode_array, validate_array

from demessaging import configure, main

__all__ = ["scale", "total"]


@configure(serializers={"a": encode_array}, validators={"a": [validate_array]})
def total(a: np.ndarray) -> float:
    """The sum of an array.

    Parameters
    ----------
    a
        The array.
    """
    return float(np.sum(a))


@configure(
    serializers={"a": encode_array},
    validators={"a": [validate_array]},
    return_serializer=encode_array,
    return_validators=[validate_array],
)
def scale(a: np.ndarray, factor: float = 2.0) -> np.ndarray:
    """The array times a factor.

    Parameters
    ----------
    a
        The array.
    factor
        By how much.
    """
    return a * factor


if __name__ == "__main__":
    main(messaging_config=dict(topic="dasf-arrays"))
