"""Compare a generated client module with the backend module it mirrors.

Used in-process by the tests, and as a script inside a throw-away virtual environment::

    python compare_mirror.py ORIGINAL.py PACKAGE [PACKAGE.aio]    # prints a JSON report

A module named ``*.aio`` is compared as the package's async face: every function and method a
coroutine function, and the types the package's own objects.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import importlib
import inspect
import json
import math
import sys
import typing
import warnings
from types import ModuleType
from typing import Any

from pydantic import TypeAdapter

from demessaging.core.introspection import inspect_module, is_data_type
from demessaging.core.loader import load_module


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b) or (type(a).__qualname__ == type(b).__qualname__ and repr(a) == repr(b))


def compare(
    original: ModuleType, mirror: ModuleType, *, coroutines: bool = False
) -> tuple[list[str], int]:
    """Return (problems, number of callables and types checked).

    With ``coroutines``, ``mirror`` is a package's async face: its functions and methods must
    all be coroutine functions, and its types (and ``__all__``) those of its package.
    """
    problems: list[str] = []
    checked = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = inspect_module(original)
        if coroutines:  # async generators cannot be introspected: the names must do
            names = [n for n in mirror.__all__ if not is_data_type(getattr(mirror, n))]
        else:
            names = [m.name for m in inspect_module(mirror).members]
    namespace = dict(vars(mirror))
    reproduced = [
        name
        for name in getattr(mirror, "__all__", [])
        if is_data_type(getattr(original, name, None))
    ]
    namespace.update({name: getattr(original, name) for name in reproduced})

    served = sorted(m.name for m in spec.members)
    if served != sorted(names):
        problems.append(f"served members differ: {served} vs {sorted(names)}")

    def same_callable(label: str, f: Any, g: Any, skip_first: bool = False) -> None:
        nonlocal checked
        checked += 1
        if f.__doc__ != g.__doc__:
            problems.append(f"{label}: docstring {f.__doc__!r} != {g.__doc__!r}")
        pf = list(inspect.signature(f).parameters.values())[int(skip_first) :]
        pg = list(inspect.signature(g).parameters.values())[int(skip_first) :]
        if [(p.name, p.kind) for p in pf] != [(p.name, p.kind) for p in pg]:
            problems.append(f"{label}: parameters {pf} != {pg}")
            return
        for a, b in zip(pf, pg, strict=True):
            if not _same_value(a.default, b.default):
                problems.append(f"{label}({a.name}): default {a.default!r} != {b.default!r}")
        hf = typing.get_type_hints(f, include_extras=True)
        hg = typing.get_type_hints(g, globalns=namespace, include_extras=True)
        streams = inspect.isgeneratorfunction(f)
        if streams and coroutines:  # the async face of a generator is an async generator
            hf["return"] = collections.abc.AsyncIterator[typing.get_args(hf["return"])[0]]
            if not inspect.isasyncgenfunction(g):
                problems.append(f"{label}: not an async generator function")
        elif streams and not inspect.isgeneratorfunction(g):
            problems.append(f"{label}: not a generator function")
        for key in sorted(set(hf) | set(hg)):
            if hf.get(key) != hg.get(key):
                problems.append(f"{label}({key}): annotation {hf.get(key)!r} != {hg.get(key)!r}")
        if streams:
            pass
        elif coroutines and not label.endswith(".__init__") and not inspect.iscoroutinefunction(g):
            problems.append(f"{label}: not a coroutine function")
        elif not coroutines and inspect.iscoroutinefunction(f) != inspect.iscoroutinefunction(g):
            problems.append(f"{label}: async differs")

    for function in spec.functions:
        same_callable(
            function.name, getattr(original, function.name), getattr(mirror, function.name)
        )
    for cls in spec.classes:
        ours, theirs = getattr(original, cls.name), getattr(mirror, cls.name)
        if ours.__doc__ != theirs.__doc__:
            problems.append(f"{cls.name}: class docstring differs")
        init_o, init_m = ours.__init__, theirs.__init__
        if init_o is not object.__init__:
            same_callable(f"{cls.name}.__init__", init_o, init_m, skip_first=True)
        for method in cls.methods:
            kind_o = type(inspect.getattr_static(ours, method.name)).__name__
            kind_m = type(inspect.getattr_static(theirs, method.name)).__name__
            if kind_o != kind_m:
                problems.append(f"{cls.name}.{method.name}: {kind_o} != {kind_m}")
            same_callable(
                f"{cls.name}.{method.name}",
                getattr(ours, method.name),
                getattr(theirs, method.name),
            )

    if coroutines:  # its types are the package's, which a comparison of the package checks
        package = sys.modules[mirror.__package__ or ""]
        if sorted(package.__all__) != sorted(mirror.__all__):
            problems.append(f"__all__: {package.__all__} != {mirror.__all__}")
        for name in sorted(set(mirror.__all__) - set(served)):
            checked += 1
            if getattr(mirror, name) is not getattr(package, name):
                problems.append(f"{name}: not the package's own")
        return problems, checked
    for name in reproduced:
        checked += 1
        ours, theirs = getattr(original, name), getattr(mirror, name)
        doc_o, doc_m = vars(ours).get("__doc__"), vars(theirs).get("__doc__")
        if doc_o != doc_m and not dataclasses.is_dataclass(ours):
            problems.append(f"type {name}: docstring {doc_o!r} != {doc_m!r}")
        if issubclass(ours, BaseException):  # an error: its bases matter, by name
            names_o = [b.__qualname__ for b in ours.__mro__]
            names_m = [b.__qualname__ for b in theirs.__mro__]
            if names_o != names_m:
                problems.append(f"error {name}: bases {names_o} != {names_m}")
            continue
        schema_o = TypeAdapter(ours).json_schema()
        schema_m = TypeAdapter(theirs).json_schema()
        if schema_o != schema_m:
            problems.append(f"type {name}: JSON Schema {schema_o} != {schema_m}")
    return problems, checked


def main() -> None:
    original = load_module(sys.argv[1])
    report = {}
    for name in sys.argv[2:]:
        mirror = importlib.import_module(name)
        problems, checked = compare(original, mirror, coroutines=name.endswith(".aio"))
        report[name] = {"problems": problems, "checked": checked, "file": mirror.__file__}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
