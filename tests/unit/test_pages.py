"""The API page: every member, parameter, type, default and docstring of a module is on it.

The page is read back with html.parser into a tree; what it must show is taken from the
module itself (its specs, its annotations as written, its JSON Schema), not from the page's
own model.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from demessaging.cli import cli
from demessaging.codegen import generate
from demessaging.core import build_models, inspect_module
from demessaging.core.models import field_names
from demessaging.core.schema import api_info
from demessaging.core.specs import FunctionSpec, ModuleSpec
from demessaging.pages import page_from_module, render_page
from demessaging.pages.build import page_from_api_info
from demessaging.pages.remote import remote_page

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
CLIMATE = ROOT / "examples" / "climate.py"
KITCHEN = DATA / "kitchen_sink.py"
WORKERS = DATA / "workers.py"
XARRAY = DATA / "xarray_module.py"
DASF = DATA / "dasf_module.py"
#: The most the example module's page may weigh, in bytes.
CLIMATE_PAGE_LIMIT = 40_000


@dataclass
class Node:
    """An element of the page."""

    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """Its text, whitespace collapsed."""
        parts = [c if isinstance(c, str) else c.text for c in self.children]
        return " ".join("".join(parts).split())

    @property
    def raw(self) -> str:
        """Its text as it is (preformatted blocks)."""
        return "".join(c if isinstance(c, str) else c.raw for c in self.children)

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.walk()

    def matches(self, tag: str | None, attrs: dict[str, str]) -> bool:
        """Whether it has the tag and attributes (``class_`` for a class, ``_`` for ``-``)."""
        if tag is not None and self.tag != tag:
            return False
        for key, value in attrs.items():
            name = "class" if key == "class_" else key.replace("_", "-")
            have = self.attrs.get(name)
            if have is None or (value not in have.split() if name == "class" else have != value):
                return False
        return True

    def find(self, tag: str | None = None, **attrs: str) -> list[Node]:
        """Elements under it (itself included) with the tag and attributes."""
        return [n for n in self.walk() if n.matches(tag, attrs)]

    def own(self, tag: str | None = None, **attrs: str) -> list[Node]:
        """Like :meth:`find`, but not inside a nested member section."""
        found = []

        def visit(node: Node) -> None:
            for child in node.children:
                if not isinstance(child, Node) or child.matches("section", {"class_": "member"}):
                    continue
                if child.matches(tag, attrs):
                    found.append(child)
                visit(child)

        visit(self)
        return found


VOID = {"meta", "input", "br", "img", "link", "hr", "col", "source", "wbr", "area", "base"}


class TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#root", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(html: str) -> Node:
    builder = TreeBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


def plain(text: str) -> str:
    """Docstring text as the page shows it: roles and backquotes gone, whitespace collapsed."""
    text = re.sub(r":[a-z]+:`([^`]+)`", r"\1", text)
    return " ".join(text.replace("``", "").replace("`", "").split())


def source_annotations(spec: FunctionSpec) -> dict[str, str]:
    raw = getattr(inspect.unwrap(spec.func), "__annotations__", {})
    return {k: v if isinstance(v, str) else inspect.formatannotation(v) for k, v in raw.items()}


def member_section(tree: Node, name: str) -> Node:
    found = tree.find("section", id=name)
    assert len(found) == 1, f"no single section for {name}"
    return found[0]


def check_member(tree: Node, name: str, spec: FunctionSpec, schema: dict[str, Any]) -> None:
    """The member's section shows its parameters, types, defaults and docstring."""
    section = member_section(tree, name)
    assert "member" in section.attrs["class"].split()
    heading = section.own("h2") + section.own("h3") + section.own("h4")
    assert heading
    assert heading[0].text.startswith(name)
    signature = section.own("pre", class_="sig")[0].text
    assert signature.startswith(name.rsplit(".", 1)[-1] + "(")
    description = " ".join(n.text for n in section.own("div", class_="doc"))
    for paragraph in spec.info.description.split("\n\n"):
        assert plain(paragraph) in description
    annotations = source_annotations(spec)
    fields = field_names(spec.parameters)
    props = schema.get("properties", {})
    for param in spec.parameters:
        key = fields.get(param.name, param.name)
        rows = section.own("tr", data_param=key)
        assert len(rows) == 1, f"{name}: no row for {key}"
        cells = {c.attrs.get("class", ""): c for c in rows[0].find("td")}
        assert cells["name"].text.startswith(key)
        assert param.name in signature
        if param.annotated:
            assert annotations[param.name] in cells["type"].text, (name, param.name)
        if param.required:
            assert cells["default"].text == "required"
        elif "default" in props[key]:
            assert cells["default"].text == json.dumps(props[key]["default"])
        else:
            pytest.fail(f"{name}: {key} has a default its schema does not say")
        described = props[key].get("description") or spec.info.params.get(param.name, "")
        assert cells["doc"].text == plain(described)  # configure() may say it, else the doc
    for reporter in spec.reporters:
        assert not section.own("tr", data_param=reporter.name)
    if name != spec.qualname or spec.name != "__init__":
        returns = section.own("p", class_="returns")
        if spec.name != "__init__":
            assert returns, name
            if spec.returns_annotated and "return" in annotations:
                assert annotations["return"] in returns[0].text
            assert plain(spec.info.returns) in returns[0].text
    tags = {t.text for t in section.own("span", class_="tag")}
    assert ("streams" in tags) == spec.streams, name
    assert ("reports progress" in tags) == bool(spec.reporters), name


