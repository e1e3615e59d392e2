"""``demessaging docs --remote TOPIC``: the API page of a backend running elsewhere."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from demessaging.pages import page_from_module, render_page
from tests.unit.test_pages import Node, parse

from .conftest import ROOT, Backend

CLIMATE = ROOT / "examples" / "climate.py"


def docs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "demessaging", "docs", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def rows(tree: Node) -> dict[str, list[str]]:
    """Every member's section id -> the parameters its table lists."""
    return {
        s.attrs["id"]: [r.attrs["data-param"] for r in s.own("tr") if "data-param" in r.attrs]
        for s in tree.find("section", class_="member")
    }


def test_the_page_of_a_running_backend(
    broker_url: str, topic: str, backends: Callable[..., Backend], tmp_path: Path
) -> None:
    backends(CLIMATE, topic)
    out = tmp_path / "site"
    done = docs("--remote", topic, "--output", str(out), "--broker-url", broker_url)
    assert done.returncode == 0, done.stderr
    assert "index.html" in done.stdout
    remote = parse((out / "index.html").read_text(encoding="utf-8"))
    local = parse(render_page(page_from_module(CLIMATE)))
    assert rows(remote) == rows(local)  # every member and parameter, from api_info alone
    assert len(rows(remote)) >= 9
    types = {n.attrs["id"] for n in remote.find("section", class_="type")}
    assert types == {n.attrs["id"] for n in local.find("section", class_="type")}
    assert topic in remote.find("p", class_="meta")[0].text
    assert f"the backend on {topic!r}" in remote.find("footer")[0].text
    document = json.loads((out / "asyncapi.json").read_text(encoding="utf-8"))
    assert document["channels"]["requests"]["address"] == topic
    assert "FuncTotal" in document["components"]["schemas"]


def test_no_backend_on_the_topic(broker_url: str, topic: str, tmp_path: Path) -> None:
    out = tmp_path / "site"
    done = docs(
        "--remote", f"{topic}-nobody", "--output", str(out), "--broker-url", broker_url,
        "--timeout", "3",
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stderr.startswith("Error: ")
    assert "Traceback" not in done.stderr
    assert not (out / "index.html").exists()
