"""Pydantic models of a module's requests and results, in DASF's JSON layout.

A function ``array_sum(a, axis=None)`` gets the request model ``FuncArraySum``::

    {"func_name": "array_sum", "a": [...], "axis": 0}

A class ``Accumulator(start)`` with a method ``add(x)`` gets ``ClassAccumulator``, whose
``function`` field holds a method model ``MethClassAccumulatorAdd``::

    {"class_name": "Accumulator", "start": 1.0, "function": {"func_name": "add", "x": 2.0}}

Static and class methods need no instance, so they go into a second class model
``ClassAccumulatorStatic`` without constructor arguments. The module model is the union of
all of these, discriminated by ``func_name``/``class_name`` (see :func:`request_tag`); only the
members in that union can ever be reached.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PydanticUserError,
    Tag,
    TypeAdapter,
    ValidationError,
    create_model,
)
from pydantic.json_schema import SkipJsonSchema

from ..errors import SignatureError
from .arrays import prepare_annotation
from .reporter import report_type
from .specs import ClassSpec, FunctionSpec, ModuleSpec, ParameterSpec

__all__ = [
    "Call",
    "CallableModels",
    "ModuleModels",
    "build_models",
    "camel",
    "field_names",
    "format_validation_error",
]

#: NaN and infinities stay floats in JSON mode (pydantic would make them None), so that the
#: JSON codec can write them as NaN, Infinity and -Infinity.
_INF_NAN = ConfigDict(ser_json_inf_nan="constants")
_CONFIG = ConfigDict(extra="forbid", protected_namespaces=(), ser_json_inf_nan="constants")


@dataclass(frozen=True)
class CallableModels:
    """The models of one function or method.

    Attributes
    ----------
    spec
        The function or method.
    owner
        The class, for methods.
    request
        The model of its part of the request (``func_name`` and its arguments).
    returns
        Validates and serializes its return value (for generator functions, each item).
    collected
        For generator functions: validates and serializes the list of all their items, which
        callers that do not take items one by one (DASF clients) get.
    """

    spec: FunctionSpec
    owner: ClassSpec | None
    request: type[BaseModel]
    returns: TypeAdapter[Any]
    collected: TypeAdapter[Any] | None = None


@dataclass(frozen=True)
class Call:
    """A validated request, ready to be executed.

    Attributes
    ----------
    target
        The models (and so the spec) of the function or method to call.
    arguments
        The arguments the request carries, by parameter name (defaults not filled in).
    constructor
        The constructor arguments, for instance methods.
    reports
        The DASF progress reports the request carries, by parameter name: DASF 0.6 clients
        send the report of a function that takes one, and the call gets a copy of it (its
        step message and the like) instead of the function's default.
    constructor_reports
        The same for the constructor's report parameters, sent next to its arguments.
    """

    target: CallableModels
    arguments: dict[str, Any]
    constructor: dict[str, Any]
    reports: dict[str, Any] = field(default_factory=dict)
    constructor_reports: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModuleModels:
    """All models of a module.

    Attributes
    ----------
    spec
        The module.
    request
        Validates a whole request (the discriminated union of every member).
    functions
        Function name -> its models.
    methods
        ``(class name, method name)`` -> the method's models.
    classes
        Class model name (``ClassAccumulator``, ``ClassAccumulatorStatic``) -> model.
    constructors
        Class name -> a model of its constructor arguments alone (for checks on clients).
    """

    spec: ModuleSpec
    request: TypeAdapter[Any]
    functions: Mapping[str, CallableModels]
    methods: Mapping[tuple[str, str], CallableModels]
    classes: Mapping[str, type[BaseModel]]
    constructors: Mapping[str, type[BaseModel]]

    def resolve(self, request: BaseModel) -> Call:
        """Turn a validated request model into a :class:`Call`."""
        class_name = getattr(request, "class_name", None)
        if class_name is None:
            target = self.functions[request.func_name]  # type: ignore[attr-defined]
            arguments = _set_arguments(request, target.spec.parameters)
            return Call(target, arguments, {}, _set_arguments(request, target.spec.reporters))
        function: BaseModel = request.function  # type: ignore[attr-defined]
        target = self.methods[(class_name, function.func_name)]  # type: ignore[attr-defined]
        assert target.owner is not None
        constructor, constructor_reports = {}, {}
        if target.spec.needs_instance:
            constructor = _set_arguments(request, target.owner.constructor.parameters)
            constructor_reports = _set_arguments(request, target.owner.constructor.reporters)
        arguments = _set_arguments(function, target.spec.parameters)
        reports = _set_arguments(function, target.spec.reporters)
        return Call(target, arguments, constructor, reports, constructor_reports)

    def validate_json(self, data: bytes | bytearray | str) -> Call:
        """Validate a JSON request; raises pydantic's ``ValidationError``."""
        return self.resolve(self.request.validate_json(data))

    def validate_python(self, data: Any) -> Call:
        """Validate a request given as Python objects; raises pydantic's ``ValidationError``."""
        return self.resolve(self.request.validate_python(data))


