"""The package keeps its layers: what each part may import, no cycles, modules of modest size.

See docs/architecture.md. Imports are read from the source. The layer rules count every
import, also those inside functions; cycles count the module-level ones (type-checking
imports included: a cycle of types is a cycle of design), not the late loads in functions.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "demessaging"
BROKER_LIBRARIES = ("pulsar", "pulsar_lite", "websockets")
#: The most lines a module of the package has.
MAX_LINES = 450


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, *, anywhere: bool) -> set[str]:
    """The modules ``path`` imports, as absolute names.

    At module level (``if TYPE_CHECKING:`` blocks included), or, with ``anywhere``, also
    inside functions.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - node.level + 1]
                    prefix = ".".join(base)
                    target = f"{prefix}.{node.module}" if node.module else prefix
                else:
                    target = node.module or ""
                found.add(target)
                for alias in node.names:  # `from . import json` imports a submodule
                    found.add(f"{target}.{alias.name}")
            elif isinstance(node, ast.If):
                visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for handler in node.handlers:
                    visit(handler.body)

    if anywhere:
        visit([n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))])
    else:
        visit(tree.body)
    return found


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
#: Every import, also inside functions: what a module depends on.
IMPORTS = {name: imports_of(path, anywhere=True) for name, path in MODULES.items()}
#: Module-level imports (type-checking ones included): what a module is built on.
TOP_LEVEL = {name: imports_of(path, anywhere=False) for name, path in MODULES.items()}


def internal(name: str, graph: dict[str, set[str]] = IMPORTS) -> set[str]:
    """The package's own modules that ``name`` imports."""
    return {i for i in graph[name] if i in MODULES and i != name}


def in_part(part: str) -> list[str]:
    name = f"demessaging.{part}"
    return [m for m in MODULES if m == name or m.startswith(f"{name}.")]


@pytest.mark.parametrize("name", in_part("transport"))
def test_transports_import_only_the_message_and_errors(name: str) -> None:
    allowed = {"demessaging.message", "demessaging.errors", "demessaging"}
    others = {
        i for i in internal(name) if i not in allowed and not i.startswith("demessaging.transport")
    }
    assert not others, f"{name} imports {sorted(others)}"


@pytest.mark.parametrize("name", in_part("core") + in_part("serialization"))
def test_core_and_serialization_import_no_broker_and_no_upper_layer(name: str) -> None:
    upper = ("transport", "protocol", "backend", "client", "codegen", "dasf", "cli", "embedded")
    upper += ("pages",)
    bad = {
        i
        for i in IMPORTS[name]
        if i.split(".")[0] in BROKER_LIBRARIES
        or any(i == f"demessaging.{u}" or i.startswith(f"demessaging.{u}.") for u in upper)
    }
    assert not bad, f"{name} imports {sorted(bad)}"


def test_importing_the_core_loads_no_broker_library() -> None:
    code = (
        "import sys, demessaging.core, demessaging.serialization;"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {BROKER_LIBRARIES!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_no_import_cycles() -> None:
    # Tarjan's strongly connected components over the module-level import graph
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = iter(range(10**6))

    def visit(node: str) -> None:
        index[node] = low[node] = next(counter)
        stack.append(node)
        on_stack.add(node)
        # a package's __init__ re-exporting its own modules is not a cycle of meaning
        for target in internal(node, TOP_LEVEL):
            if MODULES[node].name == "__init__.py" and target.startswith(f"{node}."):
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for name in MODULES:
        if name not in index:
            visit(name)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_are_of_modest_size(name: str) -> None:
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines; split it by what it holds"
