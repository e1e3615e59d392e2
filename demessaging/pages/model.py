"""The page's model: what the API page shows, read from JSON Schemas.

Both sources of a page meet here: a module read in this process
(:mod:`demessaging.pages.local`) and a running backend's ``api_info``
(:mod:`demessaging.pages.remote`). Types, defaults and examples come from the JSON Schemas of
the requests and return values, which both have; a local module adds what only its source
says (Python annotations, declared exceptions, streams and progress reports).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Member", "Page", "Param", "TypeDef", "example_value", "params_of", "type_text"]

#: Properties of a request that say what is called rather than carry an argument.
ROUTING = ("func_name", "class_name", "function")

_FORMATS = {
    "date": "date",
    "date-time": "datetime",
    "time": "time",
    "duration": "timedelta",
    "path": "Path",
    "uuid": "UUID",
    "binary": "bytes",
}
_TYPES = {
    "string": "str",
    "number": "float",
    "integer": "int",
    "boolean": "bool",
    "null": "None",
    "object": "dict",
}


@dataclass
class Param:
    """A parameter (or a field of a type): its name, type, default and description.

    ``python`` is the annotation as the source writes it (empty where unknown); ``default``
    the default as JSON (empty when required).
    """

    name: str
    type: str
    required: bool
    default: str = ""
    description: str = ""
    python: str = ""
    python_default: str = ""
    positional: bool = False


@dataclass
class Member:
    """A function, a class, or a method of a class, as the page shows it.

    ``streams`` and ``progress`` are None where the source does not say (``api_info``).
    """

    name: str
    kind: str
    signature: str
    description: str = ""
    params: list[Param] = field(default_factory=list)
    returns: str = ""
    returns_python: str = ""
    returns_doc: str = ""
    raises: list[tuple[str, str]] = field(default_factory=list)
    streams: bool | None = None
    progress: bool | None = None
    example_json: str = ""
    example_python: str = ""
    methods: list[Member] = field(default_factory=list)
    #: The JSON Schema of its request, and for a method its class's (for the examples).
    request: Mapping[str, Any] = field(default_factory=dict, repr=False)
    owner_request: Mapping[str, Any] | None = field(default=None, repr=False)

    @property
    def owner(self) -> str | None:
        """The class of a method."""
        return self.name.rsplit(".", 1)[0] if "." in self.name else None

    @property
    def anchor(self) -> str:
        """The id of the member's section (``#TimeSeries.mean``)."""
        return self.name

    @property
    def words(self) -> str:
        """What the search box matches: its name, its parameters' names and its description."""
        return " ".join([self.name, *(p.name for p in self.params), self.description]).lower()


@dataclass
class TypeDef:
    """A type the schemas define: a model's fields, or an enumeration's values."""

    name: str
    description: str = ""
    fields: list[Param] = field(default_factory=list)
    values: list[str] = field(default_factory=list)
    text: str = ""


@dataclass
class Page:
    """Everything ``index.html`` shows."""

    title: str
    topic: str
    package: str
    description: str = ""
    members: list[Member] = field(default_factory=list)
    types: list[TypeDef] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    source: str = ""
    version: str = ""


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def type_text(schema: Mapping[str, Any] | bool) -> str:
    """A short, Python-like name of the type a JSON Schema describes.

    Arrays say their dtype and shape (``array[float64, shape (*, 2)]``), models and
    enumerations their name (their fields and values are listed with the page's types),
    literal choices their values.
    """
    if not isinstance(schema, Mapping) or not schema:
        return "Any"
    if "$ref" in schema:
        return _ref_name(schema["$ref"])
    if "const" in schema:
        return json.dumps(schema["const"])
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            parts = list(dict.fromkeys(type_text(s) for s in schema[key]))
            return (" & " if key == "allOf" else " | ").join(parts)
    if "x-xarray" in schema:
        return f"xarray.{schema['x-xarray']}"
    kind = schema.get("type")
    if isinstance(kind, list):
        return " | ".join(type_text({**schema, "type": k}) for k in kind)
    if kind == "array":
        return _array_text(schema)
    if kind == "object":
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            return f"dict[str, {type_text(extra)}]"
        return str(schema.get("title", "dict")) if "properties" in schema else "dict"
    if kind == "string" and schema.get("format") in _FORMATS:
        return _FORMATS[schema["format"]]
    return _TYPES.get(str(kind), str(kind)) if kind else "Any"


