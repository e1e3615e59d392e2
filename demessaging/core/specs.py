"""The specs: what a module serves, as frozen, broker-neutral data.

The specs hold what a signature and a docstring say (names, kinds, resolved annotations,
defaults, descriptions). :mod:`demessaging.core.introspection` makes them from a module,
:mod:`demessaging.core.models` turns them into pydantic models, the client generator into
source code.
"""

from __future__ import annotations

import inspect
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal

from .docstrings import DocInfo

__all__ = ["EMPTY", "ClassSpec", "FunctionSpec", "MemberKind", "ModuleSpec", "ParameterSpec"]

MemberKind = Literal["function", "method", "staticmethod", "classmethod"]
#: The default of a required parameter.
EMPTY: Any = inspect.Parameter.empty


@dataclass(frozen=True)
class ParameterSpec:
    """One parameter of a served function or method.

    Attributes
    ----------
    name
        The parameter's name, which is also its key in the request.
    kind
        ``inspect.Parameter`` kind: positional-only, positional-or-keyword or keyword-only.
    annotation
        The resolved annotation; ``typing.Any`` where the source has none.
    default
        The default value, or ``inspect.Parameter.empty`` if the parameter is required.
    description
        From the docstring.
    annotated
        Whether the source annotates the parameter.
    """

    name: str
    kind: inspect._ParameterKind
    annotation: Any
    default: Any = EMPTY
    description: str = ""
    annotated: bool = True

    @property
    def required(self) -> bool:
        """Whether a request must carry this parameter."""
        return self.default is EMPTY


@dataclass(frozen=True)
class FunctionSpec:
    """A served function, or a method of a served class.

    Attributes
    ----------
    name
        The function's or method's own name (the request's ``func_name``).
    qualname
        ``name`` for functions, ``Class.name`` for methods.
    func
        The underlying Python function (for static and class methods, the wrapped function).
    kind
        ``"function"``, ``"method"``, ``"staticmethod"`` or ``"classmethod"``.
    parameters
        The parameters a request carries (``self`` and ``cls`` excluded).
    returns
        The resolved return annotation; ``typing.Any`` where the source has none.
    doc
        The raw docstring, as the client mirror reproduces it.
    info
        The parsed docstring.
    is_async
        Whether the function is a coroutine function.
    reporters
        Parameters the backend fills with a progress report (DASF's ``deprogressapi``);
        requests never carry them.
    schema_extra
        Merged into the JSON Schema of the request (``configure(json_schema_extra=...)``).
    streams
        Whether it is a generator function: callers get its items one by one, each validated
        against :attr:`item`.
    """

    name: str
    qualname: str
    func: Callable[..., Any]
    kind: MemberKind
    parameters: tuple[ParameterSpec, ...]
    returns: Any
    doc: str | None = None
    info: DocInfo = field(default_factory=DocInfo)
    is_async: bool = False
    returns_annotated: bool = True
    reporters: tuple[ParameterSpec, ...] = ()
    schema_extra: Mapping[str, Any] | None = None
    streams: bool = False

    @property
    def item(self) -> Any:
        """The type of each item a generator function yields (``T`` of ``Iterator[T]``)."""
        returns = self.returns
        while typing.get_origin(returns) is typing.Annotated:  # configure(returns=...) and such
            returns = typing.get_args(returns)[0]
        args = typing.get_args(returns)
        return args[0] if self.streams and args else Any

    @property
    def needs_instance(self) -> bool:
        """Whether calling it requires an instance built from the constructor arguments."""
        return self.kind == "method"


@dataclass(frozen=True)
class ClassSpec:
    """A served class: its constructor and its public methods.

    Attributes
    ----------
    name
        The class name (the request's ``class_name``).
    cls
        The class itself.
    constructor
        A spec of ``__init__`` (named ``__init__``, without ``self``).
    methods
        The public methods, static and class methods included, in definition order.
    doc, info
        The raw and the parsed class docstring.
    schema_extra
        Merged into the JSON Schema of the class's requests.
    """

    name: str
    cls: type
    constructor: FunctionSpec
    methods: tuple[FunctionSpec, ...]
    doc: str | None = None
    info: DocInfo = field(default_factory=DocInfo)
    schema_extra: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ModuleSpec:
    """Everything a module serves.

    Attributes
    ----------
    name
        The module's ``__name__``.
    module
        The module object.
    functions, classes
        The served members, in the order of ``__all__`` or of definition.
    doc, info
        The raw and the parsed module docstring.
    errors
        The exception types the module declares, by the name it exports them under: those in
        ``__all__``, or without ``__all__`` the public ones it defines. Callers get them back
        as these types.
    """

    name: str
    module: ModuleType
    functions: tuple[FunctionSpec, ...]
    classes: tuple[ClassSpec, ...]
    doc: str | None = None
    info: DocInfo = field(default_factory=DocInfo)
    errors: Mapping[str, type[BaseException]] = field(default_factory=dict)

    def declared_error(self, exc: BaseException) -> str | None:
        """The name of the most specific declared type ``exc`` is an instance of, if any."""
        for cls in type(exc).__mro__:
            for name, declared in self.errors.items():
                if cls is declared:
                    return name
        return None

    @property
    def shown(self) -> str:
        """The name to show in logs: a script run as ``__main__`` by its file name."""
        if self.name == "__main__":
            path: str | None = getattr(self.module, "__file__", None)
            if path:
                return os.path.splitext(os.path.basename(path))[0]
        return self.name

    @property
    def members(self) -> tuple[FunctionSpec | ClassSpec, ...]:
        """Functions then classes."""
        return (*self.functions, *self.classes)
