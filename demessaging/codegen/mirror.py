"""The source of a mirror module: the backend's functions and classes, calling the backend.

Every function and method keeps the backend's signature, defaults, type hints and docstring;
its body sends the call through the package's
:class:`~demessaging.client.remote.RemoteModule` (``_remote``): ``call`` or, for generator
functions, ``stream``. The ``aio`` submodule has the same members again, every function and
method a coroutine (``acall``) or an async generator (``astream``); it imports the reproduced
types and ``_remote`` from the package rather than repeating them.
"""

from __future__ import annotations

import collections.abc
import inspect
import json
import sys
from collections.abc import Callable
from pathlib import Path

from .. import __version__
from ..core.specs import ClassSpec, FunctionSpec, ModuleSpec
from ..errors import GeneratorError
from .guard import runtime_guard
from .render import Renderer, docstring_literal

__all__ = ["render_sources"]

_WIDTH = 100
_P = inspect.Parameter


def render_sources(
    spec: ModuleSpec, *, topic: str, broker_url: str, timeout: float, env_prefix: str
) -> tuple[str, str, set[str]]:
    """The sources of the mirror module and of its ``aio`` submodule, and their imports.

    Parameters
    ----------
    spec
        The backend module.
    topic, broker_url, timeout, env_prefix
        What the package connects to by default, and the prefix of its own settings.

    Returns
    -------
    tuple[str, str, set[str]]
        The package's ``__init__.py``, its ``aio.py``, and the top-level modules their
        annotations import.

    Raises
    ------
    GeneratorError
        If a type or default value in a signature cannot be written as source, or the
        backend exports the name ``aio``.
    """
    renderer = Renderer(_local_checker(spec))
    members = [_function(f, renderer) for f in spec.functions]
    members += [_class(c, renderer) for c in spec.classes]
    with renderer.separate_imports() as aio_imports:  # the types are reproduced by now
        aio_members = [_function(f, renderer, aio=True) for f in spec.functions]
        aio_members += [_class(c, renderer, aio=True) for c in spec.classes]
    aliases = []  # declared errors exported under a name of their own, or imported
    for name, error in spec.errors.items():
        ref = renderer.ref(error)
        if ref != name:
            aliases.append(f"{name} = {ref}")
    types = renderer.reproduced + [a.split(" = ")[0] for a in aliases]
    served = [m.name for m in spec.members]
    if "aio" in served + types:
        raise GeneratorError(
            "the backend exports the name 'aio', which its client keeps for its async face"
        )
    errors = ", ".join(_str(n) for n in spec.errors) + ("," if len(spec.errors) == 1 else "")
    preamble = [
        "# Regenerate it rather than editing it.",
        "# Defaults are the backend's own, mutable ones included; they are never mutated here.",
        "# ruff: noqa: B006, B008",
        "",
        "from __future__ import annotations",
        "",
    ]
    header = [docstring_literal(spec.doc)] if spec.doc else []
    header += [
        f"# Client of the demessaging backend {spec.name!r}, written by demessaging {__version__}.",
        *preamble,
        runtime_guard(),  # before every import: it stops without the right runtime
        "",
        "",
        *_imports(renderer.imports, members),
        "from demessaging.client import RemoteModule",
        "",
        *_all(served + types),
        "",
        "_remote = RemoteModule(",
        "    __name__,",
        f"    topic={_str(topic)},",
        f"    broker_url={_str(broker_url)},",
        f"    timeout={float(timeout)!r},",
        f"    env_prefix={_str(env_prefix)},",
        *([f"    errors=({errors}),"] if spec.errors else []),
        ")",
    ]
    blocks = ["\n".join(header), *renderer.definitions, "\n".join(aliases), *members]
    aio_doc = (
        f"Async versions of the functions and classes of the {spec.name!r} client.\n\n"
        "Every function and method is a coroutine that sends the call through the package's\n"
        "connection. The data and exception types are the package's own.\n"
    )
    imports = _imports(aio_imports, aio_members)
    aio_header = [
        docstring_literal(aio_doc),
        f"# Async client of the demessaging backend {spec.name!r}, written by demessaging "
        f"{__version__}.",
        *preamble,
        *imports,
        *([""] if imports and imports[-1] else []),
        "from . import (",
        *(f"    {n}," for n in sorted([*types, "_remote"])),
        ")",
        "",
        *_all(served + types),
    ]
    aio_blocks = ["\n".join(aio_header), *aio_members]
    return _join(blocks), _join(aio_blocks), renderer.modules


