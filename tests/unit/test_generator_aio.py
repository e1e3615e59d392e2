"""The ``aio`` submodule of a generated client: the same calls, every one a coroutine."""

from __future__ import annotations

import asyncio
import datetime
import importlib
import inspect
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from demessaging.backend import serve
from demessaging.codegen import generate
from demessaging.errors import GeneratorError, InvalidArgumentsError, RemoteError

ROOT = Path(__file__).resolve().parents[2]
KITCHEN = ROOT / "tests" / "data" / "kitchen_sink.py"


def _import(root: Path, package: str) -> tuple[ModuleType, ModuleType]:
    sys.path.insert(0, str(root))
    return importlib.import_module(package), importlib.import_module(f"{package}.aio")


def _forget(root: Path, package: str) -> None:
    sys.modules[package]._remote.close()
    for name in [m for m in sys.modules if m == package or m.startswith(f"{package}.")]:
        sys.modules.pop(name)
    sys.path.remove(str(root))


@pytest.fixture(scope="module")
def kitchen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ModuleType, ModuleType]]:
    """The kitchen_sink client and its aio face, with the backend served on a memory broker."""
    tag = uuid.uuid4().hex[:8]
    broker_url = f"memory://aio-{tag}"
    package = generate(
        KITCHEN, tmp_path_factory.mktemp("aio"), name=f"ks-aio-{tag}", broker_url=broker_url
    )
    with serve(KITCHEN, broker_url=broker_url, topic="kitchen_sink", workers=16):
        yield _import(package.root, package.package)
    _forget(package.root, package.package)


def test_aio_calls_functions_and_instance_static_and_class_methods(
    kitchen: tuple[ModuleType, ModuleType],
) -> None:
    ks, aio = kitchen
    assert aio._remote is ks._remote  # one connection per package
    assert aio.Colour is ks.Colour
    assert aio.Station is ks.Station

    async def main() -> None:
        scaled = await aio.scale(np.array([1.0, 2.0]), 3.0, offset=1.0)
        assert scaled.tolist() == [4.0, 7.0]
        station = aio.Station(code="ABC", colour=aio.Colour.GREEN)
        summary = await aio.describe(station, level=aio.Level.HIGH, grid=np.zeros((3, 2), np.int32))
        assert summary == {"code": "ABC", "when": "2024-01-01", "level": 2, "rows": 3}
        window = aio.Window(datetime.datetime(2024, 1, 1), datetime.datetime(2024, 1, 2, 6))
        assert await aio.window_length(window) == datetime.timedelta(hours=30)
        assert await aio.wait_and_add(2, 3) == 5
        assert await aio.root(16.0) == 4.0
        counter = aio.Counter(start=5, step=2)
        assert await counter.after(3) == 11
        assert await aio.Counter.double(4) == 8
        assert await aio.Counter.name() == "Counter"
        assert await aio.Derived().hello("you") == "hello you"
        assert await aio.Derived().bye() == "bye"
        with pytest.raises(RemoteError, match="math domain error"):
            await aio.root(-1.0)

    asyncio.run(main())
    # the sync face is unchanged: the backend's coroutine function stays one there too
    assert not inspect.iscoroutinefunction(ks.root)
    assert inspect.iscoroutinefunction(ks.wait_and_add)
    assert ks.Counter(start=5, step=2).after(3) == 11


def test_aio_raises_declared_errors_as_the_packages_types(
    kitchen: tuple[ModuleType, ModuleType],
) -> None:
    ks, aio = kitchen
    assert aio.BurntError is ks.BurntError

    async def main() -> None:
        assert await aio.cook(5) == "done"
        with pytest.raises(ks.BurntError, match=r"^12 minutes is too long$") as burnt:
            await aio.cook(12)
        assert isinstance(burnt.value.__cause__, RemoteError)
        assert burnt.value.__cause__.remote_type == "kitchen_sink.BurntError"
        with pytest.raises(RemoteError, match="KeyError: 'nothing to cook'"):
            await aio.cook(0)

    asyncio.run(main())


def test_aio_validates_arguments_before_anything_is_sent(tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:8]  # nobody serves this broker: a call that were sent would hang
    package = generate(
        KITCHEN, tmp_path, name=f"ks-unserved-{tag}", broker_url=f"memory://{tag}", timeout=30
    )
    _, aio = _import(package.root, package.package)
    try:
        start = time.monotonic()
        with pytest.raises(InvalidArgumentsError, match=r"Counter\(\).*start"):
            aio.Counter(start="many")  # the constructor checks, as the sync class's does
        with pytest.raises(InvalidArgumentsError, match=r"describe\(\).*station"):
            asyncio.run(aio.describe({"code": "lowercase"}))
        with pytest.raises(InvalidArgumentsError, match=r"scale\(\).*offset"):
            asyncio.run(aio.scale(np.ones(2), 2.0, offset=-1.0))
        with pytest.raises(InvalidArgumentsError, match=r"Counter.after\(\).*n"):
            asyncio.run(aio.Counter().after("three"))
        assert time.monotonic() - start < 5
    finally:
        _forget(package.root, package.package)


def test_500_concurrent_aio_calls_on_one_loop(kitchen: tuple[ModuleType, ModuleType]) -> None:
    _, aio = kitchen

    async def main() -> tuple[list[float], list[int]]:
        roots = asyncio.gather(*(aio.root(float(i * i)) for i in range(250)))
        steps = asyncio.gather(*(aio.Counter(start=i, step=3).after(2) for i in range(250)))
        return await asyncio.wait_for(asyncio.gather(roots, steps), timeout=30)

    start = time.monotonic()
    roots, steps = asyncio.run(main())
    assert roots == [float(i) for i in range(250)]
    assert steps == [i + 6 for i in range(250)]
    assert time.monotonic() - start < 15


def test_aio_and_sync_faces_from_running_loops_in_other_threads(
    kitchen: tuple[ModuleType, ModuleType],
) -> None:
    ks, aio = kitchen
    results: dict[str, object] = {}

    async def in_a_thread(name: str) -> None:
        sync = ks.root(81.0)  # the sync face, called while this thread's own loop runs
        both = await asyncio.gather(aio.root(49.0), asyncio.to_thread(ks.Counter.double, 21))
        results[name] = (sync, *both)

    threads = [threading.Thread(target=asyncio.run, args=(in_a_thread(f"t{i}"),)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == {f"t{i}": (9.0, 7.0, 42) for i in range(3)}


def test_a_backend_member_named_aio_is_refused(
    write_backend: Callable[[str], Path], tmp_path: Path
) -> None:
    path = write_backend('def aio(x: int) -> int:\n    """Twice x."""\n    return 2 * x\n')
    with pytest.raises(GeneratorError, match="'aio'"):
        generate(path, tmp_path / "out")