def _set_arguments(model: BaseModel, params: tuple[ParameterSpec, ...]) -> dict[str, Any]:
    """The arguments a request carries; absent ones are left to the function's defaults."""
    if not params:  # (most members take no progress reporter)
        return {}
    wanted = {p.name for p in params}
    present = model.model_fields_set
    return {
        (info.alias or name): getattr(model, name)
        for name, info in type(model).model_fields.items()
        if name in present and (info.alias or name) in wanted
    }


def camel(name: str) -> str:
    """``array_sum`` -> ``ArraySum``."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def field_names(parameters: tuple[ParameterSpec, ...]) -> dict[str, str]:
    """Parameter name -> model field name.

    A name that would shadow a BaseModel attribute (``copy``, ``json``...) gets trailing
    underscores until it is free; the field keeps the parameter's name as its alias, which is
    the only name requests may use.
    """
    taken = {p.name for p in parameters}
    names = {}
    for p in parameters:
        name = p.name
        if hasattr(BaseModel, name):
            name += "_"
            while name in taken or hasattr(BaseModel, name):
                name += "_"
            taken.add(name)
        names[p.name] = name
    return names


def build_models(spec: ModuleSpec) -> ModuleModels:
    """Build the request and return models of every served member.

    Raises
    ------
    SignatureError
        If an annotation is not supported by pydantic or cannot be described in JSON Schema;
        the error names the member and the parameter.
    """
    functions = {f.name: _callable_models(f, None, f"Func{camel(f.name)}") for f in spec.functions}
    methods: dict[tuple[str, str], CallableModels] = {}
    classes: dict[str, type[BaseModel]] = {}
    constructors: dict[str, type[BaseModel]] = {}
    variants: list[Any] = [Annotated[m.request, Tag(f"func:{n}")] for n, m in functions.items()]
    static_tags: set[str] = set()
    for cls in spec.classes:
        for method in cls.methods:
            model_name = f"MethClass{camel(cls.name)}{camel(method.name)}"
            methods[(cls.name, method.name)] = _callable_models(method, cls, model_name)
        constructors[cls.name] = _class_model(
            f"Init{camel(cls.name)}", cls, [], with_constructor=True
        )
        instance = [methods[(cls.name, m.name)] for m in cls.methods if m.needs_instance]
        static = [methods[(cls.name, m.name)] for m in cls.methods if not m.needs_instance]
        static_tags.update(f"{cls.name}.{m.spec.name}" for m in static)
        if instance:
            name = f"Class{camel(cls.name)}"
            classes[name] = _class_model(name, cls, instance, with_constructor=True)
            variants.append(Annotated[classes[name], Tag(f"class:{cls.name}")])
        if static:
            name = f"Class{camel(cls.name)}Static"
            classes[name] = _class_model(name, cls, static, with_constructor=False)
            variants.append(Annotated[classes[name], Tag(f"static:{cls.name}")])
    tags = frozenset(static_tags)

    def tag(value: Any) -> str | None:
        class_name, func_name = _get(value, "class_name"), _get(value, "func_name")
        if isinstance(class_name, str):
            method = _get(_get(value, "function"), "func_name")
            kind = "static" if f"{class_name}.{method}" in tags else "class"
            return f"{kind}:{class_name}"
        return f"func:{func_name}" if isinstance(func_name, str) else None

    served = ", ".join([*functions, *(f"{c}.{m}" for c, m in methods)])
    union: Any = Annotated[
        Union[tuple(variants)],  # noqa: UP007
        Discriminator(
            tag,
            custom_error_type="unknown_member",
            custom_error_message=(
                "the request names no function or class this backend serves "
                "(expected 'func_name' or 'class_name' of one of: {served})"
            ),
            custom_error_context={"served": served},
        ),
    ]
    return ModuleModels(
        spec=spec,
        request=_inf_nan_adapter(union),
        functions=functions,
        methods=methods,
        classes=classes,
        constructors=constructors,
    )


def _get(value: Any, key: str) -> Any:
    """``value[key]`` of a raw request, ``value.key`` of a validated one, else None."""
    if isinstance(value, dict):
        return value.get(key)
    return getattr(value, key, None)


def _const(name: str) -> Any:
    return Literal[name]


def _callable_models(spec: FunctionSpec, owner: ClassSpec | None, name: str) -> CallableModels:
    names = field_names(spec.parameters + spec.reporters)
    fields = {names[p.name]: _field(p, spec.qualname) for p in spec.parameters}
    for p in spec.reporters:
        if report_type(p.annotation) is not None:  # DASF's: its clients send them
            fields[names[p.name]] = _report_field(p)
    request = create_model(
        name,
        __config__=_config(spec.schema_extra),
        __doc__=spec.info.description or None,
        func_name=(_const(spec.name), Field(description=f"Calls {spec.qualname}.")),
        **fields,  # type: ignore[call-overload]
    )
    if not spec.streams:
        returns = _adapter(prepare_annotation(spec.returns), spec.qualname, "return")
        return CallableModels(spec=spec, owner=owner, request=request, returns=returns)
    item = prepare_annotation(spec.item)  # a generator's items, one by one, or all in a list
    returns = _adapter(item, spec.qualname, "return")
    collected = _adapter(list[item], spec.qualname, "return")  # type: ignore[valid-type]
    return CallableModels(spec, owner, request, returns, collected)


def _class_model(
    name: str, cls: ClassSpec, methods: list[CallableModels], *, with_constructor: bool
) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    if with_constructor:
        names = field_names(cls.constructor.parameters + cls.constructor.reporters)
        for p in cls.constructor.parameters:
            fields[names[p.name]] = _field(p, cls.constructor.qualname)
        for p in cls.constructor.reporters:
            if report_type(p.annotation) is not None:  # DASF's: its clients send them
                fields[names[p.name]] = _report_field(p)
    if methods:
        choices = tuple(m.request for m in methods)
        function: Any = Annotated[Union[choices], Field(discriminator="func_name")]  # noqa: UP007
        if len(choices) == 1:
            function = choices[0]
        fields["function"] = (function, Field(description="The method to call."))
    model: type[BaseModel] = create_model(
        name,
        __config__=_config(cls.schema_extra),
        __doc__=cls.info.description or None,
        class_name=(_const(cls.name), Field(description=f"Uses class {cls.name}.")),
        **fields,
    )
    return model


def _config(schema_extra: Mapping[str, Any] | None) -> ConfigDict:
    if not schema_extra:
        return _CONFIG
    return ConfigDict(**_CONFIG, json_schema_extra=dict(schema_extra))


def _field(param: ParameterSpec, qualname: str) -> tuple[Any, Any]:
    annotation = prepare_annotation(param.annotation)
    _adapter(annotation, qualname, param.name)
    default = ... if param.required else param.default
    info = Field(default, description=param.description or None, alias=param.name)
    return annotation, info


def _report_field(param: ParameterSpec) -> tuple[Any, Any]:
    """An optional field for the report DASF 0.6 clients send, left out of the JSON Schema.

    The backend fills report parameters itself; callers other than DASF's never send them.
    """
    hidden: Any = SkipJsonSchema  # applied to a type known at run time only
    return hidden[param.annotation | None], Field(None, alias=param.name)


def _inf_nan_adapter(annotation: Any) -> TypeAdapter[Any]:
    """A TypeAdapter keeping NaN and infinities in JSON mode (models keep their own config)."""
    try:
        return TypeAdapter(annotation, config=_INF_NAN)
    except PydanticUserError:  # a model, dataclass or TypedDict, which has a config of its own
        return TypeAdapter(annotation)


def _adapter(annotation: Any, qualname: str, parameter: str) -> TypeAdapter[Any]:
    """A TypeAdapter for ``annotation``, checked to have a JSON Schema."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            adapter = _inf_nan_adapter(annotation)
            adapter.json_schema()
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SignatureError(
            qualname,
            parameter,
            f"type {annotation!r} is not supported ({first_line}); use JSON-like types, numpy "
            "arrays, enums, dataclasses, TypedDicts or pydantic models",
        ) from exc
    return adapter


def format_validation_error(exc: ValidationError) -> str:
    """A one-paragraph account of a pydantic validation error, without pydantic's URLs."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error["loc"]]
        if loc and ":" in loc[0]:  # the union tag (func:total, class:TimeSeries)
            loc = loc[1:]
        where = ".".join(loc)
        lines.append(f"{where}: {error['msg']}" if where else error["msg"])
    return "; ".join(lines)
