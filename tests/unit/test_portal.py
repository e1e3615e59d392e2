"""The sync face made from the async one: blocking(), blocking_iterator() and the portal."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncGenerator, Iterator

import pytest

from demessaging.client import Client, RemoteModule
from demessaging.client.portal import Portal, blocking, blocking_iterator


class Owner:
    """Runs its async face on a portal of its own, made on first use."""

    def __init__(self) -> None:
        self.portal: Portal | None = None
        self.closed: list[int] = []
        self.loops: set[asyncio.AbstractEventLoop] = set()

    def _portal(self) -> Portal:
        if self.portal is None:
            self.portal = Portal("test-portal")
        return self.portal

    async def atwice(self, value: int, *, plus: int = 0) -> int:
        """Twice ``value``, plus ``plus``.

        Parameters
        ----------
        value
            What is doubled.
        """
        self.loops.add(asyncio.get_running_loop())
        return 2 * value + plus

    async def acount(self, stop: int) -> AsyncGenerator[int, None]:
        """Count up to ``stop``."""
        try:
            for i in range(stop):
                self.loops.add(asyncio.get_running_loop())
                yield i
        finally:
            self.closed.append(stop)

    twice = blocking(atwice)
    count = blocking_iterator(acount)


@pytest.fixture
def owner() -> Iterator[Owner]:
    made = Owner()
    yield made
    if made.portal is not None:
        made.portal.close()


def test_blocking_runs_the_coroutine_on_the_owners_portal(owner: Owner) -> None:
    assert owner.twice(3, plus=1) == 7
    assert owner.portal is not None
    assert owner.loops == {owner.portal.loop}


def test_the_sync_form_is_named_and_documented_for_its_callers() -> None:
    assert Owner.twice.__name__ == "twice"
    assert Owner.twice.__qualname__ == "Owner.twice"
    assert str(inspect.signature(Owner.twice)) == str(inspect.signature(Owner.atwice))
    doc = Owner.twice.__doc__ or ""
    assert doc.startswith("Twice ``value``, plus ``plus``.\n\nThe blocking form of :meth:`atwice`")
    assert "value\n    What is doubled." in doc
    assert Owner.count.__name__ == "count"
    assert inspect.isgeneratorfunction(Owner.count)
    # an async generator's return annotation would be wrong for the generator
    assert inspect.signature(Owner.count).return_annotation is inspect.Signature.empty
    for cls, name in [(Client, n) for n in ("call", "stream", "ping", "info", "api_info")] + [
        (RemoteModule, "call"),
        (RemoteModule, "stream"),
    ]:
        method = getattr(cls, name)
        assert method.__qualname__ == f"{cls.__name__}.{name}"
        assert f":meth:`a{name}`" in method.__doc__


def test_blocking_iterator_starts_nothing_before_the_first_item(owner: Owner) -> None:
    items = owner.count(3)
    assert owner.portal is None
    assert list(items) == [0, 1, 2]
    assert owner.portal is not None
    assert owner.loops == {owner.portal.loop}
    assert owner.closed == [3]


def test_leaving_the_loop_early_closes_the_async_generator(owner: Owner) -> None:
    items = owner.count(10)
    assert next(items) == 0
    assert owner.closed == []
    items.close()
    assert owner.closed == [10]


def test_a_sync_call_on_the_portals_own_loop_is_refused(owner: Owner) -> None:
    async def inner() -> int:
        return owner.twice(1)

    with pytest.raises(RuntimeError, match="own event loop"):
        owner._portal().run(inner())
