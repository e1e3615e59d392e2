"""The API page in a real browser: headless Chromium loads it from a file, runs its script.

Debian's ``chromium`` (``.ci/run`` installs it). Without it the tests skip, except in CI
(``CI=true``), where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from demessaging.pages import write_docs
from tests.unit.test_pages import Node, parse

ROOT = Path(__file__).resolve().parents[2]
CLIMATE = ROOT / "examples" / "climate.py"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
MEMBERS = [
    "anomalies",
    "regional_mean",
    "summarize",
    "total",
    "TimeSeries",
    "TimeSeries.mean",
    "TimeSeries.between",
    "TimeSeries.resample",
    "TimeSeries.days_between",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("no chromium in CI: .ci/run installs Debian's chromium package")
    pytest.skip("no chromium on this machine (apt-get install chromium)")


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_docs(tmp_path_factory.mktemp("site"), str(CLIMATE)).page


def dump_dom(url: str, profile: Path) -> Node:
    done = subprocess.run(
        [chromium(), *FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "<main>" in done.stdout, done.stderr[-2000:]
    return parse(done.stdout)


def visible(tree: Node) -> dict[str, bool]:
    """Member id -> whether it and every section around it are shown."""
    shown: dict[str, bool] = {}

    def visit(node: Node, hidden: bool) -> None:
        hidden = hidden or "hidden" in node.attrs
        if node.matches("section", {"class_": "member"}):
            shown[node.attrs["id"]] = not hidden
        for child in node.children:
            if isinstance(child, Node):
                visit(child, hidden)

    visit(tree, False)
    return shown


def test_the_page_shows_every_member(page: Path, tmp_path: Path) -> None:
    tree = dump_dom(page.as_uri(), tmp_path / "profile")
    assert visible(tree) == dict.fromkeys(MEMBERS, True)
    links = {n.attrs["href"] for n in tree.find("nav")[0].find("a")}
    assert {f"#{m}" for m in MEMBERS} <= links
    assert tree.find(id="count")[0].text == ""


@pytest.mark.parametrize("search", ["#q=resample", "?q=RESAMPLE"])
def test_a_search_hides_the_other_members(page: Path, tmp_path: Path, search: str) -> None:
    tree = dump_dom(page.as_uri() + search, tmp_path / "profile")
    shown = visible(tree)
    assert shown == {m: m in ("TimeSeries", "TimeSeries.resample") for m in MEMBERS}
    assert tree.find(id="count")[0].text == "1 member matches"
    nav = {
        n.attrs["data-for"]: "hidden" not in n.attrs
        for n in tree.find("li")
        if "data-for" in n.attrs
    }
    assert nav["total"] is False
    assert nav["TimeSeries.resample"] is True


def test_a_search_matches_parameters_and_descriptions(page: Path, tmp_path: Path) -> None:
    shown = visible(dump_dom(page.as_uri() + "#q=region", tmp_path / "profile"))
    assert [m for m, on in shown.items() if on] == ["regional_mean"]
    shown = visible(dump_dom(page.as_uri() + "#q=nothing%20like%20this", tmp_path / "p2"))
    assert not any(shown.values())


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG, from its header."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_a_screenshot_of_the_page(page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    done = subprocess.run(
        [
            chromium(), *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars",
            "--window-size=1100,760", f"--screenshot={shot}", page.as_uri() + "#q=mean",
        ],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert png_size(shot.read_bytes()) == (1100, 760)


def test_the_docs_show_a_screenshot() -> None:
    """docs/api-page.png: made as test_a_screenshot_of_the_page makes it, shown by the README."""
    shot = ROOT / "docs" / "api-page.png"
    assert png_size(shot.read_bytes()) == (1100, 760)
    assert shot.stat().st_size < 150_000
    assert "(docs/api-page.png)" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert "(api-page.png)" in (ROOT / "docs" / "api-page.md").read_text(encoding="utf-8")


def test_without_chromium_the_tests_skip_except_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="no chromium in CI"):
        chromium()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no chromium on this machine"):
        chromium()
