"""The client generator: a backend module in, a pip-installable client package out.

The package mirrors the backend module: the same functions and classes with the same
signatures, defaults, type hints and docstrings, whose bodies send the call through a
:class:`~demessaging.client.remote.RemoteModule`. The types the signatures use are imported
from their libraries or, when the backend defines them, reproduced. Its submodule ``aio`` has
the same functions and classes again with every function and method a coroutine; it imports
the reproduced types and the connection from the package rather than repeating them. The
sources are written by :mod:`.mirror`; this module writes the package around them.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ..config import DEFAULT_BROKER_URL, DEFAULT_TIMEOUT
from ..core.introspection import inspect_module
from ..core.specs import ModuleSpec
from ..errors import DemessagingWarning, GeneratorError
from ..pages.client import PAGE, write_package_docs
from .guard import requirement
from .mirror import render_sources
from .wheel import runtime_wheel

__all__ = ["GeneratedPackage", "generate", "partner_command", "render_module", "requirement"]


@dataclass(frozen=True)
class GeneratedPackage:
    """What :func:`generate` wrote.

    Attributes
    ----------
    root
        The directory to ``pip install``.
    distribution
        The distribution name (``pip install`` and ``pyproject.toml``).
    package
        The import name.
    dependencies
        The requirements written into ``pyproject.toml``.
    wheel
        The wheel of the demessaging runtime in ``root / "wheels"``, which
        :func:`partner_command` installs with the package.
    """

    root: Path
    distribution: str
    package: str
    dependencies: tuple[str, ...]
    wheel: Path


def generate(
    target: str | Path | ModuleType,
    output: str | Path,
    *,
    name: str | None = None,
    topic: str | None = None,
    broker_url: str | None = None,
    timeout: float | None = None,
    version: str = "0.1.0",
    force: bool = False,
) -> GeneratedPackage:
    """Write a client package for a backend module.

    The directory also gets ``wheels/``, a wheel of the demessaging runtime that runs this
    function; partners install both with :func:`partner_command`, and never another
    distribution named demessaging from the package index.

    Parameters
    ----------
    target
        The backend module: a file path, a dotted name or a module.
    output
        The directory to write the package into.
    name
        The distribution name; ``<module>-client`` by default. The import name is the same
        with ``-`` and ``.`` replaced by ``_``.
    topic
        The backend's topic; the module's name by default.
    broker_url
        The broker the client connects to by default. Without it, ``embedded://``: the
        broker of this machine only, which partners elsewhere replace by setting
        ``<PACKAGE>_BROKER_URL``; that warns (:class:`~demessaging.errors.DemessagingWarning`).
    timeout
        The default deadline of a call, in seconds.
    version
        The package's version.
    force
        Overwrite ``output`` if it exists and is not empty.

    Returns
    -------
    GeneratedPackage
        Where it went and what it is called.

    Raises
    ------
    GeneratorError
        If ``output`` is not empty (without ``force``), the name is invalid, or a type or
        default value in a signature cannot be written as source.
    """
    spec = inspect_module(target)
    distribution = name or f"{spec.name.rsplit('.', 1)[-1]}-client"
    package = re.sub(r"[-.]", "_", distribution).lower()
    if not package.isidentifier():
        raise GeneratorError(f"{distribution!r} does not give a valid import name")
    root = Path(output)
    if root.exists() and any(root.iterdir()):
        if not force:
            raise GeneratorError(
                f"{str(root)!r} is not empty; pass force=True (--force) to overwrite"
            )
        shutil.rmtree(root / package, ignore_errors=True)
        for old in (root / "wheels").glob("demessaging-*.whl"):
            old.unlink()
    source, aio, modules = render_sources(
        spec,
        topic=topic or spec.name.rsplit(".", 1)[-1],
        broker_url=broker_url or DEFAULT_BROKER_URL,
        timeout=timeout or DEFAULT_TIMEOUT,
        env_prefix=f"{package.upper()}_",
    )
    dependencies = _dependencies(modules)
    (root / package).mkdir(parents=True, exist_ok=True)
    (root / package / "__init__.py").write_text(source, encoding="utf-8")
    (root / package / "aio.py").write_text(aio, encoding="utf-8")
    (root / package / "py.typed").write_text("", encoding="utf-8")
    write_package_docs(
        root / package,
        spec,
        topic=topic or spec.name.rsplit(".", 1)[-1],
        broker_url=broker_url or DEFAULT_BROKER_URL,
        package=package,
    )
    (root / "pyproject.toml").write_text(
        _pyproject(distribution, package, version, spec.name, dependencies), encoding="utf-8"
    )
    (root / "README.md").write_text(_readme(distribution, package, spec, root), encoding="utf-8")
    wheel = runtime_wheel(root / "wheels")
    if broker_url is None:
        warnings.warn(
            f"{distribution} connects to {DEFAULT_BROKER_URL}, a broker of this machine only; "
            f"partners elsewhere would have to set {package.upper()}_BROKER_URL: pass the URL "
            "they reach as broker_url (--broker-url)",
            DemessagingWarning,
            stacklevel=2,
        )
    return GeneratedPackage(root, distribution, package, dependencies, wheel)


def partner_command(where: str | Path) -> str:
    """The command that installs the package written to ``where`` with its runtime.

    ``pip install --find-links DIR/wheels DIR``, with ``where`` as given; a bare relative
    name gets ``./`` in front, else pip would look it up on the package index.
    """
    path = str(where)
    if not Path(path).is_absolute() and not path.startswith("."):
        path = f"./{path}"
    path = path.rstrip("/\\") or path
    return f"pip install --find-links {path}/wheels {path}"


def render_module(
    spec: ModuleSpec,
    *,
    topic: str,
    broker_url: str,
    timeout: float,
    env_prefix: str,
    aio: bool = False,
) -> tuple[str, set[str]]:
    """The source of the mirror module, and the top-level modules its annotations import.

    With ``aio``, the source of its submodule ``aio`` instead, whose functions and methods
    are coroutines.
    """
    source, aio_source, modules = render_sources(
        spec, topic=topic, broker_url=broker_url, timeout=timeout, env_prefix=env_prefix
    )
    return aio_source if aio else source, modules


def _dependencies(modules: set[str]) -> tuple[str, ...]:
    found = {requirement()}
    owners = importlib.metadata.packages_distributions()
    for module in modules:
        if module in sys.stdlib_module_names or module == "demessaging":
            continue
        distributions = owners.get(module)
        if not distributions:
            raise GeneratorError(f"no installed distribution provides the module {module!r}")
        found.add(distributions[0])
    return tuple(sorted(found))


def _pyproject(
    distribution: str, package: str, version: str, module: str, dependencies: tuple[str, ...]
) -> str:
    deps = "".join(f'    "{d}",\n' for d in dependencies)
    return f"""[build-system]
