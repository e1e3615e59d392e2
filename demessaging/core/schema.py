"""JSON Schema of a module, plain and in DASF's ``api_info`` layout."""

from __future__ import annotations

from typing import Any

from .models import CallableModels, ModuleModels, camel

__all__ = ["api_info", "module_schema", "return_schema"]


def module_schema(models: ModuleModels) -> dict[str, Any]:
    """The JSON Schema of every request the module accepts (DASF's ``info`` reply)."""
    schema = models.request.json_schema()
    schema["title"] = models.spec.name
    if models.spec.info.description:
        schema["description"] = models.spec.info.description
    return schema


def return_schema(target: CallableModels) -> dict[str, Any]:
    """The JSON Schema of a function's or method's return value."""
    schema = target.returns.json_schema()
    schema.setdefault("title", f"{target.request.__name__}Returns")
    if target.spec.info.returns:
        schema.setdefault("description", target.spec.info.returns)
    return schema


def _callable_info(name: str, target: CallableModels) -> dict[str, Any]:
    return {
        "name": name,
        "rpc_schema": target.request.model_json_schema(),
        "return_schema": return_schema(target),
    }


def api_info(models: ModuleModels) -> dict[str, Any]:
    """The module in DASF's ``api_info`` layout.

    ``{"functions": [{"name", "rpc_schema", "return_schema"}], "classes": [{"name",
    "rpc_schema", "methods": [...]}], "rpc_schema": <module schema>}``. A class's
    ``rpc_schema`` is the model with its constructor arguments (or, for a class with only
    static and class methods, the model without them). Classes without public methods
    are left out: they serve nothing.
    """
    classes = []
    for cls in models.spec.classes:
        model = models.classes.get(f"Class{camel(cls.name)}") or models.classes.get(
            f"Class{camel(cls.name)}Static"
        )
        if model is None:  # no public methods: nothing to call
            continue
        classes.append(
            {
                "name": cls.name,
                "rpc_schema": model.model_json_schema(),
                "methods": [
                    _callable_info(m.name, models.methods[(cls.name, m.name)]) for m in cls.methods
                ],
            }
        )
    return {
        "functions": [_callable_info(name, f) for name, f in models.functions.items()],
        "classes": classes,
        "rpc_schema": module_schema(models),
    }