def _imports(imports: set[str], members: list[str]) -> list[str]:
    """The import lines, the standard library's first, then ``_cast`` if the bodies use it."""
    stdlib = sorted(i for i in imports if i.split()[1].split(".")[0] in sys.stdlib_module_names)
    others = sorted(imports - set(stdlib))
    cast = ["from typing import cast as _cast"] if any("_cast(" in m for m in members) else []
    lines = [*stdlib, *cast]
    return [*lines, *([""] if lines else []), *others]


def _all(names: list[str]) -> list[str]:
    return ["__all__ = [", *(f"    {_str(n)}," for n in sorted(names)), "]"]


def _join(blocks: list[str]) -> str:
    return "\n\n\n".join(b for b in blocks if b) + "\n"


def _local_checker(spec: ModuleSpec) -> Callable[[type], bool]:
    file = getattr(spec.module, "__file__", None)
    root = Path(file).resolve().parent if file else None
    stdlib = Path(inspect.getfile(inspect)).resolve().parent

    def is_local(cls: type) -> bool:
        if cls.__module__ == spec.name:
            return True
        module_file = getattr(sys.modules.get(cls.__module__), "__file__", None)
        if root is None or not module_file:
            return False
        path = Path(module_file).resolve()
        return (
            path.is_relative_to(root)
            and "site-packages" not in path.parts
            and not path.is_relative_to(stdlib)
        )

    return is_local


def _signature(spec: FunctionSpec, renderer: Renderer, first: str | None) -> tuple[list[str], str]:
    params = [first] if first else []
    for index, p in enumerate(spec.parameters):
        if p.kind is _P.KEYWORD_ONLY and (
            index == 0 or spec.parameters[index - 1].kind is not _P.KEYWORD_ONLY
        ):
            params.append("*")
        text = p.name
        if p.annotated:
            text += f": {renderer.annotation(p.annotation, f'{spec.qualname}({p.name})')}"
        if not p.required:
            try:
                default = renderer.value(p.default)
            except GeneratorError as exc:
                raise GeneratorError(f"default of {spec.qualname}({p.name}): {exc}") from exc
            text += f"{' = ' if p.annotated else '='}{default}"
        params.append(text)
        following = spec.parameters[index + 1].kind if index + 1 < len(spec.parameters) else None
        if p.kind is _P.POSITIONAL_ONLY and following is not _P.POSITIONAL_ONLY:
            params.append("/")
    returns = ""
    if spec.returns_annotated:
        returns = renderer.annotation(spec.returns, f"{spec.qualname}(return)")
    return params, returns


def _def_line(
    spec: FunctionSpec, params: list[str], returns: str, indent: str, aio: bool = False
) -> str:
    keyword = "async def" if aio or spec.is_async else "def"
    arrow = f" -> {returns}" if returns else ""
    line = f"{indent}{keyword} {spec.name}({', '.join(params)}){arrow}:"
    if len(line) <= _WIDTH:
        return line
    inner = "".join(f"{indent}    {p},\n" for p in params)
    return f"{indent}{keyword} {spec.name}(\n{inner}{indent}){arrow}:"


def _body(
    spec: FunctionSpec, member: str, returns: str, indent: str, bound: bool, aio: bool
) -> list[str]:
    """The statement that sends the call (names in it start with ``_``, as no parameter can)."""

    def statement(arguments: str, wrap: bool = False) -> str:
        args = [_str(member), arguments, *(["self._demessaging_arguments"] if bound else [])]
        send = "await _remote.acall" if aio or spec.is_async else "_remote.call"
        call = f"{send}({', '.join(args)})"
        if returns == "None":
            return f"{indent}{call}"
        if not returns:
            return f"{indent}return {call}"
        if wrap:
            inner = f"{indent}    {_str(returns)},\n{indent}    {call},\n"
            return f"{indent}return _cast(\n{inner}{indent})"
        return f"{indent}return _cast({_str(returns)}, {call})"

    line = statement(_mapping(spec))
    if len(line) <= _WIDTH:
        return [line]
    assign = _assign_arguments(spec, indent) if spec.parameters else []
    arguments = "_arguments" if spec.parameters else "{}"
    line = statement(arguments)
    return [*assign, line if len(line) <= _WIDTH else statement(arguments, wrap=True)]


