"""API versions: a fingerprint of each served member, and what changed between two of them.

A member's **shape** is what a call depends on: the JSON Schema of its arguments (and of the
constructor arguments, for methods) and of its return value, with every ``$ref`` resolved,
and without the words for people (titles, descriptions, examples) or the defaults. Its
**fingerprint** is a hash of the shape. Both are computed from DASF's ``api_info`` layout, so
a client finds them the same way for its own (generated) module and for the ``api_info`` a
backend sends.

Generated clients send the fingerprint of the member they call; the backend answers with the
fingerprint of its own member of that name. When the two differ and the call fails, the client
reads the backend's ``api_info`` and names what changed (:func:`changes`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["changes", "fingerprint", "fingerprints", "member_name", "shapes"]

#: Schema keys that never make two versions differ: words for people, and defaults (a caller
#: that passes the argument does not see them, one that does not gets the backend's).
_IGNORED = frozenset({"title", "description", "examples", "$comment", "default"})
#: Request keys of DASF's layout, not parameters.
_LAYOUT = frozenset({"func_name", "class_name", "function"})


def member_name(function: str, owner: str | None = None) -> str:
    """``"function"``, or ``"Class.method"``."""
    return f"{owner}.{function}" if owner else function


def shapes(api: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The shape of every member of an ``api_info``, by :func:`member_name`."""
    found: dict[str, dict[str, Any]] = {}
    for function in api.get("functions", []):
        found[member_name(function["name"])] = _shape(function)
    for cls in api.get("classes", []):
        constructor = _shape({"rpc_schema": cls.get("rpc_schema", {})})
        for method in cls.get("methods", []):
            shape = _shape(method)
            shape["constructor"] = constructor["parameters"]
            shape["constructor_required"] = constructor["parameters_required"]
            found[member_name(method["name"], cls["name"])] = shape
    return found


def fingerprint(shape: Mapping[str, Any]) -> str:
    """A short hash of a member's shape."""
    text = json.dumps(shape, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprints(shapes: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """The fingerprint of every member, by name, from their :func:`shapes`."""
    return {member: fingerprint(shape) for member, shape in shapes.items()}


def changes(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[str]:
    """What changed from the shape ``old`` (the client's) to ``new`` (the backend's).

    Returns sentences, empty if nothing a caller depends on changed. A parameter added with a
    default is a compatible change and is not listed.
    """
    if old is None:
        return ["the client does not know this member"]
    if new is None:
        return ["the backend no longer serves it"]
    found = []
    for part, label in (("constructor", "constructor argument"), ("parameters", "parameter")):
        before, after = old.get(part, {}), new.get(part, {})
        required_before = set(old.get(f"{part}_required", []))
        required_after = set(new.get(f"{part}_required", []))
        for name in before.keys() - after.keys():
            found.append(f"{label} {name!r} was removed")
        for name in sorted(after.keys() - before.keys()):
            if name in required_after:
                found.append(f"{label} {name!r} was added and is required")
        for name in sorted(before.keys() & after.keys()):
            if before[name] != after[name]:
                found.append(
                    f"{label} {name!r} changed from {_brief(before[name])} to {_brief(after[name])}"
                )
            if name in required_after and name not in required_before:
                found.append(f"{label} {name!r} is now required")
    if old.get("returns") != new.get("returns"):
        found.append(
            f"the return value changed from {_brief(old.get('returns'))} "
            f"to {_brief(new.get('returns'))}"
        )
    return sorted(found)


def _shape(member: Mapping[str, Any]) -> dict[str, Any]:
    request = _strip(member.get("rpc_schema", {}))
    return {
        "parameters": _parameters(request),
        "parameters_required": sorted(set(request.get("required", [])) - _LAYOUT),
        "returns": _strip(member.get("return_schema", {})),
    }


def _parameters(schema: Mapping[str, Any]) -> dict[str, Any]:
    properties = schema.get("properties", {})
    return {name: sub for name, sub in properties.items() if name not in _LAYOUT}


def _strip(schema: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` with its references resolved and its words for people left out."""
    defs = schema.get("$defs", {})

    def walk(node: Any, seen: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [walk(item, seen) for item in node]
        if not isinstance(node, Mapping):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref.rsplit("/", 1)[1]
            if name in seen or name not in defs:  # a recursive type: its name stands for it
                return {"$ref": name}
            return walk(defs[name], (*seen, name))
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _IGNORED or key == "$defs":
                continue
            if key == "properties" and isinstance(value, Mapping):
                out[key] = {name: walk(sub, seen) for name, sub in value.items()}
            else:
                out[key] = walk(value, seen)
        return out

    stripped = walk(schema, ())
    return stripped if isinstance(stripped, dict) else {}


def _brief(schema: Any) -> str:
    text = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= 80 else text[:77] + "..."
