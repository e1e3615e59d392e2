"""A module file imports the modules next to it, from any working directory, as a script does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from demessaging.backend import serve
from demessaging.core import build_models, inspect_module
from demessaging.core.loader import load_module
from demessaging.errors import ModuleLoadError
from tests.helpers import generated_client

from .conftest import unique_name

ROOT = Path(__file__).resolve().parents[2]


def write_pair(folder: Path) -> tuple[Path, str]:
    """A backend module and the helper module it imports, side by side in ``folder``."""
    helper = unique_name("helper")
    lazy = unique_name("lazy")
    folder.mkdir()
    (folder / f"{helper}.py").write_text(
        textwrap.dedent(
            """
            from dataclasses import dataclass


            @dataclass
            class Reading:
                station: str
                value: float


            def double(x: float) -> float:
                return 2 * x
            """
        ),
        encoding="utf-8",
    )
    (folder / f"{lazy}.py").write_text("OFFSET = 0.5\n", encoding="utf-8")
    backend = folder / f"{unique_name('backend')}.py"
    backend.write_text(
        textwrap.dedent(
            f"""
            from {helper} import Reading, double


            def scaled(reading: Reading) -> Reading:
                from {lazy} import OFFSET  # imported when called, not when loaded

                return Reading(reading.station, double(reading.value) + OFFSET)
            """
        ),
        encoding="utf-8",
    )
    return backend, helper


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory that is not the module's folder (conftest restores sys.path)."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return cwd


def test_the_loader_puts_the_module_folder_first_on_sys_path(
    tmp_path: Path, elsewhere: Path
) -> None:
    backend, helper = write_pair(tmp_path / "backend")
    assert str(backend.parent) not in sys.path
    module = load_module(backend)
    assert sys.path[0] == str(backend.parent)
    assert sys.modules[helper].__file__ == str(backend.parent / f"{helper}.py")
    reading = module.scaled(module.Reading("potsdam", 2.0))
    assert (reading.station, reading.value) == ("potsdam", 4.5)
    assert build_models(inspect_module(module)).functions.keys() == {"scaled"}


def test_a_failed_load_takes_its_folder_off_sys_path(tmp_path: Path, elsewhere: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    path = folder / f"{unique_name('broken')}.py"
    path.write_text(f"import {unique_name('nowhere')}\n", encoding="utf-8")
    with pytest.raises(ModuleLoadError, match="ModuleNotFoundError"):
        load_module(path)
    assert str(folder) not in sys.path


def test_schema_on_the_command_line_from_another_directory(tmp_path: Path, elsewhere: Path) -> None:
    backend, _ = write_pair(tmp_path / "backend")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "demessaging", "schema", str(backend)],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Reading" in json.loads(result.stdout)["$defs"]


def test_a_generated_client_of_it_calls_the_backend(tmp_path: Path, elsewhere: Path) -> None:
    backend, _ = write_pair(tmp_path / "backend")
    url = f"memory://{backend.stem}"
    with (
        generated_client(
            backend, tmp_path / "client", name=f"{backend.stem}-client", broker_url=url
        ) as client,
        serve(backend, broker_url=url, topic=backend.stem),
    ):
        assert "class Reading" in Path(client.__file__ or "").read_text()  # reproduced
        reading = client.scaled(client.Reading(station="potsdam", value=1.0))
        assert isinstance(reading, client.Reading)
        assert reading.value == 2.5
