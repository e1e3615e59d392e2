"""Python source text for annotations, values and data types, as the client generator needs it.

Annotations are written from the resolved objects, not copied from the backend's source, so
import aliases (``import numpy as np``) and ``from __future__ import annotations`` make no
difference: ``np.ndarray`` is written ``numpy.ndarray`` with ``import numpy``. Types defined by
the backend (enums, pydantic models, dataclasses, TypedDicts, NamedTuples) are reproduced in
the client; every other type is imported from its public module.
"""

from __future__ import annotations

import ast
import collections.abc
import contextlib
import dataclasses
import datetime
import decimal
import enum
import importlib
import json
import math
import pathlib
import sys
import types
import typing
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import typing_extensions
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from ..core.configure import MODULE_CODEC
from ..errors import DemessagingWarning, GeneratorError

__all__ = ["Renderer", "docstring_literal"]

_BUILTIN_TYPES = {int, float, str, bytes, bool, complex, list, dict, set, frozenset, tuple, type}
_FIELD_KEYS = ("title", "description", "alias", "examples")


class Renderer:
    """Writes source text, collecting the imports and the backend types it needs.

    Parameters
    ----------
    is_local
        Tells whether a type belongs to the backend (and so must be reproduced).
    """

    def __init__(self, is_local: Callable[[type], bool]) -> None:
        self.is_local = is_local
        self.imports: set[str] = set()
        self.modules: set[str] = set()  # top-level modules the annotations import
        self.definitions: list[str] = []  # reproduced types, dependencies first
        self.reproduced: list[str] = []  # their names
        self._started: set[type] = set()

    @contextlib.contextmanager
    def separate_imports(self) -> Iterator[set[str]]:
        """Collect the imports of what is written inside into a set of their own."""
        outer, self.imports = self.imports, set()
        try:
            yield self.imports
        finally:
            self.imports = outer

    # -- names -------------------------------------------------------------------------------

    def ref(self, obj: Any) -> str:
        """A reference to a class or function: bare for builtins and backend types."""
        if obj in _BUILTIN_TYPES or getattr(obj, "__module__", None) == "builtins":
            return str(obj.__qualname__)
        if isinstance(obj, type) and self.is_local(obj):
            self._reproduce(obj)
            return obj.__qualname__
        module = _public_module(obj)
        self.imports.add(f"import {module}")
        self.modules.add(module.split(".")[0])
        return f"{module}.{obj.__qualname__}"

    # -- annotations -------------------------------------------------------------------------

    def annotation(self, tp: Any, where: str = "") -> str:
        """Source text of a resolved annotation."""
        if tp is Any:
            return self._typing("Any")
        if tp is None or tp is type(None):
            return "None"
        if tp is Ellipsis:
            return "..."
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin is typing.Annotated:
            base, *metadata = args
            if any(item is MODULE_CODEC for item in metadata):  # sent as it is, decoded there
                return self._typing("Any")
            parts = [self.annotation(base, where)]
            for item in metadata:
                try:
                    parts.append(self.value(item))
                except GeneratorError:
                    warnings.warn(
                        f"{where}: the annotation metadata {item!r} cannot be reproduced in the "
                        "client and is left out; the backend still checks it",
                        DemessagingWarning,
                        stacklevel=2,
                    )
            return (
                parts[0] if len(parts) == 1 else f"{self._typing('Annotated')}[{', '.join(parts)}]"
            )
        if origin in (typing.Union, types.UnionType):
            return " | ".join(self.annotation(a, where) for a in args)
        if origin is typing.Literal:
            return f"{self._typing('Literal')}[{', '.join(self.value(a) for a in args)}]"
        if origin is np.ndarray and len(args) == 2 and typing.get_args(args[1]):
            shape, dtype = args
            if shape == tuple[Any, ...] or shape is Any:
                self.imports.add("import numpy.typing")
                self.modules.add("numpy")
                scalar = self.annotation(typing.get_args(dtype)[0], where)
                return f"numpy.typing.NDArray[{scalar}]"
        if origin is not None:
            if (
                origin in _BUILTIN_TYPES
                or origin in vars(collections.abc).values()
                or origin is np.ndarray
                or origin is np.dtype
            ):
                head = self.ref(origin)
            else:
                raise GeneratorError(f"{where}: cannot write the annotation {tp!r}")
            if origin is tuple and args == ():
                return "tuple[()]"
            return f"{head}[{', '.join(self.annotation(a, where) for a in args)}]"
        if isinstance(tp, typing.TypeVar) or not isinstance(tp, type):
            raise GeneratorError(f"{where}: cannot write the annotation {tp!r}")
        return self.ref(tp)

    def _typing(self, name: str) -> str:
        self.imports.add("import typing")
        return f"typing.{name}"

    # -- values ------------------------------------------------------------------------------

    def value(self, value: Any) -> str:
        """Source text that evaluates to ``value`` (defaults, literals, annotation metadata).

        Raises
        ------
        GeneratorError
            If the value has no source form this renderer knows.
        """
        if isinstance(value, np.generic):
            return f"{self.ref(type(value))}({value.item()!r})"
        if isinstance(value, str) and not isinstance(value, enum.Enum):
            return json.dumps(value, ensure_ascii=False)
        if value is None or (
            isinstance(value, bool | int | bytes) and not isinstance(value, enum.Enum)
        ):
            return repr(value)
        if isinstance(value, float):
            if math.isnan(value):
                return 'float("nan")'
            if math.isinf(value):
                return 'float("inf")' if value > 0 else '-float("inf")'
            return repr(value)
        if isinstance(value, enum.Enum):
            return f"{self.ref(type(value))}.{value.name}"
        if isinstance(value, tuple) and hasattr(value, "_fields"):  # a NamedTuple
            fields = value._asdict().items()  # type: ignore[attr-defined]
            args = ", ".join(f"{k}={self.value(v)}" for k, v in fields)
            return f"{self.ref(type(value))}({args})"
        if isinstance(value, BaseModel):
            args = ", ".join(
                f"{k}={self.value(getattr(value, k))}" for k in type(value).model_fields
            )
            return f"{self.ref(type(value))}({args})"
        if isinstance(value, tuple):
            items = [self.value(v) for v in value]
            return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"
        if isinstance(value, list):
            return f"[{', '.join(self.value(v) for v in value)}]"
        if isinstance(value, set | frozenset):
            inner = ", ".join(sorted(self.value(v) for v in value))
            if type(value) is frozenset:
                return f"frozenset({{{inner}}})" if inner else "frozenset()"
            return f"{{{inner}}}" if inner else "set()"
        if isinstance(value, dict):
            return (
                "{" + ", ".join(f"{self.value(k)}: {self.value(v)}" for k, v in value.items()) + "}"
            )
        if isinstance(value, datetime.date | datetime.time | datetime.timedelta):
            self.imports.add("import datetime")
            return repr(value)
        if isinstance(value, pathlib.PurePath):
            return f"{self.ref(Path)}({json.dumps(str(value))})"
        if isinstance(value, decimal.Decimal | uuid.UUID):
            return f"{self.ref(type(value))}({json.dumps(str(value))})"
        if isinstance(value, FieldInfo):
            return self._field(value, PydanticUndefined)
        if type(value).__name__ == "_PydanticGeneralMetadata":
            return self._field(None, PydanticUndefined, extra=dict(vars(value)))
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            args = ", ".join(
                f"{f.name}={self.value(getattr(value, f.name))}"
                for f in dataclasses.fields(value)
                if f.init
            )
            return f"{self.ref(type(value))}({args})"
        raise GeneratorError(f"cannot write {value!r} (a {type(value).__qualname__}) as source")

    def _field(
        self, info: FieldInfo | None, default: Any, extra: dict[str, Any] | None = None
    ) -> str:
        """``pydantic.Field(...)`` with the keywords that reproduce ``info``."""
        kwargs: dict[str, Any] = dict(extra or {})
        if info is not None:
            kwargs.update(_constraints(info.metadata))
            for key in _FIELD_KEYS:
                if getattr(info, key) is not None:
                    kwargs[key] = getattr(info, key)
        parts = [] if default is PydanticUndefined else [self.value(default)]
        if info is not None and info.default_factory is not None:
            parts.append(f"default_factory={self._factory(info.default_factory)}")
        parts += [f"{k}={self.value(v)}" for k, v in kwargs.items()]
        self.imports.add("import pydantic")
        return f"pydantic.Field({', '.join(parts)})"

    def _factory(self, factory: Any) -> str:
        if getattr(factory, "__name__", "<lambda>") == "<lambda>":
            raise GeneratorError(
                f"cannot write the default factory {factory!r}; use a named function"
            )
        return self.ref(factory)

    # -- backend types -----------------------------------------------------------------------

    def _reproduce(self, cls: type) -> None:
        if cls in self._started:
            return
        self._started.add(cls)
        if issubclass(cls, enum.Enum):
            text = self._enum(cls)
        elif issubclass(cls, BaseModel):
            text = self._model(cls)
        elif dataclasses.is_dataclass(cls):
            text = self._dataclass(cls)
        elif typing_extensions.is_typeddict(cls):
            text = self._typeddict(cls)
        elif issubclass(cls, tuple) and hasattr(cls, "_fields"):
            text = self._namedtuple(cls)
        elif issubclass(cls, Exception):
            text = self._exception(cls)
        else:
            raise GeneratorError(
                f"cannot reproduce {cls.__qualname__} in the client: only enums, pydantic "
                "models, dataclasses, TypedDicts, NamedTuples and exceptions are"
            )
        self.definitions.append(text)
        self.reproduced.append(cls.__qualname__)

    def _class(self, cls: type, bases: str, body: list[str], decorator: str = "") -> str:
        doc = vars(cls).get("__doc__")
        lines = [decorator] if decorator else []
        lines.append(f"class {cls.__qualname__}({bases}):")
        if doc and not (dataclasses.is_dataclass(cls) and doc.startswith(f"{cls.__name__}(")):
            lines.append(f"    {docstring_literal(doc)}")
            if body:
                lines.append("")
        lines += [f"    {line}" if line else "" for line in body] or ([] if doc else ["    pass"])
        return "\n".join(lines)

    def _exception(self, cls: type[Exception]) -> str:
        """Its name, bases and docstring: what a caller catches it by."""
        return self._class(cls, ", ".join(self.ref(base) for base in cls.__bases__), [])

    def _enum(self, cls: type[enum.Enum]) -> str:
        self.imports.add("import enum")
        if issubclass(cls, enum.IntFlag):
            bases = "enum.IntFlag"
        elif issubclass(cls, enum.Flag):
            bases = "enum.Flag"
        elif issubclass(cls, enum.IntEnum):
            bases = "enum.IntEnum"
        else:
            mixin = next((t for t in (str, int, float) if issubclass(cls, t)), None)
            bases = f"{mixin.__name__}, enum.Enum" if mixin else "enum.Enum"
        body = [f"{m.name} = {self.value(m.value)}" for m in cls]
        return self._class(cls, bases, body)

    def _model(self, cls: type[BaseModel]) -> str:
        body = []
        config = {k: v for k, v in cls.model_config.items() if k in _PORTABLE_CONFIG}
        if config:
            args = ", ".join(f"{k}={self.value(v)}" for k, v in config.items())
            body.append(f"model_config = pydantic.ConfigDict({args})")
            body.append("")
        for name, info in cls.model_fields.items():
            where = f"{cls.__qualname__}.{name}"
            annotation = self.annotation(info.annotation, where)
            simple = not (info.metadata or info.default_factory) and all(
                getattr(info, key) is None for key in _FIELD_KEYS
            )
            if simple and info.default is PydanticUndefined:
                body.append(f"{name}: {annotation}")
            elif simple:
                body.append(f"{name}: {annotation} = {self.value(info.default)}")
            else:
                body.append(f"{name}: {annotation} = {self._field(info, info.default)}")
        self.imports.add("import pydantic")
        return self._class(cls, "pydantic.BaseModel", body)

    def _dataclass(self, cls: type) -> str:
        self.imports.add("import dataclasses")
        hints = typing.get_type_hints(cls, include_extras=True)
        params = cls.__dataclass_params__  # type: ignore[attr-defined]
        options = [f"{key}=True" for key in ("frozen", "order") if getattr(params, key)]
        decorator = (
            f"@dataclasses.dataclass({', '.join(options)})" if options else "@dataclasses.dataclass"
        )
        body = []
        for field in dataclasses.fields(cls):
            if not field.init:
                continue
            line = f"{field.name}: {self.annotation(hints[field.name], cls.__qualname__)}"
            if field.default is not dataclasses.MISSING:
                line += f" = {self.value(field.default)}"
            elif field.default_factory is not dataclasses.MISSING:
                line += (
                    f" = dataclasses.field(default_factory={self._factory(field.default_factory)})"
                )
            body.append(line)
        return self._class(cls, "", body, decorator).replace(
            f"class {cls.__qualname__}():", f"class {cls.__qualname__}:"
        )

    def _typeddict(self, cls: type) -> str:
        self.imports.add("import typing_extensions")
        # __optional_keys__ misses NotRequired written as a string (``from __future__ import
        # annotations``), so the wrappers are read from the resolved hints
        hints = typing_extensions.get_type_hints(cls, include_extras=True)
        optional: frozenset[str] = getattr(cls, "__optional_keys__", frozenset())
        body = []
        for name, tp in hints.items():
            origin: Any = typing_extensions.get_origin(tp)
            is_optional = name in optional
            if origin in (typing_extensions.NotRequired, typing_extensions.Required):
                is_optional = origin is typing_extensions.NotRequired
                tp = typing_extensions.get_args(tp)[0]
            text = self.annotation(tp, f"{cls.__qualname__}.{name}")
            if is_optional:
                text = f"typing_extensions.NotRequired[{text}]"
            body.append(f"{name}: {text}")
        return self._class(cls, "typing_extensions.TypedDict", body)

    def _namedtuple(self, cls: type) -> str:
        self.imports.add("import typing")
        hints = typing.get_type_hints(cls, include_extras=True)
        defaults = getattr(cls, "_field_defaults", {})
        body = []
        for name in cls._fields:  # type: ignore[attr-defined]
            line = f"{name}: {self.annotation(hints.get(name, Any), cls.__qualname__)}"
            if name in defaults:
                line += f" = {self.value(defaults[name])}"
            body.append(line)
        return self._class(cls, "typing.NamedTuple", body)


