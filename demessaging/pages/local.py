"""The page of a module read in this process: its ``api_info`` plus what only its source says.

The source adds the annotations as written (``npt.NDArray[np.float64]``), positional-only
parameters, the exceptions the docstrings and the module declare, and whether a member
streams its items or reports progress.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

import docstring_parser

from .. import __version__
from ..core import build_models, inspect_module
from ..core.models import field_names
from ..core.schema import api_info
from ..core.specs import FunctionSpec, ModuleSpec
from .build import page_from_api_info, pretty_json, python_call, signature
from .model import Member, Page

__all__ = ["client_package", "module_docs", "page_from_module", "page_from_spec"]


def client_package(module: str) -> str:
    """The import name of a module's generated client by default (``climate_client``)."""
    return f"{module.rsplit('.', 1)[-1]}_client".replace("-", "_").lower()


def page_from_module(
    target: str | Path | ModuleType, *, topic: str | None = None, package: str | None = None
) -> Page:
    """The page of a module (a file path, a dotted name or a module object)."""
    return page_from_spec(inspect_module(target), topic=topic, package=package)


def page_from_spec(
    spec: ModuleSpec,
    *,
    topic: str | None = None,
    package: str | None = None,
    info: Mapping[str, Any] | None = None,
) -> Page:
    """The page of an inspected module.

    Parameters
    ----------
    spec
        The module, as :func:`~demessaging.core.inspect_module` reads it.
    topic
        The backend's topic; the module's name by default.
    package
        The import name of its generated client; ``<module>_client`` by default.
    info
        Its ``api_info``, if already made.
    """
    short = spec.shown.rsplit(".", 1)[-1]
    package = package or client_package(short)
    info = info if info is not None else api_info(build_models(spec))
    page = page_from_api_info(
        info, topic=topic or short, package=package, source=f"the module {spec.shown}"
    )
    page.title = spec.shown
    page.version = __version__
    specs: dict[str, FunctionSpec] = {f.name: f for f in spec.functions}
    for cls in spec.classes:
        merged = cls.info.merged(cls.constructor.info)  # the class's docstring says most
        specs[cls.name] = dataclasses.replace(cls.constructor, info=merged, doc=cls.doc)
        specs.update({f"{cls.name}.{m.name}": m for m in cls.methods})
    for member in page.members:
        _enrich(member, specs, package)
        for method in member.methods:
            _enrich(method, specs, package)
    page.errors = [(name, _first_line(cls.__doc__)) for name, cls in spec.errors.items()]
    return page


def _enrich(member: Member, specs: Mapping[str, FunctionSpec], package: str) -> None:
    found = specs.get(member.name)
    if found is None:
        return
    annotations = _source_annotations(found)
    fields = field_names(found.parameters)
    by_field = {p.name: p for p in member.params}
    for param in found.parameters:
        shown = by_field.get(fields.get(param.name, param.name))
        if shown is None:
            continue
        shown.python = annotations.get(param.name, "")
        shown.positional = param.kind is inspect.Parameter.POSITIONAL_ONLY
        shown.description = shown.description or found.info.params.get(param.name, "")
        if not param.required:
            shown.python_default = _default(param.default)
    if member.kind != "class":
        member.kind = found.kind
        member.returns_python = annotations.get("return", "")
        member.returns_doc = found.info.returns or member.returns_doc
        member.streams = found.streams
    member.progress = bool(found.reporters)  # a class: its constructor
    member.raises = _raises(found.doc)
    member.signature = signature(member)
    if member.kind != "class":
        if member.owner is not None and found.kind != "method":  # no instance: no arguments
            body = json.loads(member.example_json)
            body = {"class_name": body["class_name"], "function": body["function"]}
            member.example_json = pretty_json(body)
        member.example_python = python_call(member, package)


def _source_annotations(spec: FunctionSpec) -> dict[str, str]:
    """The annotations as the source writes them."""
    raw: Mapping[str, Any] = getattr(inspect.unwrap(spec.func), "__annotations__", {}) or {}
    return {
        name: value if isinstance(value, str) else inspect.formatannotation(value)
        for name, value in raw.items()
    }


def _default(value: Any) -> str:
    """A default as Python source would write it, or as its repr."""
    if isinstance(value, enum.Enum):
        return f"{type(value).__name__}.{value.name}"
    return repr(value)


def _raises(doc: str | None) -> list[tuple[str, str]]:
    if not doc:
        return []
    try:
        parsed = docstring_parser.parse(inspect.cleandoc(doc))
    except docstring_parser.ParseError:
        return []
    return [(r.type_name or "", (r.description or "").strip()) for r in parsed.raises]


def _first_line(doc: str | None) -> str:
    return inspect.cleandoc(doc).split("\n", 1)[0] if doc else ""


def module_docs(
    target: str | Path | ModuleType | ModuleSpec,
    *,
    topic: str | None = None,
    package: str | None = None,
) -> tuple[Page, dict[str, Any], dict[str, Any]]:
    """A module's page, its ``api_info``, and the item schema of each streaming member."""
    spec = target if isinstance(target, ModuleSpec) else inspect_module(target)
    models = build_models(spec)
    info = api_info(models)
    page = page_from_spec(spec, topic=topic, package=package, info=info)
    items = {
        name: target_models.returns.json_schema()
        for name, target_models in [
            *models.functions.items(),
            *((f"{c}.{m}", t) for (c, m), t in models.methods.items()),
        ]
        if target_models.spec.streams
    }
    return page, info, items
