"""The docs site builds with ``mkdocs build --strict``: pages, API reference, diagrams."""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

import demessaging
from demessaging import backend, client, codegen
from demessaging.client import Client, RemoteModule

from .test_docs import BLOCK, DOCS

ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT = 180  # seconds; it takes a few
#: a row of a rendered Parameters table: the name, and the type (HTML)
ROW = re.compile(r"<td>\s*<code>(\w+)</code>\s*</td>\s*<td>\s*<code>(.*?)</code>", re.S)


def hook(name: str) -> ModuleType:
    """A module of docs/hooks/, loaded as mkdocs loads it: from its file."""
    spec = importlib.util.spec_from_file_location(f"site_{name}", ROOT / "docs" / "hooks" / name)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    print(f"mkdocs build --strict: {time.monotonic() - started:.1f} s")
    return out


def page(site: Path, name: str) -> str:
    return (site / name / "index.html").read_text(encoding="utf-8")


def anchors(html: str) -> set[str]:
    return set(re.findall(r'id="(demessaging\.[\w.]+)"', html))


def test_the_api_reference_names_the_public_api(site: Path) -> None:
    on_page = anchors(page(site, "reference/client"))
    for method in ("call", "acall", "stream", "astream", "ping", "info", "api_info", "close"):
        assert f"demessaging.client.Client.{method}" in on_page
    for method in ("call", "acall", "stream", "astream"):
        assert f"demessaging.client.RemoteModule.{method}" in on_page
    reference = set().union(*(anchors(p.read_text()) for p in (site / "reference").rglob("*.html")))
    shown = {anchor.rsplit(".", 1)[-1] for anchor in reference}
    public = {*demessaging.__all__, *backend.__all__, *client.__all__, *codegen.__all__}
    missing = public - shown - {"__version__"}
    assert not missing, f"public names without a reference entry: {sorted(missing)}"
    assert "demessaging.config.Settings" in reference


def test_the_sync_face_is_documented_as_methods(site: Path) -> None:
    html = page(site, "reference/client")
    call = html[html.index('id="demessaging.client.Client.call"') :]
    call = call[: call.index('id="demessaging.client.Client.stream"')]
    assert "The blocking form of" in call
    assert "Send a request and return the backend" in call  # acall's summary
    assert "on_progress" in call  # acall's parameters
    # read as numpy docstrings: a table of parameters, not a heading "Parameters"
    assert rows(html, "demessaging.client.Client.call")["on_progress"].startswith("Callable")
    assert 'id="parameters' not in html
    assert ":meth:" not in html  # Sphinx roles became code spans


def rows(html: str, member: str) -> dict[str, str]:
    """The parameters of ``member`` on a rendered page: each name, and its type as shown."""
    start = html.index(f'id="{member}"')
    section = html[start : html.index('<div class="doc doc-object', start)]
    found = ROW.findall(section)
    return {name: re.sub(r"<[^>]+>", "", kind) for name, kind in found}


def test_parameters_described_together_each_show_their_own_type(site: Path) -> None:
    astream = rows(page(site, "reference/client"), "demessaging.client.Client.astream")
    assert astream["request"] == "Mapping[str, Any] | BaseModel"
    assert astream["returns"] == "TypeAdapter[Any] | None"  # not request's
    assert astream["member"] == "str"
    remote = rows(page(site, "reference/client"), "demessaging.client.RemoteModule")
    assert remote["timeout"] == "float | None"
    split = hook("griffe_sync.py").one_per_name
    text = "Sum.\n\nParameters\n----------\na, b : int\n    Terms.\n\n    More.\nc\n    C.\n"
    assert split(text) == (
        "Sum.\n\nParameters\n----------\na : int\n    Terms.\n\n    More.\n"
        "b : int\n    Terms.\n\n    More.\nc\n    C.\n"
    )
    others = "Returns\n-------\na, b\n    A pair.\n"  # not parameters: left as written
    assert split(others) == others