requires = ["hatchling>=1.18"]
build-backend = "hatchling.build"

[project]
name = "{distribution}"
version = "{version}"
description = "Client of the {module} backend, generated by demessaging"
readme = "README.md"
requires-python = ">=3.10"
dependencies = [
{deps}]

[tool.hatch.build.targets.wheel]
packages = ["{package}"]

[tool.ruff]
line-length = 100
"""


def _readme(distribution: str, package: str, spec: ModuleSpec, root: Path) -> str:
    prefix = f"{package.upper()}_"
    names = ", ".join(f"`{m.name}`" for m in spec.members)
    return f"""# {distribution}

Client of the demessaging backend `{spec.name}`: {names}.

Install it, from the folder that holds `{root.name}/`, with the demessaging runtime it was
generated with (in `{root.name}/wheels/`; its other dependencies come from the package index):

```
{partner_command(root.name)}
```

```python
import {package}
from {package} import aio  # the same functions and classes, every call awaited
```

Every function and class has the signature and docstring of the backend's; calls run on the
backend. Settings come from the environment, else from what the package was generated with:
`{prefix}BROKER_URL`, `{prefix}TOPIC`, `{prefix}TIMEOUT` (seconds), then the same with
`DEMESSAGING_`, except the topic, which only `{prefix}TOPIC` changes.

The API page, [`{package}/{PAGE}`]({package}/{PAGE}), shows every function and class with its
types and example requests; `python -m {package} docs` opens it (`docs --print`: prints its
path). `{package}/docs/asyncapi.json` describes the backend's messages in AsyncAPI 3.0.
"""
