"""A partner's fresh machine: the generated package installs with the documented command alone.

The partner's environment is a new venv that has never seen this project: no editable
install, no ``PYTHONPATH``, its own pip. Third-party dependencies come from the package
index (PyPI, as in CI; pip's cache may serve them); demessaging comes from the wheel that
``generate`` writes next to the package. On PyPI, ``demessaging`` is DASF's 0.x: without the
wheel, pip must refuse rather than install it.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import demessaging

from .conftest import ROOT, Backend

pytestmark = pytest.mark.slow

CLIMATE = ROOT / "examples" / "climate.py"
#: What README.md, docs/getting-started.md, the generated README and `generate` tell partners.
DOCUMENTED = "pip install --find-links {dir}/wheels {dir}"
PIP_TIMEOUT = 900  # a cold cache downloads numpy, pydantic-core, pulsar-client, pulsar-lite

CALL = """
import sys
import numpy as np
import climate_client as climate
import demessaging

print(json.dumps({
    "version": demessaging.__version__,
    "files": [demessaging.__file__, climate.__file__],
    "path": sys.path,
    "total": climate.total(np.arange(10.0)),
    "median": climate.summarize(np.array([1.0, 3.0]), how=climate.Aggregation.MEDIAN).value,
}))
"""


def partner_env(venv: Path) -> dict[str, str]:
    """The environment of a shell on the partner's machine, with ``venv`` activated."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"} and not k.startswith("DEMESSAGING_")
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    env["VIRTUAL_ENV"] = str(venv)
    return env


def fresh_venv(where: Path) -> Path:
    """A new venv with pip and nothing of this project (made without ``PYTHONPATH``)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-m", "venv", str(where)], check=True, env=env, timeout=120)
    return where


def generate(folder: Path, *options: str) -> str:
    """Run ``demessaging generate`` as the backend's developer does; return the printed command."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "demessaging",
            "generate",
            str(CLIMATE),
            "-o",
            "climate-client",
            *options,
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    command = result.stdout.strip().splitlines()[-1].strip()
    assert command == DOCUMENTED.format(dir="./climate-client"), result.stdout
    readme = (folder / "climate-client" / "README.md").read_text()
    assert command in readme
    return command


@pytest.fixture(scope="session")
def partner_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fresh partner venv for the session: the first test installs everything into it."""
    return fresh_venv(tmp_path_factory.mktemp("partner") / "venv")


def test_partner_installs_the_client_with_the_documented_command_and_calls(
    broker_url: str,
    topic: str,
    backends: Callable[..., Backend],
    partner_venv: Path,
    tmp_path: Path,
) -> None:
    backend = backends(CLIMATE, topic)
    command = generate(tmp_path, "--broker-url", broker_url, "--topic", topic)
    env = partner_env(partner_venv)
    install = subprocess.run(
        shlex.split(command),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    check = subprocess.run(
        ["pip", "check"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0, check.stdout + check.stderr

    python = partner_venv / "bin" / "python"
    call = subprocess.run(
        [str(python), "-c", "import json\n" + CALL],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert call.returncode == 0, call.stderr + "\nbackend:\n" + backend.output()
    seen = json.loads(call.stdout)
    assert (seen["total"], seen["median"]) == (45.0, 2.0)
    assert seen["version"] == demessaging.__version__
    site = str(partner_venv / "lib")
    assert all(file.startswith(site) for file in seen["files"]), seen["files"]
    assert not [p for p in seen["path"] if p.startswith(str(ROOT))], seen["path"]

    # generated from this regular install, the runtime's wheel is the one it came from
    again = subprocess.run(
        ["demessaging", "generate", str(CLIMATE), "-o", "again", "--broker-url", broker_url],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    (shipped,) = (tmp_path / "climate-client" / "wheels").iterdir()
    assert (tmp_path / "again" / "wheels" / shipped.name).read_bytes() == shipped.read_bytes()


def test_without_the_wheels_pip_refuses_and_installs_no_dasf_demessaging(
    tmp_path: Path,
) -> None:
    generate(tmp_path, "--broker-url", "pulsar://broker.example.org:6650")
    venv = fresh_venv(tmp_path / "venv")
    env = partner_env(venv)
    install = subprocess.run(
        ["pip", "install", "./climate-client"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=PIP_TIMEOUT,
    )
    assert install.returncode != 0
    assert "No matching distribution found for demessaging" in install.stderr, install.stderr
    listed = subprocess.run(
        ["pip", "list", "--format", "json"], env=env, capture_output=True, text=True, check=True
    )
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "demessaging" not in names
    assert "climate-client" not in names