def test_the_sync_docstrings_are_those_help_shows() -> None:
    sync = hook("griffe_sync.py")
    for owner, name in (
        (Client, "call"),
        (Client, "stream"),
        (Client, "ping"),
        (RemoteModule, "call"),
    ):
        method = getattr(owner, f"a{name}")
        assert sync.sync_docstring(method.__doc__, method.__name__) == sync.for_site(
            inspect.getdoc(getattr(owner, name))
        )


def test_sphinx_roles_and_literal_markers_become_markdown() -> None:
    sync = hook("griffe_sync.py")
    text = "Raises :class:`~demessaging.errors.CallCancelled` (:func:`.portal.blocking`)::"
    assert sync.without_roles(text) == "Raises ``CallCancelled`` (``portal.blocking``):"
    assert sync.without_roles("A tree.\n\n::\n\n    A\n") == "A tree.\n\n\n    A\n"
    assert sync.without_roles(":meth:`title <a.b>` a::b") == "``title`` a::b"


def test_examples_in_docstrings_are_code(site: Path) -> None:
    html = page(site, "reference/settings")
    variable = html[html.index('id="demessaging.config.Settings.variable"') :]
    variable = variable[: variable.index('<div class="doc doc-object')]
    assert re.search(r"<code>.*&gt;&gt;&gt;.*Settings", variable, re.S), variable


def test_readme_is_the_home_page_with_links_that_work_on_the_site(site: Path) -> None:
    home = (site / "index.html").read_text(encoding="utf-8")
    assert "Remote procedure calls between research institutes" in home
    assert 'href="getting-started/"' in home
    assert 'href="changelog/"' in home
    assert "Unreleased" in page(site, "changelog")
    relinked = hook("pages.py").relinked
    url = "https://example.org/repo"
    assert relinked("[a](docs/data.md#arrays) [b](CHANGELOG.md) [c](.ci/run)", url) == (
        f"[a](data.md#arrays) [b](changelog.md) [c]({url}/blob/main/.ci/run)"
    )
    assert relinked("[x](https://a.org/docs/x.md) [y](#here) ![s](docs/s.png)", url) == (
        "[x](https://a.org/docs/x.md) [y](#here) ![s](s.png)"
    )


def test_the_diagrams_are_mermaid_fences(site: Path) -> None:
    assert page(site, "pieces-and-cancellation").count('<pre class="mermaid">') == 3
    assert page(site, "architecture").count('<pre class="mermaid">') == 1


def test_diagram_text_has_nothing_mermaid_reads_otherwise() -> None:
    """In a sequence diagram, ``;`` and ``#`` end a statement's text, and ``<name>`` is HTML."""
    blocks = [
        (md.name, block)
        for md in (ROOT / "docs").glob("*.md")
        for block in re.findall(
            r"^```mermaid\n(.*?)^```", md.read_text(encoding="utf-8"), re.S | re.M
        )
    ]
    assert len(blocks) >= 4
    for name, block in blocks:
        for line in block.splitlines():
            text = re.sub(r"<br/>|--?>>|--?x|--?\)", "", line)  # arrows and line breaks
            assert not re.search(r"[;#<>]", text), f"{name}: {line.strip()}"


def test_the_site_loads_nothing_from_elsewhere_to_show_its_pages(site: Path) -> None:
    external = re.compile(r'<(?:link[^>]*rel="stylesheet"|script)[^>]*(?:href|src)="(?:https?:)?//')
    for html in site.rglob("*.html"):
        text = html.read_text(encoding="utf-8")
        assert not external.search(text), html
        assert "fonts.googleapis" not in text, html


def test_runnable_blocks_are_only_on_pages_the_docs_test_runs() -> None:
    pages = set((ROOT / "docs").rglob("*.md")) - set(DOCS)
    assert pages  # the API reference
    for md in pages:
        assert not BLOCK.search(md.read_text(encoding="utf-8")), f"{md}: not run by test_docs"
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for md in (ROOT / "docs").rglob("*.md"):
        assert str(md.relative_to(ROOT / "docs")) in nav, f"{md} is not in the site's nav"
