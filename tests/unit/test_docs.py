"""Every example in README.md, docs/ and examples/ runs; the project's own checks pass."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import demessaging
from demessaging import embedded
from demessaging._local import stop_process

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(python|bash)\n(.*?)^```", re.S | re.M)
PRINT = re.compile(r"^(\s*)print\((.*)\)  # (.*)$")
EXPECT = """
def __expect(value, expected):
    text = str(value)
    if expected.endswith("..."):
        ok = text.startswith(expected[:-3].rstrip())
    else:
        ok = text == expected
    assert ok, f"printed {text!r}, but the docs say {expected!r}"
    print(text)
"""


def checked(code: str) -> str:
    """Turn ``print(x)  # shown`` lines into assertions that ``str(x)`` is what is shown."""
    lines = []
    for line in code.splitlines():
        match = PRINT.match(line)
        lines.append(f"{match[1]}__expect({match[2]}, {match[3]!r})" if match else line)
    return EXPECT + "\n".join(lines)


def run_blocks(doc: Path, folder: Path) -> int:
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "DEMESSAGING_DATA_DIR": str(folder / "demessaging-data"),  # a broker of its own
    }
    env.pop("DEMESSAGING_BROKER_URL", None)
    blocks = BLOCK.findall(doc.read_text(encoding="utf-8"))
    for kind, code in blocks:
        command = (
            [sys.executable, "-c", checked(code)]
            if kind == "python"
            else ["bash", "-euo", "pipefail", "-c", code]
        )
        with subprocess.Popen(
            command,
            cwd=folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # what it starts in the background can be stopped with it
        ) as process:
            try:
                _, stderr = process.communicate(timeout=120)
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
        assert process.returncode == 0, f"{doc.name}: this {kind} block failed:\n{code}\n{stderr}"
    return len(blocks)


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_documentation_examples_run(doc: Path, tmp_path: Path) -> None:
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    try:
        assert run_blocks(doc, tmp_path) >= 2
    finally:  # a block that failed or timed out may leave its embedded broker running
        broker = embedded.find_running(tmp_path / "demessaging-data")
        if broker is not None:
            stop_process(broker.pid, 10)


def test_a_wrong_expectation_in_the_docs_fails(tmp_path: Path) -> None:
    doc = tmp_path / "wrong.md"
    doc.write_text("```python\nprint(1 + 1)  # 3\n```\n")
    with pytest.raises(AssertionError, match="printed '2', but the docs say '3'"):
        run_blocks(doc, tmp_path)


def test_quickstart_example_runs() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "total: 45.0" in result.stdout
    assert "weekly means: [ 3. 10. 17. 24.]" in result.stdout
    assert result.stderr == ""


def test_readme_and_ci_use_the_same_test_command() -> None:
    command = ".venv/bin/python -m pytest"
    assert command in (ROOT / "README.md").read_text()
    assert command in (ROOT / ".ci" / "run").read_text()


def test_public_api() -> None:
    assert set(demessaging.__all__) == {
        "APIChangedError",
        "Reporter",
        "ArraySpec",
        "AuthenticationError",
        "AuthorizationError",
        "CallError",
        "Client",
        "CallTimeoutError",
        "ConfigurationError",
        "configure",
        "DemessagingError",
        "DemessagingWarning",
        "GeneratorError",
        "InvalidArgumentsError",
        "ModuleLoadError",
        "generate",
        "main",
        "serve",
        "PayloadTooLargeError",
        "ProtocolError",
        "RemoteError",
        "SignatureError",
        "TransportError",
        "__version__",
    }
    for name in demessaging.__all__:
        assert getattr(demessaging, name) is not None
    from demessaging.backend import serve
    from demessaging.client import Client
    from demessaging.codegen import generate

    assert (demessaging.Client, demessaging.serve, demessaging.generate) == (
        Client,
        serve,
        generate,
    )
    assert issubclass(demessaging.CallTimeoutError, TimeoutError)
    assert issubclass(demessaging.SignatureError, demessaging.ModuleLoadError)
    assert all(
        issubclass(getattr(demessaging, name), demessaging.DemessagingError)
        for name in demessaging.__all__
        if name.endswith("Error")
    )


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["mypy"],
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_project_checks_pass(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
