"""Helpers of the unit tests: backend modules written into a temporary directory.

Every module gets a name unique in the test session (``dmu_<name>_<n>``), because the loader
registers a file module in ``sys.modules`` under its stem; modules the test imported under
such names are removed from ``sys.modules`` afterwards.
"""

from __future__ import annotations

import itertools
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from demessaging.backend.dispatcher import Dispatcher
from demessaging.core import ModuleModels, ModuleSpec, build_models, inspect_module
from tests.fakes import FakeAdmin

PREFIX = "dmu_"
_serial = itertools.count()


def unique_name(name: str = "mod") -> str:
    """A module name no other test uses."""
    return f"{PREFIX}{name}_{next(_serial)}"


def write_source(directory: Path, source: str, name: str = "mod") -> Path:
    """Write ``source`` (dedented) to ``directory/<unique name>.py``; returns the path."""
    path = directory / f"{unique_name(name)}.py"
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def _forget_new_modules(before: set[str]) -> None:
    for name in set(sys.modules) - before:
        if name.startswith(PREFIX):
            sys.modules.pop(name, None)


@pytest.fixture(autouse=True)
def _forget_test_modules() -> Iterator[None]:
    """Remove the test modules a test imported from ``sys.modules`` after it, and the folders
    the loader put on ``sys.path`` for them."""
    before = set(sys.modules)
    path = list(sys.path)
    yield
    _forget_new_modules(before)
    sys.path[:] = path


@pytest.fixture
def fresh_name() -> Callable[..., str]:
    """``fresh_name(name)``: a module name no other test uses."""
    return unique_name


@pytest.fixture
def write_module(tmp_path: Path) -> Callable[..., Path]:
    """``write_module(source, name="mod")``: a module file with a unique name in tmp_path."""

    def write(source: str, name: str = "mod") -> Path:
        return write_source(tmp_path, source, name)

    return write


@pytest.fixture(scope="module")
def shared_models(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., ModuleModels]]:
    """``shared_models(source)``: models of a module written once for a whole test file."""
    before = set(sys.modules)
    directory = tmp_path_factory.mktemp("shared")

    def make(source: str, name: str = "mod") -> ModuleModels:
        return build_models(inspect_module(write_source(directory, source, name)))

    yield make
    _forget_new_modules(before)


@pytest.fixture
def module_spec(write_module: Callable[..., Path]) -> Callable[..., ModuleSpec]:
    """``module_spec(source)``: write a module and introspect it."""

    def make(source: str, name: str = "mod") -> ModuleSpec:
        return inspect_module(write_module(source, name))

    return make


@pytest.fixture
def module_models(module_spec: Callable[..., ModuleSpec]) -> Callable[..., ModuleModels]:
    """``module_models(source)``: write a module, introspect it and build its models."""

    def make(source: str, name: str = "mod") -> ModuleModels:
        return build_models(module_spec(source, name))

    return make


@pytest.fixture
def make_dispatcher(module_models: Callable[..., ModuleModels]) -> Callable[..., Dispatcher]:
    """``make_dispatcher(source, debug=False)``: a dispatcher of a freshly written module."""

    def make(source: str, name: str = "mod", debug: bool = False) -> Dispatcher:
        return Dispatcher(module_models(source, name), debug=debug)

    return make


@pytest.fixture
def fake() -> Iterator[FakeAdmin]:
    """A fake admin REST API serving for the test (its ``routes`` set by the test)."""
    with FakeAdmin().serving() as admin:
        yield admin
