"""The page from DASF's ``api_info`` layout, which a module and a running backend both give."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .model import ROUTING, Member, Page, Param, TypeDef, example_value, params_of, type_text

__all__ = ["page_from_api_info", "pretty_json", "python_call", "signature"]


def pretty_json(value: Any, level: int = 0) -> str:
    """JSON with one key of an object a line, and lists and scalars on one line."""
    if isinstance(value, dict) and value:
        pad = "  " * (level + 1)
        items = [f"{pad}{json.dumps(k)}: {pretty_json(v, level + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * level + "}"
    return json.dumps(value)


def page_from_api_info(
    api_info: Mapping[str, Any], *, topic: str, package: str, source: str = ""
) -> Page:
    """The page of a backend whose ``api_info`` is given.

    Parameters
    ----------
    api_info
        ``{"functions": [...], "classes": [...], "rpc_schema": ...}``, as
        :func:`demessaging.core.schema.api_info` makes it.
    topic
        The backend's request topic.
    package
        The import name of the generated client, for the Python examples.
    source
        Where the page comes from, shown in its footer.

    Raises
    ------
    ValueError
        If ``api_info`` is not in that layout.
    """
    if not isinstance(api_info, Mapping) or not isinstance(api_info.get("functions"), list):
        raise ValueError("api_info has no list of functions: not DASF's api_info layout")
    module = api_info.get("rpc_schema") or {}
    page = Page(
        title=str(module.get("title", topic)),
        topic=topic,
        package=package,
        description=str(module.get("description", "")),
        source=source,
    )
    types: dict[str, TypeDef] = {}
    for entry in api_info["functions"]:
        page.members.append(_callable(entry, "function", package, None, types))
    for entry in api_info.get("classes", []):
        page.members.append(_class(entry, package, types))
    page.types = sorted(types.values(), key=lambda t: t.name.lower())
    return page


def _callable(
    entry: Mapping[str, Any],
    kind: str,
    package: str,
    owner: tuple[str, Mapping[str, Any]] | None,
    types: dict[str, TypeDef],
) -> Member:
    name = str(entry["name"])
    request, returned = entry.get("rpc_schema", {}), entry.get("return_schema", {})
    _collect(request, types)
    _collect(returned, types)
    member = Member(
        name=f"{owner[0]}.{name}" if owner else name,
        kind=kind,
        signature="",
        description=str(request.get("description", "")),
        params=params_of(request),
        returns=type_text(returned),
        returns_doc=str(returned.get("description", "")),
        request=request,
        owner_request=owner[1] if owner else None,
    )
    arguments = _example(request)
    body: dict[str, Any] = {"func_name": name, **arguments}
    if owner is not None:
        outer = _example(owner[1])
        body = {"class_name": owner[0], **outer, "function": body}
    member.example_json = pretty_json(body)
    member.signature = signature(member)
    member.example_python = python_call(member, package)
    return member


def _class(entry: Mapping[str, Any], package: str, types: dict[str, TypeDef]) -> Member:
    name = str(entry["name"])
    model = entry.get("rpc_schema", {})
    own_defs = {k for k, v in model.get("$defs", {}).items() if _is_method_model(v)}
    _collect(model, types, skip=own_defs)
    member = Member(
        name=name,
        kind="class",
        signature="",
        description=str(model.get("description", "")),
        params=params_of(model),
        request=model,
    )
    member.signature = signature(member)
    member.methods = [
        _callable(m, "method", package, (name, model), types) for m in entry.get("methods", [])
    ]
    return member


def _is_method_model(schema: Mapping[str, Any]) -> bool:
    return "func_name" in schema.get("properties", {})


def _example(schema: Mapping[str, Any]) -> dict[str, Any]:
    defs = schema.get("$defs", {})
    required = set(schema.get("required", ()))
    return {
        n: example_value(p, defs)
        for n, p in schema.get("properties", {}).items()
        if n in required and n not in ROUTING
    }


def _collect(
    schema: Mapping[str, Any],
    types: dict[str, TypeDef],
    skip: set[str] | frozenset[str] = frozenset(),
) -> None:
    """Add the models and enumerations a schema defines to ``types``."""
    for name, sub in schema.get("$defs", {}).items():
        if name in skip or name in types or not isinstance(sub, Mapping):
            continue
        found = TypeDef(name=name, description=str(sub.get("description", "")))
        if "enum" in sub:
            found.values = [json.dumps(v) for v in sub["enum"]]
        elif "properties" in sub:
            found.fields = params_of(sub)
        else:
            found.text = type_text({**sub, "title": None} if "title" in sub else sub)
        types[name] = found


def signature(member: Member) -> str:
    """``name(a: type = default, ...) -> type``, from Python annotations where known."""
    parts = []
    positional = [p for p in member.params if p.positional]
    for param in member.params:
        text = f"{param.name}: {param.python or param.type}"
        if not param.required:
            text += f" = {param.python_default or param.default or '...'}"
        parts.append(text)
        if positional and param is positional[-1]:
            parts.append("/")
    arrow = f" -> {member.returns_python or member.returns}" if member.kind != "class" else ""
    return f"{member.name.rsplit('.', 1)[-1]}({', '.join(parts)}){arrow}"


def _py(value: Any, schema: Mapping[str, Any], imports: set[str]) -> str:
    if "x-xarray" in schema:
        imports.add("import xarray as xr")
        return f"xr.{schema['x-xarray']}.from_dict({value!r})"
    if "x-dtype" in schema or "x-shape" in schema:
        imports.add("import numpy as np")
        return f"np.array({value!r})"
    if schema.get("format") == "date" and isinstance(value, str) and len(value) == 10:
        imports.add("import datetime")
        year, month, day = (int(x) for x in value.split("-"))
        return f"datetime.date({year}, {month}, {day})"
    return repr(value)


def _arguments(schema: Mapping[str, Any], params: list[Param] | None, imports: set[str]) -> str:
    values = _example(schema)
    props = schema.get("properties", {})
    positional = {p.name for p in params or () if p.positional}
    parts = []
    for name, value in values.items():
        text = _py(value, props.get(name, {}), imports)
        parts.append(text if name in positional else f"{name}={text}")
    return ", ".join(parts)


def python_call(member: Member, package: str) -> str:
    """The member called through the generated client package, as Python source."""
    imports: set[str] = set()
    args = _arguments(member.request, member.params, imports)
    short = member.name.rsplit(".", 1)[-1]
    if member.owner is None or member.owner_request is None:
        call = f"{package}.{short}({args})"
    elif member.kind in ("staticmethod", "classmethod"):
        call = f"{package}.{member.owner}.{short}({args})"
    else:
        outer = _arguments(member.owner_request, None, imports)
        call = f"{package}.{member.owner}({outer}).{short}({args})"
    head = "\n".join(sorted(imports | {f"import {package}"}))
    if member.streams:
        return f"{head}\n\nfor item in {call}:\n    print(item)"
    return f"{head}\n\nresult = {call}"
