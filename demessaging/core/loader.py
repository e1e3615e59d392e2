"""Load a backend module from a file path or a dotted name."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from ..errors import ModuleLoadError

__all__ = ["load_module"]


def load_module(target: str | Path | ModuleType) -> ModuleType:
    """Import the module a backend serves.

    Parameters
    ----------
    target
        A path to a ``.py`` file (``"examples/climate.py"``), a dotted module name
        (``"mypackage.analysis"``), or an already imported module.

    Returns
    -------
    ModuleType
        The imported module. A file is imported under its stem and registered in
        ``sys.modules``, so that types it defines resolve (pydantic, dataclasses and
        ``from __future__ import annotations`` need that). Its folder goes first on
        ``sys.path``, as ``python module.py`` puts it, so the modules next to it import
        (also later, from inside its functions); it stays there.

    Raises
    ------
    ModuleLoadError
        If the file or module does not exist, or importing it raises.
    """
    if isinstance(target, ModuleType):
        return target
    text = str(target)
    path = Path(text)
    if text.endswith(".py") or path.is_file():
        return _load_file(path)
    try:
        return importlib.import_module(text)
    except ModuleNotFoundError as exc:
        if exc.name and (text == exc.name or text.startswith(f"{exc.name}.")):
            raise ModuleLoadError(
                f"no module named {text!r} (and no file of that name); pass a path to a .py "
                "file or the dotted name of an importable module"
            ) from exc
        raise ModuleLoadError(f"importing {text!r} failed: {exc}") from exc
    except Exception as exc:
        raise ModuleLoadError(f"importing {text!r} failed: {type(exc).__name__}: {exc}") from exc


def _load_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise ModuleLoadError(f"no such file: {str(path)!r}")
    path = path.resolve()
    name = path.stem if path.name != "__init__.py" else path.parent.name
    if not name.isidentifier():
        raise ModuleLoadError(f"{path.name!r} is not a valid module name; rename the file")
    existing = sys.modules.get(name)
    if existing is not None:
        if getattr(existing, "__file__", None) == str(path):
            return existing
        where = getattr(existing, "__file__", None) or "built in"
        raise ModuleLoadError(
            f"{path.name!r} has the name of the module {name!r} that is already imported "
            f"({where}); rename the file"
        )
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ModuleLoadError(f"cannot import {str(path)!r} as a Python module")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.parent)
    added = not sys.path or sys.path[0] != folder
    if added:
        sys.path.insert(0, folder)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        if added and sys.path and sys.path[0] == folder:
            sys.path.pop(0)
        raise ModuleLoadError(
            f"importing {str(path)!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    return module