def expected_members(spec: ModuleSpec) -> list[tuple[str, FunctionSpec, dict[str, Any]]]:
    """Every member with its spec and request schema, from the module's api_info."""
    info = api_info(build_models(spec))
    functions = {f.name: f for f in spec.functions}
    found = [(f["name"], functions[f["name"]], f["rpc_schema"]) for f in info["functions"]]
    for cls_info in info["classes"]:
        cls = next(c for c in spec.classes if c.name == cls_info["name"])
        constructor = dataclasses.replace(
            cls.constructor, info=cls.info.merged(cls.constructor.info)
        )  # a class's docstring describes its constructor's parameters
        found.append((cls.name, constructor, cls_info["rpc_schema"]))
        methods = {m.name: m for m in cls.methods}
        for method in cls_info["methods"]:
            found.append(
                (f"{cls.name}.{method['name']}", methods[method["name"]], method["rpc_schema"])
            )
    return found


@pytest.fixture(
    scope="module", params=[CLIMATE, KITCHEN, WORKERS, XARRAY, DASF], ids=lambda p: p.stem
)
def rendered(request: pytest.FixtureRequest) -> tuple[ModuleSpec, str, Node]:
    spec = inspect_module(request.param)
    html = render_page(page_from_module(spec.module))
    return spec, html, parse(html)


def test_every_member_parameter_type_default_and_docstring_is_on_the_page(
    rendered: tuple[ModuleSpec, str, Node],
) -> None:
    spec, _, tree = rendered
    members = expected_members(spec)
    assert len(members) >= 2
    for name, member_spec, schema in members:
        check_member(tree, name, member_spec, schema)
    title = tree.find("h1")[0].text
    assert title == spec.shown
    header = tree.find("header")[0].text
    for paragraph in spec.info.description.split("\n\n"):
        assert plain(paragraph) in header


def test_the_module_types_are_expanded(rendered: tuple[ModuleSpec, str, Node]) -> None:
    spec, _, tree = rendered
    info = api_info(build_models(spec))
    defs: dict[str, Any] = {}
    for entry in [*info["functions"], *(m for c in info["classes"] for m in c["methods"])]:
        for schema in (entry["rpc_schema"], entry["return_schema"]):
            defs.update(schema.get("$defs", {}))
    for name, schema in defs.items():
        section = tree.find(id=f"type-{name}")
        assert len(section) == 1, name
        text = section[0].text
        assert plain(schema.get("description", "")) in text
        for value in schema.get("enum", []):
            assert json.dumps(value) in text
        for prop in schema.get("properties", {}):
            assert section[0].find("tr", data_param=prop), (name, prop)


def test_examples_are_valid_requests_and_python(rendered: tuple[ModuleSpec, str, Node]) -> None:
    spec, _, tree = rendered
    models = build_models(spec)
    checked = 0
    for name, _, _ in expected_members(spec):
        section = member_section(tree, name)
        blocks = section.own("pre", class_="json")
        if "." not in name and any(c.name == name for c in spec.classes):
            assert not blocks  # a class: its methods have the examples
            continue
        call = models.validate_json(blocks[0].raw)  # raises if not a valid request
        assert call.target.spec.qualname == name
        python = section.own("pre", class_="python")[0]
        compile(python.raw, name, "exec")
        checked += 1
    assert checked >= 2


def test_the_page_needs_no_network(rendered: tuple[ModuleSpec, str, Node]) -> None:
    _, html, tree = rendered
    for node in tree.walk():
        for attr in ("src", "href", "action"):
            value = node.attrs.get(attr)
            if value is not None:
                assert value.startswith("#") or value == "asyncapi.json", value
        assert node.tag not in ("link", "iframe", "img", "object")
    scripts = tree.find("script")
    assert len(scripts) == 1
    assert "src" not in scripts[0].attrs
    assert "http://" not in html
    assert "https://" not in html
    anchors = {n.attrs["href"][1:] for n in tree.find("a") if n.attrs["href"].startswith("#")}
    ids = {n.attrs["id"] for n in tree.walk() if "id" in n.attrs}
    assert anchors <= ids, anchors - ids


def test_the_example_page_is_small() -> None:
    html = render_page(page_from_module(CLIMATE))
    assert len(html.encode()) < CLIMATE_PAGE_LIMIT


