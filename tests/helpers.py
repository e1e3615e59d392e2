"""Helpers shared by the test suites (fixtures are in the conftest files and tests/brokers.py)."""

from __future__ import annotations

import contextlib
import importlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from hypothesis import HealthCheck, settings

from demessaging.codegen import generate
from demessaging.transport.admin import PulsarAdmin

__all__ = ["forget_package", "fuzz", "generated_client", "rss_bytes", "unacknowledged"]


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


def rss_bytes(pid: int) -> int:
    """The resident memory of the process ``pid`` in bytes (Linux: ``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def unacknowledged(admin_url: str, topic: str, *, seconds: float = 15.0) -> dict[str, int]:
    """Messages left on the subscriptions of ``topic`` (Apache Pulsar's admin REST API).

    ``topic`` is a short name in ``public/default``. Returns, by subscription, its backlog
    plus its unacknowledged messages once all are 0, or their last values after
    ``seconds`` (acknowledgements reach the broker a moment after the work is done).
    """
    path = f"/admin/v2/persistent/public/default/{topic}/stats"
    deadline = time.monotonic() + seconds
    while True:
        stats = PulsarAdmin(admin_url).request("GET", path)
        left = {
            name: int(sub.get("msgBacklog", 0)) + int(sub.get("unackedMessages", 0))
            for name, sub in stats.get("subscriptions", {}).items()
        }
        if not any(left.values()) or time.monotonic() > deadline:
            return left
        time.sleep(0.5)
