"""Introspection: module -> specs -> pydantic models -> JSON Schema. Imports no broker library."""

from __future__ import annotations

from .arrays import ArraySpec, prepare_annotation
from .introspection import inspect_class, inspect_function, inspect_module, is_data_type
from .loader import load_module
from .models import Call, CallableModels, ModuleModels, build_models
from .specs import ClassSpec, FunctionSpec, ModuleSpec, ParameterSpec

__all__ = [
    "ArraySpec",
    "Call",
    "CallableModels",
    "ClassSpec",
    "FunctionSpec",
    "ModuleModels",
    "ModuleSpec",
    "ParameterSpec",
    "build_models",
    "inspect_class",
    "inspect_function",
    "inspect_module",
    "is_data_type",
    "load_module",
    "prepare_annotation",
]