def test_declared_errors_and_raises() -> None:
    tree = parse(render_page(page_from_module(KITCHEN)))
    errors = tree.find("section", id="errors")[0].text
    assert "KitchenError" in errors
    assert "BurntError" in errors
    assert "_CharredError" not in errors
    raises = member_section(tree, "cook").own("ul", class_="raises")[0].text
    assert "BurntError: Past ten minutes." in raises
    assert "KeyError" in raises


def test_text_from_the_module_is_escaped(tmp_path: Path) -> None:
    source = tmp_path / "pages_escaped.py"
    source.write_text(
        'def shout(text: str = "<b>") -> str:\n'
        '    """Return <script>alert(1)</script> & more.\n\n'
        "    Parameters\n    ----------\n    text\n        A <i>text</i>.\n"
        '    """\n    return text\n',
        encoding="utf-8",
    )
    html = render_page(page_from_module(source))
    assert "<script>alert" not in html
    assert "<i>text" not in html
    tree = parse(html)
    assert "Return <script>alert(1)</script> & more." in member_section(tree, "shout").text
    assert len(tree.find("script")) == 1


def test_the_page_from_api_info_alone_has_every_member() -> None:
    spec = inspect_module(CLIMATE)
    info = json.loads(json.dumps(api_info(build_models(spec))))  # as it comes over the wire
    tree = parse(render_page(page_from_api_info(info, topic="far", package="far_client")))
    for name, member_spec, schema in expected_members(spec):
        section = member_section(tree, name)
        for key in schema["properties"]:
            if key not in ("func_name", "class_name", "function"):
                assert section.own("tr", data_param=key), (name, key)
        if member_spec.name != "__init__":
            assert section.own("pre", class_="python")[0].text.startswith("import ")
    assert "far_client.total(" in tree.text


def test_api_info_in_another_layout_is_refused() -> None:
    with pytest.raises(ValueError, match="api_info"):
        page_from_api_info({"title": "x"}, topic="t", package="p")


def test_the_command_writes_the_page_and_asyncapi(tmp_path: Path) -> None:
    out = tmp_path / "site"
    result = CliRunner().invoke(cli, ["docs", str(CLIMATE), "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert "index.html" in result.output
    assert "kB" in result.output
    assert member_section(parse((out / "index.html").read_text()), "total")
    assert json.loads((out / "asyncapi.json").read_text())["asyncapi"] == "3.0.0"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "give a MODULE, or --remote TOPIC"),
        ([str(CLIMATE), "--remote", "climate"], "not both"),
        (["no_such_module_here"], "no_such_module_here"),
    ],
)
def test_the_command_refuses_bad_input(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["docs", *args, "--output", str(tmp_path / "o")])
    assert result.exit_code != 0
    assert message in result.output
    assert not (tmp_path / "o" / "index.html").exists()


def test_generated_package_ships_the_page(tmp_path: Path) -> None:
    package = generate(
        CLIMATE, tmp_path / "pkg", name="pages-climate", broker_url="pulsar://far:6650"
    )
    folder = package.root / package.package
    page = folder / "docs" / "index.html"
    tree = parse(page.read_text())
    assert member_section(tree, "TimeSeries.between")
    assert "pages_climate.TimeSeries(" in tree.text
    assert json.loads((folder / "docs" / "asyncapi.json").read_text())["servers"]["broker"] == {
        "host": "far:6650",
        "protocol": "pulsar",
    }
    readme = (package.root / "README.md").read_text()
    assert "(pages_climate/docs/index.html)" in readme
    assert "python -m pages_climate docs" in readme
    env_path = f"{package.root}:{ROOT}"
    run = [sys.executable, "-m", package.package]
    shown = subprocess.run(
        [*run, "docs", "--print"], capture_output=True, text=True, env={"PYTHONPATH": env_path},
        timeout=60,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert Path(shown.stdout.strip()) == page.resolve()
    wrong = subprocess.run(
        [*run, "page"], capture_output=True, text=True, env={"PYTHONPATH": env_path}, timeout=60
    )
    assert wrong.returncode == 2
    assert "usage: python -m pages_climate docs" in wrong.stderr


@pytest.mark.slow
def test_the_client_wheel_ships_the_page(tmp_path: Path) -> None:
    package = generate(CLIMATE, tmp_path / "src", name="pages-wheel", broker_url="memory://")
    built = subprocess.run(
        [
            sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
            "--no-index", "--quiet", "--wheel-dir", str(tmp_path / "dist"), str(package.root),
        ],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "dist").glob("pages_wheel-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        page = archive.read("pages_wheel/docs/index.html").decode()
    assert {"pages_wheel/__main__.py", "pages_wheel/docs/asyncapi.json"} <= names
    assert member_section(parse(page), "TimeSeries.between")


def test_the_remote_page_names_the_broker_without_credentials() -> None:
    info = api_info(build_models(inspect_module(CLIMATE)))
    page = remote_page(info, topic="climate", broker="pulsar+ssl://me:secret@far:6651/?x=1")
    footer = parse(render_page(page)).find("footer")[0].text
    assert "the backend on 'climate' at pulsar+ssl://far:6651/" in footer
    assert "secret" not in footer
