"""``configure``: settings of one served function or class, given in the module's source.

The decorator of DASF's demessaging 0.6, so that modules written for it run unchanged::

    @configure(field_params={"a": {"gt": 0}}, returns={"gt": 0})
    def root(a: float) -> float:
        return math.sqrt(a)

Keys for a function or method:

- ``doc``: the docstring to serve instead of the function's;
- ``field_params``: parameter -> keywords of :func:`pydantic.Field` (constraints, ``title``,
  ``examples``...; ``description`` replaces the docstring's, ``default`` the signature's);
- ``returns``: keywords of :func:`pydantic.Field` for the return value;
- ``annotations`` / ``return_annotation``: types to use instead of the signature's;
- ``validators``: parameter -> a validator or a list of them; ``return_validators``: a list;
- ``serializers``: parameter -> a function writing the value in JSON; ``return_serializer``;
- ``json_schema_extra``: merged into the JSON Schema of the request.

A class takes ``doc``, ``init_doc`` (the constructor's docstring), ``methods`` (the methods to
serve, instead of every public one), and ``field_params``, ``annotations``, ``validators``,
``serializers`` and ``json_schema_extra`` for its constructor.

A validator is called like a pydantic field validator of DASF's models: ``f(cls, value)`` or
``f(cls, value, info)`` (``cls`` is None here), or ``f(value)``; it runs after the type's
own validation unless it comes from ``pydantic.field_validator(..., mode="before")``.
A parameter with a serializer and validators, and no type in ``annotations``, is typed
``Any`` whatever its annotation says, as in DASF 0.6: it travels as its serializer writes it
(the module's own codec, e.g. base64 of a numpy array's ``.npy`` bytes), and its validators see
that raw value and decode it. The return value likewise, with ``return_serializer`` and
``return_validators`` and no ``return_annotation``. Except DASF's own xarray codec
(``demessaging.serializers.xarray`` and ``demessaging.validators.xarray``): xarray parameters
and results keep their type with it, and a result goes in JSON as that codec writes it (netCDF
in base64, what DASF 0.6 clients read). Otherwise, validators and serializers of
parameters that demessaging encodes itself (numpy arrays and xarray objects) are left out: its
wire format carries those already.

``template``, ``registry`` and ``reporter_args`` are accepted and have no effect (they shape
DASF's generated code; progress reporters are found from the annotations). ``name`` and
``signature`` are refused with a :class:`~demessaging.errors.ConfigurationError`.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Annotated, Any, TypeVar

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationInfo,
)

from ..errors import ConfigurationError
from .netcdf import NetCDFInJSON

__all__ = ["MODULE_CODEC", "MemberConfig", "ModuleCodec", "config_of", "configure"]

T = TypeVar("T")
ATTRIBUTE = "__demessaging_config__"
_IGNORED = frozenset({"template", "registry", "reporter_args"})
_REFUSED = {
    "name": "members are served under their Python names",
    "signature": "signatures are read from the functions themselves",
}
_FUNCTION_KEYS = frozenset(
    {
        "doc",
        "field_params",
        "returns",
        "annotations",
        "return_annotation",
        "validators",
        "return_validators",
        "serializers",
        "return_serializer",
        "json_schema_extra",
    }
)
_CLASS_KEYS = frozenset(
    {
        "doc",
        "init_doc",
        "methods",
        "field_params",
        "annotations",
        "validators",
        "serializers",
        "json_schema_extra",
    }
)
_MODES = {"after": AfterValidator, "before": BeforeValidator, "plain": PlainValidator}


@dataclass(frozen=True)
class ModuleCodec:
    """Marks a value typed ``Any`` because the module's own codec carries it (module docstring).

    Generated clients write such a value as ``Any`` and send it in demessaging's encoding; the
    backend's validators take the decoded value (as they take a DASF client's own values).
    """


MODULE_CODEC = ModuleCodec()


@dataclass(frozen=True)
class MemberConfig:
    """What :func:`configure` says about one function or class (empty when not decorated)."""

    doc: str | None = None
    init_doc: str | None = None
    methods: tuple[str, ...] | None = None
    field_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    returns: Mapping[str, Any] = field(default_factory=dict)
    annotations: Mapping[str, Any] = field(default_factory=dict)
    return_annotation: Any = None
    validators: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    return_validators: tuple[Any, ...] = ()
    serializers: Mapping[str, Callable[[Any], Any]] = field(default_factory=dict)
    return_serializer: Callable[[Any], Any] | None = None
    json_schema_extra: Mapping[str, Any] | None = None

    def parameter(self, name: str, annotation: Any, native: bool) -> Any:
        """The annotation of parameter ``name``, with this config's fields and validators.

        ``native`` says whether demessaging encodes the type itself (validators and
        serializers are then left out).
        """
        extra: list[Any] = []
        if self.raw_codec(name):
            annotation, native = Any, False  # the validators decode what the serializer wrote
            extra.append(MODULE_CODEC)
        annotation = self.annotations.get(name, annotation)
        if not native:
            extra += [
                _validator(v, f"validator of {name!r}") for v in self.validators.get(name, ())
            ]
            if name in self.serializers:
                extra.append(PlainSerializer(self.serializers[name], when_used="json"))
        params = {k: v for k, v in self.field_params.get(name, {}).items() if k not in _SPEC_KEYS}
        if params:
            extra.append(Field(**params))
        return _annotated(annotation, extra)

    def result(self, annotation: Any, native: bool) -> Any:
        """The return annotation, with this config's ``returns`` and return validators."""
        if self.return_annotation is not None:
            annotation = self.return_annotation
        extra: list[Any] = []
        if self.return_annotation is None and self.return_serializer and self.return_validators:
            if native and _xarray_codec(self.return_serializer, *self.return_validators):
                # DASF's xarray codec: the object itself, and in JSON the codec's netCDF
                extra.append(NetCDFInJSON())
            else:
                annotation, native = Any, False
                extra.append(MODULE_CODEC)
        if not native:
            extra += [_validator(v, "return validator") for v in self.return_validators]
            if self.return_serializer is not None:
                extra.append(PlainSerializer(self.return_serializer, when_used="json"))
        if self.returns:
            extra.append(Field(**self.returns))
        return _annotated(annotation, extra)

    def raw_codec(self, name: str) -> bool:
        """Whether parameter ``name`` is a value of the module's own codec, typed ``Any``.

        So it is when it has a serializer and validators and no annotation in
        ``annotations``, as in DASF 0.6: the validators get the value as it came over the
        wire (the serializer's output) and turn it into what the function takes.
        """
        return (
            name in self.serializers
            and bool(self.validators.get(name))
            and name not in self.annotations
            and not _xarray_codec(self.serializers[name], *self.validators[name])
        )

    def description(self, name: str, default: str) -> str:
        """The description of parameter ``name``."""
        return str(self.field_params.get(name, {}).get("description", default))

    def default(self, name: str, default: Any) -> Any:
        """The default of parameter ``name``."""
        return self.field_params.get(name, {}).get("default", default)

    def named_parameters(self) -> set[str]:
        """Every parameter name the config refers to."""
        return {*self.field_params, *self.annotations, *self.validators, *self.serializers}


