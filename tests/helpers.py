"""Helpers shared by the test suites (fixtures are in the conftest files and tests/brokers.py)."""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from hypothesis import HealthCheck, settings

from demessaging.codegen import generate

__all__ = ["forget_package", "generated_client"]


@contextlib.contextmanager
def generated_client(target: Path, output: Path, **options: Any) -> Iterator[ModuleType]:
    """Generate a client package of ``target`` into ``output`` and import it.

    ``options`` go to :func:`~demessaging.codegen.generate` (``name``, ``topic``,
    ``broker_url``...). On leaving, the package's connection is closed, and it and its
    submodules are removed from ``sys.modules`` and its folder from ``sys.path``.
    """
    package = generate(target, output, **options)
    sys.path.insert(0, str(package.root))
    try:
        yield importlib.import_module(package.package)
    finally:
        forget_package(package.package, package.root)


def forget_package(package: str, root: Path) -> None:
    """Close a generated package's connection; remove it from ``sys.modules`` and ``sys.path``."""
    module = sys.modules.get(package)
    if module is not None and hasattr(module, "_remote"):
        module._remote.close()
    for name in [m for m in sys.modules if m == package or m.startswith(f"{package}.")]:
        sys.modules.pop(name)
    with contextlib.suppress(ValueError):
        sys.path.remove(str(root))


def fuzz(examples: int, *suppressed: HealthCheck) -> Any:
    """Hypothesis settings of the fuzz tests: ``examples`` of them, no deadline, no database.

    Generating wire input is slow by nature: ``too_slow`` is always suppressed, and so are
    the health checks in ``suppressed``.
    """
    return settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, *suppressed],
    )
