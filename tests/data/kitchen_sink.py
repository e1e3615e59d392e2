"""A backend module that uses every kind of type and parameter demessaging supports."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import pathlib
import typing
from collections.abc import Iterator, Sequence
from math import sqrt  # imported: must not be served
from typing import Annotated, Literal, NamedTuple

import annotated_types
import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import NotRequired, TypedDict

from demessaging import ArraySpec


class Colour(str, enum.Enum):
    """A colour."""

    RED = "red"
    GREEN = "green"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Point(NamedTuple):
    """A point on a plane."""

    x: float
    y: float = 0.0


class Options(TypedDict):
    """Options of a run."""

    name: str
    retries: NotRequired[int]


@dataclasses.dataclass(frozen=True)
class Window:
    """A time window."""

    start: dt.datetime
    end: dt.datetime
    labels: list[str] = dataclasses.field(default_factory=list)


class Station(BaseModel):
    """A measuring station."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=3, max_length=8, pattern="^[A-Z]+$", description="Station code.")
    height: float = Field(0.0, ge=-500, le=9000, title="Height (m)")
    colour: Colour = Colour.RED
    window: Window | None = None
    tags: set[str] = Field(default_factory=set)


def scale(
    values: npt.NDArray[np.float64],
    factor: float = 2.0,
    /,
    offset: Annotated[float, annotated_types.Ge(0)] = 0.0,
    *,
    clip: tuple[float, float] | None = None,
) -> npt.NDArray[np.float64]:
    """Scale values.

    Parameters
    ----------
    values
        The values.
    factor
        Multiplier.
    offset
        Added after scaling.
    clip
        Bounds to clip to.
    """
    result = values * factor + offset
    return np.clip(result, *clip) if clip else result


def describe(
    station: Station,
    when: dt.date = dt.date(2024, 1, 1),
    where: pathlib.Path = pathlib.Path("/data"),
    level: Level = Level.LOW,
    mode: Literal["short", "long"] = "short",
    point: Point = Point(1.0, 2.0),  # noqa: B008
    options: Options | None = None,
    grid: Annotated[np.ndarray, ArraySpec(dtype="int32", shape=(None, 2))] | None = None,
    weights: dict[str, float] = {"a": 1.0},  # noqa: B006
    ids: Sequence[int] = (1, 2),
    ratio: float = float("inf"),
) -> dict[str, str | int | None]:
    """Describe a station.

    Args:
        station: The station.
        when: The date.
        where: Where its data is.
        level: Level of detail.
        mode: Short or long.
        point: A point.
        options: Run options.
        grid: Index pairs.
        weights: Weights by name.
        ids: Identifiers.
        ratio: A ratio.

    Returns:
        A summary.
    """
    return {
        "code": station.code,
        "when": when.isoformat(),
        "level": int(level),
        "rows": None if grid is None else int(grid.shape[0]),
    }


async def wait_and_add(a: int, b: int = 1) -> int:
    """Add two numbers, asynchronously.

    :param a: The first.
    :param b: The second.
    :returns: The sum.
    """
    return a + b


def window_length(window: Window) -> dt.timedelta:
    r"""Length of a window, $\Delta t$ (a raw docstring with "quotes")."""
    return window.end - window.start


def root(x: float) -> float:
    """A square root, through an imported function."""
    return sqrt(x)


def countdown(start: int, step: int = 1) -> Iterator[int]:
    """Count down to one, item by item.

    Parameters
    ----------
    start
        Where to start.
    step
        How far each step goes.
    """
    yield from range(start, 0, -step)


class KitchenError(Exception):
    """Something in the kitchen went wrong."""


class BurntError(KitchenError, ValueError):
    """Cooked for too long."""


class _CharredError(BurntError):
    """Not exported: callers get it as a BurntError."""


def cook(minutes: int) -> str:
    """Cook for a while.

    Raises
    ------
    BurntError
        Past ten minutes.
    KeyError
        For no time at all (not declared: callers get a RemoteError).
    """
    if minutes > 20:
        raise _CharredError(f"{minutes} minutes: charred")
    if minutes > 10:
        raise BurntError(f"{minutes} minutes is too long")
    if minutes == 0:
        raise KeyError("nothing to cook")
    return "done"


class Counter:
    """Counts from a start value.

    Parameters
    ----------
    start
        Where counting starts.
    step
        The increment.
    """

    def __init__(self, start: int = 0, step: int = 1) -> None:
        self.start = start
        self.step = step

    def after(self, n: int) -> int:
        """The value after ``n`` steps."""
        return self.start + n * self.step

    @staticmethod
    def double(x: int) -> int:
        """Twice ``x``."""
        return 2 * x

    @classmethod
    def name(cls) -> str:
        """The class name."""
        return cls.__name__

    @property
    def current(self) -> int:
        """Not served: a property."""
        return self.start

    def _private(self) -> None:
        """Not served: private."""


class Base:
    """A base class with a method of its own."""

    def hello(self, who: str = "world") -> str:
        """Greet ``who``."""
        return f"hello {who}"


class Derived(Base):
    """Inherits ``hello``."""

    def bye(self) -> str:
        """Say goodbye."""
        return "bye"


_ = typing
