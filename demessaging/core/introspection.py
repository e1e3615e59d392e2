"""Introspection: a module's functions and classes become specs (:mod:`.specs`).

:func:`inspect_module` picks the members a module serves, :func:`inspect_class` and
:func:`inspect_function` read their signatures, annotations, docstrings and
:func:`~demessaging.core.configure.configure` settings, and refuse what a request cannot
carry.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import inspect
import typing
import warnings
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import typing_extensions
from pydantic import BaseModel

from ..errors import DemessagingWarning, ModuleLoadError, SignatureError
from .arrays import prepare_annotation
from .configure import MemberConfig, config_of
from .docstrings import parse_docstring
from .loader import load_module
from .reporter import is_progress_report
from .specs import ClassSpec, FunctionSpec, MemberKind, ModuleSpec, ParameterSpec

__all__ = ["inspect_class", "inspect_function", "inspect_module", "is_data_type"]

#: What a generator function may be annotated to return.
_STREAMS = (collections.abc.Iterator, collections.abc.Iterable, collections.abc.Generator)
_SERVED_KINDS = (
    inspect.Parameter.POSITIONAL_ONLY,
    inspect.Parameter.POSITIONAL_OR_KEYWORD,
    inspect.Parameter.KEYWORD_ONLY,
)


def is_data_type(obj: object) -> bool:
    """Whether a class is a data type that signatures exchange rather than a class to serve.

    Enums, pydantic models, dataclasses, TypedDicts, NamedTuples, exceptions and protocols
    are data types: they are never served as classes.
    """
    if not isinstance(obj, type):
        return False
    return (
        issubclass(obj, enum.Enum | BaseModel | BaseException)
        or dataclasses.is_dataclass(obj)
        or typing_extensions.is_typeddict(obj)
        or (issubclass(obj, tuple) and hasattr(obj, "_fields"))
        or bool(getattr(obj, "_is_protocol", False))
    )


def inspect_module(target: str | Path | ModuleType) -> ModuleSpec:
    """Introspect the functions and classes a module serves.

    Parameters
    ----------
    target
        A file path, a dotted module name or a module.

    Returns
    -------
    ModuleSpec
        The members are ``__all__`` if the module defines it (constants and data types in it
        are skipped), otherwise the public functions and classes defined in the module itself,
        not the ones it imports.

    Raises
    ------
    ModuleLoadError
        If the module cannot be imported, ``__all__`` names something missing, or nothing is
        left to serve.
    SignatureError
        If a member's signature cannot be served.
    """
    module = load_module(target)
    functions: list[FunctionSpec] = []
    classes: list[ClassSpec] = []
    for name, obj in _members(module):
        if inspect.isclass(obj):
            classes.append(inspect_class(obj, name=name))
        else:
            functions.append(inspect_function(obj, name=name))
    if not functions and not classes:
        raise ModuleLoadError(
            f"module {module.__name__!r} has no public functions or classes to serve"
        )
    return ModuleSpec(
        name=module.__name__,
        module=module,
        functions=tuple(functions),
        classes=tuple(classes),
        doc=module.__doc__,
        info=parse_docstring(module.__doc__),
        errors=_errors(module),
    )


def _errors(module: ModuleType) -> dict[str, type[BaseException]]:
    declared = getattr(module, "__all__", None)
    if declared is None:
        candidates = [
            (name, obj)
            for name, obj in vars(module).items()
            if not name.startswith("_") and getattr(obj, "__module__", None) == module.__name__
        ]
    else:
        candidates = [(name, getattr(module, name)) for name in declared]
    return {
        name: obj
        for name, obj in candidates
        if isinstance(obj, type) and issubclass(obj, Exception)
    }


def _members(module: ModuleType) -> list[tuple[str, Any]]:
    declared = getattr(module, "__all__", None)
    if declared is None:
        return [
            (name, obj)
            for name, obj in vars(module).items()
            if not name.startswith("_")
            and (inspect.isfunction(obj) or (inspect.isclass(obj) and not is_data_type(obj)))
            and getattr(obj, "__module__", None) == module.__name__
        ]
    members = []
    for name in declared:
        if not hasattr(module, name):
            raise ModuleLoadError(f"{module.__name__}.__all__ names {name!r}, which is not defined")
        obj = getattr(module, name)
        if inspect.isfunction(obj) or (inspect.isclass(obj) and not is_data_type(obj)):
            members.append((name, obj))
        elif callable(obj) and not inspect.isclass(obj):
            warnings.warn(
                f"{module.__name__}.{name} is not a Python function (a builtin, a partial or "
                "another callable object) and is not served",
                DemessagingWarning,
                stacklevel=3,
            )
    return members


def inspect_function(
    func: Callable[..., Any],
    *,
    name: str | None = None,
    owner: type | None = None,
    kind: MemberKind = "function",
    config: MemberConfig | None = None,
) -> FunctionSpec:
    """Introspect one function or method.

    Parameters
    ----------
    func
        The function (for static and class methods, the function they wrap).
    name
        The name it is served under; defaults to ``func.__name__``.
    owner
        The class, for methods.
    kind
        What ``func`` is to ``owner``.
    config
        Its :func:`~demessaging.core.configure.configure` settings; by default the ones
        ``func`` is decorated with.

    Raises
    ------
    SignatureError
        For ``*args``/``**kwargs``, async generator functions, generator functions not
        annotated to return an iterator, reserved or private parameter names and annotations
        that cannot be resolved. (Generator functions are served: their items stream.)
    """
    name = name or func.__name__
    qualname = f"{owner.__name__}.{name}" if owner is not None else name
    if inspect.isasyncgenfunction(func):
        raise SignatureError(qualname, None, "async generator functions cannot be served yet")
    streams = inspect.isgeneratorfunction(func)
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise SignatureError(qualname, None, f"its signature cannot be read: {exc}") from exc
    hints = _resolve_annotations(func, owner, qualname)
    config = config or config_of(func)
    doc = config.doc or func.__doc__
    info = parse_docstring(doc)
    params = list(signature.parameters.values())
    if kind in ("method", "classmethod") or (owner is not None and name == "__init__"):
        params = params[1:]
    unknown = config.named_parameters() - {p.name for p in params}
    if unknown:
        raise SignatureError(
            qualname, sorted(unknown)[0], "configure() names a parameter the signature lacks"
        )
    reserved = _reserved_names(kind, owner, name)
    specs = []
    reporters = []
    for param in params:
        if param.kind not in _SERVED_KINDS:
            star = "*" if param.kind is inspect.Parameter.VAR_POSITIONAL else "**"
            raise SignatureError(
                qualname,
                param.name,
                f"{star}{param.name} cannot be sent in a request; declare each parameter by name",
            )
        if param.name.startswith("_"):
            raise SignatureError(
                qualname, param.name, "names starting with '_' cannot be sent in a request"
            )
        if param.name in reserved:
            raise SignatureError(
                qualname, param.name, f"{param.name!r} is reserved by the request layout"
            )
        if is_progress_report(hints.get(param.name)):
            reporters.append(
                ParameterSpec(param.name, param.kind, hints[param.name], param.default)
            )
            continue
        annotated = param.name in hints or param.name in config.annotations
        if not annotated:
            warnings.warn(
                f"parameter {param.name!r} of {qualname!r} has no annotation; "
                "it accepts any JSON value and is not validated",
                DemessagingWarning,
                stacklevel=2,
            )
        hint = hints.get(param.name, Any)
        specs.append(
            ParameterSpec(
                name=param.name,
                kind=param.kind,
                annotation=config.parameter(param.name, hint, _native(hint)),
                default=config.default(param.name, param.default),
                description=config.description(param.name, info.params.get(param.name, "")),
                annotated=annotated,
            )
        )
    returns_annotated = "return" in hints or config.return_annotation is not None
    if not returns_annotated and name != "__init__":
        warnings.warn(
            f"{qualname!r} has no return annotation; its result is sent as it is, unvalidated",
            DemessagingWarning,
            stacklevel=2,
        )
    returns = hints.get("return", None if name == "__init__" else Any)
    if streams and typing.get_origin(returns) not in _STREAMS:
        raise SignatureError(
            qualname,
            None,
            "a generator function must be annotated to return Iterator[T], Iterable[T] or "
            f"Generator[T, None, None], not {returns!r}",
        )
    return FunctionSpec(
        name=name,
        qualname=qualname,
        func=func,
        kind=kind,
        parameters=tuple(specs),
        returns=config.result(returns, _native(returns)) if name != "__init__" else returns,
        doc=doc,
        info=info,
        is_async=inspect.iscoroutinefunction(func),
        returns_annotated=returns_annotated,
        reporters=tuple(reporters),
        schema_extra=config.json_schema_extra,
        streams=streams,
    )


def _native(annotation: Any) -> bool:
    """Whether demessaging encodes values of this type itself (arrays, xarray objects)."""
    return prepare_annotation(annotation) is not annotation


def inspect_class(cls: type, *, name: str | None = None) -> ClassSpec:
    """Introspect a served class: constructor arguments and public methods.

    Methods come from the class and its bases (``object`` excluded); properties and other
    attributes are not served. Constructor parameters take their descriptions from the class
    docstring and from ``__init__``'s.
    """
    name = name or cls.__name__
    config = config_of(cls)
    class_info = parse_docstring(config.doc or cls.__doc__)
    init = cls.__init__  # type: ignore[misc]
    if init is object.__init__:
        constructor = FunctionSpec(
            name="__init__",
            qualname=f"{name}.__init__",
            func=init,
            kind="method",
            parameters=(),
            returns=None,
        )
    else:
        constructor = inspect_function(
            init,
            name="__init__",
            owner=cls,
            kind="method",
            config=replace(config, doc=config.init_doc, json_schema_extra=None),
        )
        merged = class_info.merged(constructor.info)
        constructor = dataclasses.replace(
            constructor,
            parameters=tuple(
                dataclasses.replace(
                    p, description=config.description(p.name, merged.params.get(p.name, ""))
                )
                for p in constructor.parameters
            ),
        )
    found = _public_methods(cls)
    if config.methods is not None:
        by_name = {attr: (attr, func, kind) for attr, func, kind in _all_methods(cls)}
        missing = [m for m in config.methods if m not in by_name]
        if missing:
            raise SignatureError(
                name, None, f"configure(methods=...) names {missing[0]!r}, which is not a method"
            )
        found = [by_name[m] for m in config.methods]
    methods = [
        inspect_function(func, name=attr, owner=cls, kind=kind) for attr, func, kind in found
    ]
    return ClassSpec(
        name=name,
        cls=cls,
        constructor=constructor,
        methods=tuple(methods),
        doc=config.doc or cls.__doc__,
        info=class_info,
        schema_extra=config.json_schema_extra,
    )


def _public_methods(cls: type) -> list[tuple[str, Callable[..., Any], MemberKind]]:
    return [m for m in _all_methods(cls) if not m[0].startswith("_")]


def _all_methods(cls: type) -> list[tuple[str, Callable[..., Any], MemberKind]]:
    found: list[tuple[str, Callable[..., Any], MemberKind]] = []
    seen: set[str] = set()
    for base in cls.__mro__:
        if base is object or base.__module__ == "builtins":
            continue
        for attr, value in vars(base).items():
            if attr in seen or (attr.startswith("__") and attr.endswith("__")):
                continue
            seen.add(attr)  # a subclass's attribute hides the bases' one, method or not
            if isinstance(value, staticmethod):
                found.append((attr, value.__func__, "staticmethod"))
            elif isinstance(value, classmethod):
                found.append((attr, value.__func__, "classmethod"))
            elif inspect.isfunction(value):
                found.append((attr, value, "method"))
    return found


def _reserved_names(kind: MemberKind, owner: type | None, name: str) -> frozenset[str]:
    if owner is not None and name == "__init__":
        return frozenset({"class_name", "function"})
    if owner is None:  # a top-level class_name would make the request a class request
        return frozenset({"func_name", "class_name"})
    return frozenset({"func_name"})


def _resolve_annotations(
    func: Callable[..., Any], owner: type | None, qualname: str
) -> dict[str, Any]:
    """Evaluate each annotation on its own, so that a failure names its parameter."""
    raw: Mapping[str, Any] = getattr(inspect.unwrap(func), "__annotations__", None) or {}
    globalns = getattr(inspect.unwrap(func), "__globals__", {})
    localns = dict(vars(owner)) if owner is not None else None
    resolved = {}
    for key, value in raw.items():
        stub: Any = lambda: None  # noqa: E731
        stub.__annotations__ = {key: value}
        try:
            resolved[key] = typing.get_type_hints(
                stub, globalns=globalns, localns=localns, include_extras=True
            )[key]
        except Exception as exc:
            raise SignatureError(
                qualname,
                key,
                f"annotation {value!r} cannot be resolved ({type(exc).__name__}: {exc}); "
                "names used in annotations must be importable at run time, "
                "not only under TYPE_CHECKING",
            ) from exc
    return resolved