_SPEC_KEYS = frozenset({"description", "default"})


def configure(js: str | None = None, merge: bool = True, **kwargs: Any) -> Callable[[T], T]:
    """Configure how a function or class is served (see the module docstring for the keys).

    Parameters
    ----------
    js
        The settings as a JSON object, instead of keywords.
    merge
        Merge with the settings of an earlier ``configure`` on the same object (the default);
        otherwise replace them.
    **kwargs
        The settings.

    Raises
    ------
    ConfigurationError
        For a key that is unknown, or refused, for what is decorated.
    """
    if js and kwargs:
        raise ConfigurationError("configure takes a JSON string or keywords, not both")
    settings: dict[str, Any] = json.loads(js) if js else dict(kwargs)

    def decorator(obj: T) -> T:
        what = "class" if inspect.isclass(obj) else "function"
        known = _CLASS_KEYS if what == "class" else _FUNCTION_KEYS
        given = {}
        for key, value in settings.items():
            if key in _REFUSED:
                raise ConfigurationError(f"configure({key}=...) is not supported: {_REFUSED[key]}")
            if key in _IGNORED:
                continue
            if key not in known:
                raise ConfigurationError(
                    f"configure: unknown setting {key!r} for a {what}; "
                    f"known: {', '.join(sorted(known | _IGNORED))}"
                )
            given[key] = _normalize(key, value)
        old = getattr(obj, ATTRIBUTE, None) if merge else None
        config = MemberConfig(**given) if old is None else _merge(old, given)
        setattr(obj, ATTRIBUTE, config)
        return obj

    return decorator