def _array_text(schema: Mapping[str, Any]) -> str:
    if "x-dtype" in schema or "x-shape" in schema:
        parts = [str(schema.get("x-dtype", "any"))]
        if "x-shape" in schema:
            dims = ["*" if d is None else str(d) for d in schema["x-shape"]]
            parts.append(f"shape ({', '.join(dims)}{',' if len(dims) == 1 else ''})")
        return f"array[{', '.join(parts)}]"
    if "prefixItems" in schema:
        return f"tuple[{', '.join(type_text(s) for s in schema['prefixItems'])}]"
    outer = "set" if schema.get("uniqueItems") else "list"
    return f"{outer}[{type_text(schema.get('items', {}))}]"


def params_of(schema: Mapping[str, Any]) -> list[Param]:
    """The parameters a request schema carries (``func_name`` and such left out)."""
    required = set(schema.get("required", ()))
    found = []
    for name, prop in schema.get("properties", {}).items():
        if name in ROUTING:
            continue
        default = json.dumps(prop["default"]) if "default" in prop else ""
        found.append(
            Param(
                name=name,
                type=type_text(prop),
                required=name in required,
                default=default,
                description=str(prop.get("description", "")),
            )
        )
    return found


def example_value(schema: Mapping[str, Any] | bool, defs: Mapping[str, Any], depth: int = 0) -> Any:
    """A value the schema accepts, for the page's example requests."""
    if not isinstance(schema, Mapping) or depth > 8:
        return None
    if "default" in schema:
        return schema["default"]
    if "$ref" in schema:
        return example_value(defs.get(_ref_name(schema["$ref"]), {}), defs, depth + 1)
    if "const" in schema:
        return schema["const"]
    if "x-xarray" in schema:  # DASF's dictionary layout (to_dict())
        variable = {"dims": ["x"], "data": [1.0, 2.0]}
        return (
            variable
            if schema["x-xarray"] == "DataArray"
            else {"coords": {}, "data_vars": {"v": variable}}
        )
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return example_value(options[0], defs, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "array":
        return _example_array(schema, defs, depth)
    if kind == "object":
        props = schema.get("properties", {})
        return {
            n: example_value(p, defs, depth + 1)
            for n, p in props.items()
            if n in schema.get("required", ())
        }
    if kind == "string":
        return _example_string(schema)
    return {"number": _number(schema, 1.5), "integer": _number(schema, 1), "boolean": True}.get(
        str(kind)
    )


def _number(schema: Mapping[str, Any], value: float) -> Any:
    low = schema.get("minimum", schema.get("exclusiveMinimum"))
    if low is not None and value < low:
        value = low + (1 if "exclusiveMinimum" in schema else 0)
    high = schema.get("maximum", schema.get("exclusiveMaximum"))
    if high is not None and value > high:
        value = high - (1 if "exclusiveMaximum" in schema else 0)
    return value


def _example_array(schema: Mapping[str, Any], defs: Mapping[str, Any], depth: int) -> Any:
    if "prefixItems" in schema:
        return [example_value(s, defs, depth + 1) for s in schema["prefixItems"]]
    if "x-shape" in schema:
        value: Any = 1.0 if "float" in str(schema.get("x-dtype", "float")) else 1
        for dim in reversed(schema["x-shape"]):
            value = [value] * (dim if dim is not None else 2)
        return value
    items = schema.get("items", {})
    if not items and "x-dtype" in schema:
        return [1.0, 2.0] if "float" in str(schema["x-dtype"]) else [1, 2]
    return [example_value(items, defs, depth + 1)]


def _example_string(schema: Mapping[str, Any]) -> str:
    examples = {
        "date": "2024-01-31",
        "date-time": "2024-01-31T12:00:00Z",
        "time": "12:00:00",
        "duration": "PT1H",
        "path": "data.nc",
        "uuid": "00000000-0000-0000-0000-000000000000",
    }
    if schema.get("format") in examples:
        return examples[schema["format"]]
    pattern = schema.get("pattern")
    if isinstance(pattern, str) and re.fullmatch(r"\^?\[A-Z\]\+\$?", pattern):
        return "ABC"
    return "text" + "x" * max(0, int(schema.get("minLength", 0)) - 4)