_PORTABLE_CONFIG = {
    "extra",
    "frozen",
    "populate_by_name",
    "str_strip_whitespace",
    "use_enum_values",
}


def _constraints(metadata: list[Any]) -> dict[str, Any]:
    """``pydantic.Field`` keywords for constraint objects (``Ge(ge=0)`` -> ``ge=0``)."""
    kwargs: dict[str, Any] = {}
    for item in metadata:
        if dataclasses.is_dataclass(item) and type(item).__module__ == "annotated_types":
            kwargs.update({f.name: getattr(item, f.name) for f in dataclasses.fields(item)})
        elif type(item).__name__ == "_PydanticGeneralMetadata":
            kwargs.update(vars(item))
        else:
            warnings.warn(
                f"the field constraint {item!r} cannot be reproduced in the client and is left "
                "out; the backend still checks it",
                DemessagingWarning,
                stacklevel=3,
            )
    return kwargs


def _public_module(obj: Any) -> str:
    """The shortest module path exporting ``obj``: ``pathlib``, not ``pathlib._local``."""
    module: str = obj.__module__
    parts = module.split(".")
    for end in range(1, len(parts)):
        candidate = ".".join(parts[:end])
        if any(p.startswith("_") for p in parts[:end]):
            break
        try:
            target: Any = importlib.import_module(candidate)
            for name in obj.__qualname__.split("."):
                target = getattr(target, name)
        except (ImportError, AttributeError):
            continue
        if target is obj:
            return candidate
    if module not in sys.modules:
        raise GeneratorError(f"cannot import {obj!r} from {module!r}")
    return module


def docstring_literal(doc: str) -> str:
    """A string literal whose value is exactly ``doc``, as readable as possible."""
    for candidate in (f'"""{doc}"""', f'r"""{doc}"""'):
        if doc.endswith(('"', "\\")) or '"""' in doc:
            break
        try:
            with warnings.catch_warnings():  # an invalid escape warns: not a match
                warnings.simplefilter("error")
                if ast.literal_eval(candidate) == doc:
                    return candidate
        except (SyntaxError, ValueError, Warning):
            continue
    return repr(doc)