def config_of(obj: Any) -> MemberConfig:
    """The configuration of a function or class (an empty one if it has none)."""
    # a class's own settings only, not those of its bases
    config = vars(obj).get(ATTRIBUTE) if inspect.isclass(obj) else getattr(obj, ATTRIBUTE, None)
    return config if isinstance(config, MemberConfig) else MemberConfig()


def _normalize(key: str, value: Any) -> Any:
    if key == "methods":
        return tuple(value)
    if key == "return_validators":
        return tuple(value) if isinstance(value, list | tuple) else (value,)
    if key == "validators":
        return _validators(value)
    return value


def _validators(value: Mapping[str, Any]) -> dict[str, tuple[Any, ...]]:
    """Parameter -> validators, from ``{param: f | [f, ...]}`` or pydantic's decorators."""
    found: dict[str, list[Any]] = {}
    for key, item in value.items():
        info = getattr(item, "decorator_info", None)
        if info is not None:  # pydantic.field_validator("x")(f): it names its fields itself
            for name in getattr(info, "fields", ()):
                found.setdefault(name, []).append(item)
            continue
        items = item if isinstance(item, list | tuple) else [item]
        found.setdefault(key, []).extend(items)
    return {k: tuple(v) for k, v in found.items()}


def _merge(old: MemberConfig, new: Mapping[str, Any]) -> MemberConfig:
    changes: dict[str, Any] = {}
    for f in fields(MemberConfig):
        if f.name not in new:
            continue
        before, after = getattr(old, f.name), new[f.name]
        if isinstance(before, Mapping) and isinstance(after, Mapping):
            merged = dict(before)
            for k, v in after.items():
                inner = merged.get(k)
                merged[k] = {**inner, **v} if isinstance(inner, dict) and isinstance(v, dict) else v
            changes[f.name] = merged
        else:
            changes[f.name] = after
    return replace(old, **changes)


#: The modules of DASF's own xarray codec (netCDF in base64), which demessaging provides.
_XARRAY_CODEC = ("demessaging.serializers.xarray", "demessaging.validators.xarray")


def _xarray_codec(*functions: Any) -> bool:
    """Whether ``functions`` are all of DASF's xarray codec.

    xarray parameters and results then keep their type: demessaging reads and writes that
    codec's values itself.
    """
    return all(
        getattr(getattr(f, "wrapped", f), "__module__", None) in _XARRAY_CODEC for f in functions
    )


def _annotated(annotation: Any, extra: list[Any]) -> Any:
    if not extra:
        return annotation
    params = (annotation, *extra)
    return Annotated[params]


def _validator(item: Any, what: str) -> Any:
    """A pydantic validator calling ``item`` as DASF's models would."""
    mode = "after"
    func = item
    info = getattr(item, "decorator_info", None)
    if info is not None:
        mode = getattr(info, "mode", "after")
        func = item.wrapped
    func = getattr(func, "__func__", func)  # a classmethod
    if mode not in _MODES or not callable(func):
        raise ConfigurationError(f"{what}: {item!r} is not a validator demessaging can run")
    try:
        count = len(inspect.signature(func).parameters)
    except (TypeError, ValueError):
        count = 1
    if count >= 3:

        def call(value: Any, info: ValidationInfo) -> Any:
            return func(None, value, info)

        return _MODES[mode](call)
    if count == 2:
        return _MODES[mode](lambda value: func(None, value))
    return _MODES[mode](func)