def _mapping(spec: FunctionSpec) -> str:
    return "{" + ", ".join(f"{_str(p.name)}: {p.name}" for p in spec.parameters) + "}"


def _assign_arguments(spec: FunctionSpec, indent: str) -> list[str]:
    items = [f"{indent}    {_str(p.name)}: {p.name}," for p in spec.parameters]
    return [f"{indent}_arguments = {{", *items, f"{indent}}}"]


def _str(text: str) -> str:
    return json.dumps(text)


def _function(
    spec: FunctionSpec,
    renderer: Renderer,
    indent: str = "",
    first: str | None = None,
    member: str | None = None,
    *,
    aio: bool = False,
) -> str:
    """A function or method; with ``aio``, a coroutine function whatever the original is.

    A generator function stays one, taking its items from the backend one by one; its async
    face is an async generator function.
    """
    params, returns = _signature(spec, renderer, first)
    if spec.streams and aio:
        item = renderer.annotation(spec.item, f"{spec.qualname}(return)")
        returns = f"{renderer.ref(collections.abc.AsyncIterator)}[{item}]"
    lines = [_def_line(spec, params, returns, indent, aio)]
    if spec.doc:
        lines.append(f"{indent}    {docstring_literal(spec.doc)}")
    body = _stream_body if spec.streams else _body
    lines += body(spec, member or spec.name, returns, indent + "    ", first == "self", aio)
    return "\n".join(lines)


def _stream_body(
    spec: FunctionSpec, member: str, returns: str, indent: str, bound: bool, aio: bool
) -> list[str]:
    """The statements that take a generator's items from the backend."""

    def statements(arguments: str) -> list[str]:
        args = [_str(member), arguments, *(["self._demessaging_arguments"] if bound else [])]
        if aio:
            send = f"_remote.astream({', '.join(args)})"
            return [f"{indent}async for _item in {send}:", f"{indent}    yield _item"]
        return [f"{indent}yield from _remote.stream({', '.join(args)})"]

    lines = statements(_mapping(spec))
    if max(len(line) for line in lines) <= _WIDTH or not spec.parameters:
        return lines
    return [*_assign_arguments(spec, indent), *statements("_arguments")]


def _class(spec: ClassSpec, renderer: Renderer, *, aio: bool = False) -> str:
    """A class; with ``aio``, its methods are coroutine functions (its constructor is not)."""
    lines = [f"class {spec.name}:"]
    if spec.doc:
        lines += [f"    {docstring_literal(spec.doc)}", ""]
    init = spec.constructor
    params, returns = _signature(init, renderer, "self")
    lines.append(_def_line(init, params, returns, "    "))
    if init.doc and init.func is not object.__init__:
        lines.append(f"        {docstring_literal(init.doc)}")
    bind = f"        self._demessaging_arguments = _remote.bind({_str(spec.name)}, {{}})"
    if len(bind) + len(_mapping(init)) - 2 <= _WIDTH:
        lines.append(bind.replace("{}", _mapping(init)))
    else:
        lines += [*_assign_arguments(init, "        "), bind.replace("{}", "_arguments")]
    for method in spec.methods:
        lines.append("")
        member = f"{spec.name}.{method.name}"
        if method.kind == "staticmethod":
            lines += [
                "    @staticmethod",
                _function(method, renderer, "    ", None, member, aio=aio),
            ]
        elif method.kind == "classmethod":
            lines += [
                "    @classmethod",
                _function(method, renderer, "    ", "cls", member, aio=aio),
            ]
        else:
            lines.append(_function(method, renderer, "    ", "self", member, aio=aio))
    return "\n".join(lines)
