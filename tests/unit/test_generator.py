"""The client generator: the mirror module equals the original, and it calls the backend."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import importlib
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import demessaging
from demessaging.backend import serve
from demessaging.client import RemoteModule
from demessaging.codegen import generate
from demessaging.codegen.generator import partner_command, requirement
from demessaging.errors import GeneratorError, InvalidArgumentsError, RemoteError
from tests.helpers import generated_client

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
CLIMATE = ROOT / "examples" / "climate.py"
KITCHEN = DATA / "kitchen_sink.py"
sys.path.insert(0, str(DATA))
from compare_mirror import compare  # noqa: E402

from demessaging.core.loader import load_module  # noqa: E402


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[Callable[..., tuple[ModuleType, str]]]:
    """Generate a client with a unique name and broker, and import it."""
    with contextlib.ExitStack() as imported:

        def make(original: Path, **options: object) -> tuple[ModuleType, str]:
            tag = uuid.uuid4().hex[:8]
            broker_url = f"memory://{tag}"
            module = imported.enter_context(
                generated_client(
                    original,
                    tmp_path / tag,
                    name=f"{original.stem}-{tag}",
                    broker_url=broker_url,
                    **options,
                )
            )
            return module, broker_url

        yield make


@pytest.mark.parametrize("original", [CLIMATE, KITCHEN], ids=["climate", "kitchen_sink"])
def test_mirror_has_the_signatures_docstrings_and_types_of_the_original(
    mirror: Callable[..., tuple[ModuleType, str]], original: Path
) -> None:
    module, _ = mirror(original)
    problems, checked = compare(load_module(original), module)
    assert problems == []
    assert checked >= 12
    aio = importlib.import_module(f"{module.__name__}.aio")
    problems, checked = compare(load_module(original), aio, coroutines=True)
    assert problems == []
    assert checked >= 12


def test_generated_client_calls_the_backend(mirror: Callable[..., tuple[ModuleType, str]]) -> None:
    ks, broker_url = mirror(KITCHEN)
    with serve(KITCHEN, broker_url=broker_url, topic="kitchen_sink"):
        assert ks.scale(np.array([1.0, 2.0]), 3.0, offset=1.0).tolist() == [4.0, 7.0]
        assert ks.scale(np.array([1.0, 5.0]), clip=(0.0, 4.0)).tolist() == [2.0, 4.0]
        station = ks.Station(code="ABC", colour=ks.Colour.GREEN)
        summary = ks.describe(station, level=ks.Level.HIGH, grid=np.zeros((3, 2), dtype=np.int32))
        assert summary == {"code": "ABC", "when": "2024-01-01", "level": 2, "rows": 3}
        assert asyncio.run(ks.wait_and_add(2, 3)) == 5
        window = ks.Window(datetime.datetime(2024, 1, 1), datetime.datetime(2024, 1, 2, 6))
        assert ks.window_length(window) == datetime.timedelta(hours=30)
        assert ks.root(16.0) == 4.0
        assert ks.Counter(start=5, step=2).after(3) == 11
        assert ks.Counter.double(4) == 8
        assert ks.Counter.name() == "Counter"
        assert ks.Derived().hello("you") == "hello you"
        assert ks.Derived().bye() == "bye"
        with pytest.raises(RemoteError, match="math domain error"):
            ks.root(-1.0)
        assert list(ks.countdown(5, step=2)) == [5, 3, 1]


def test_declared_errors_are_raised_as_their_mirrors(
    mirror: Callable[..., tuple[ModuleType, str]],
) -> None:
    ks, broker_url = mirror(KITCHEN)
    assert issubclass(ks.BurntError, ks.KitchenError)
    assert issubclass(ks.BurntError, ValueError)
    assert ks.BurntError.__doc__ == "Cooked for too long."
    assert not hasattr(ks, "_CharredError")
    with serve(KITCHEN, broker_url=broker_url, topic="kitchen_sink"):
        assert ks.cook(5) == "done"
        with pytest.raises(ks.BurntError, match=r"^12 minutes is too long$") as burnt:
            ks.cook(12)
        assert isinstance(burnt.value.__cause__, RemoteError)
        assert burnt.value.__cause__.remote_type == "kitchen_sink.BurntError"
        with pytest.raises(ks.BurntError, match="charred") as charred:  # its declared base
            ks.cook(30)
        assert charred.value.__cause__.remote_type == "kitchen_sink._CharredError"
        with pytest.raises(RemoteError, match="KeyError: 'nothing to cook'") as undeclared:
            ks.cook(0)
        assert undeclared.value.declared is None
        with pytest.raises(ks.BurntError):
            asyncio.run(_remote_acall(ks, "cook", {"minutes": 15}))


async def _remote_acall(module: ModuleType, member: str, arguments: dict[str, object]) -> object:
    return await module._remote.acall(member, arguments)


def test_results_come_back_as_the_mirrored_types(
    mirror: Callable[..., tuple[ModuleType, str]],
) -> None:
    climate, broker_url = mirror(CLIMATE)
    with serve(CLIMATE, broker_url=broker_url, topic="climate"):
        stats = climate.summarize(np.array([1.0, 4.0]), how=climate.Aggregation.MAX)
        assert isinstance(stats, climate.Statistics)
        assert stats == climate.Statistics(value=4.0, count=2, aggregation=climate.Aggregation.MAX)
        series = climate.TimeSeries(np.arange(6.0), datetime.date(2024, 1, 1))
        resampled = series.resample(2)
        assert isinstance(resampled, np.ndarray)
        assert resampled.tolist() == [0.5, 2.5, 4.5]


def test_arguments_are_validated_before_anything_is_sent(
    mirror: Callable[..., tuple[ModuleType, str]],
) -> None:
    ks, _ = mirror(KITCHEN, timeout=30)  # no backend: a call that were sent would hang 30 s
    start = time.monotonic()
    with pytest.raises(InvalidArgumentsError, match=r"describe\(\).*station"):
        ks.describe({"code": "lowercase"})
    with pytest.raises(InvalidArgumentsError, match=r"scale\(\).*offset"):
        ks.scale(np.ones(2), 2.0, offset=-1.0)
    with pytest.raises(InvalidArgumentsError, match=r"Counter\(\).*start"):
        ks.Counter(start="many")
    with pytest.raises(TypeError):
        ks.scale(values=np.ones(2))  # positional-only, as in the original
    assert time.monotonic() - start < 5


def test_generated_package_passes_ruff_and_mypy(tmp_path: Path) -> None:
    package = generate(KITCHEN, tmp_path / "pkg", name="ks-lint", broker_url="pulsar://far:6650")
    assert (package.root / package.package / "aio.py").is_file()
    ruff = subprocess.run(
        [sys.executable, "-m", "ruff", "check", str(package.root)], capture_output=True, text=True
    )
    assert ruff.returncode == 0, ruff.stdout + ruff.stderr
    mypy = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", package.package],
        capture_output=True,
        text=True,
        cwd=package.root,
    )
    assert mypy.returncode == 0, mypy.stdout + mypy.stderr
    assert "in 3 source files" in mypy.stdout  # __init__.py, aio.py and __main__.py


@pytest.mark.filterwarnings("ignore:climate-client connects to embedded")
def test_package_layout_and_dependencies(tmp_path: Path) -> None:
    package = generate(CLIMATE, tmp_path / "out", topic="climate-v1")
    assert package.distribution == "climate-client"
    assert package.package == "climate_client"
    assert sorted(p.name for p in package.root.iterdir()) == [
        "README.md",
        "climate_client",
        "pyproject.toml",
        "wheels",
    ]
    assert [p.name for p in (package.root / "wheels").iterdir()] == [package.wheel.name]
    assert package.wheel.name == f"demessaging-{demessaging.__version__}-py3-none-any.whl"
    assert sorted(p.name for p in (package.root / "climate_client").iterdir()) == [
        "__init__.py",
        "__main__.py",
        "aio.py",
        "docs",
        "py.typed",
    ]
    pyproject = (package.root / "pyproject.toml").read_text()
    assert 'name = "climate-client"' in pyproject
    assert package.dependencies == (requirement(), "numpy")
    assert f'"{requirement()}",' in pyproject
    source = (package.root / "climate_client" / "__init__.py").read_text()
    assert 'topic="climate-v1"' in source
    assert "import numpy as np" not in source  # aliases are resolved, not copied
    assert 'env_prefix="CLIMATE_CLIENT_"' in source


def test_existing_output_is_not_overwritten_without_force(tmp_path: Path) -> None:
    generate(CLIMATE, tmp_path, broker_url="memory://")
    with pytest.raises(GeneratorError, match="not empty"):
        generate(CLIMATE, tmp_path, broker_url="memory://")
    assert (
        generate(CLIMATE, tmp_path, broker_url="memory://", force=True).package == "climate_client"
    )


def test_force_replaces_the_runtime_wheel(tmp_path: Path) -> None:
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "demessaging-0.9.0-py3-none-any.whl").write_bytes(b"old")
    (tmp_path / "wheels" / "numpy-2.0-cp311-none-any.whl").write_bytes(b"someone's")
    package = generate(CLIMATE, tmp_path, broker_url="memory://", force=True)
    assert sorted(p.name for p in (tmp_path / "wheels").iterdir()) == [
        package.wheel.name,
        "numpy-2.0-cp311-none-any.whl",
    ]


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("1.0.0a1", "demessaging>=1.0.0a1,<2"),
        ("1.4.2", "demessaging>=1.4.2,<2"),
        ("2.1.0.dev3+g1234", "demessaging>=2.1.0.dev3,<3"),
    ],
)
def test_clients_require_the_major_version_they_were_generated_with(
    version: str, expected: str
) -> None:
    assert requirement(version) == expected


def test_the_requirement_admits_this_runtime_and_never_dasf_0x() -> None:
    from packaging.specifiers import SpecifierSet

    specifier = SpecifierSet(requirement("1.0.0a1").removeprefix("demessaging"))
    assert "1.0.0a1" in specifier  # a pre-release bound admits pre-releases
    assert "1.0.0" in specifier
    assert "1.9.1" in specifier
    assert "0.6.4" not in specifier  # DASF's demessaging on PyPI
    assert "1.0.0.dev1" not in specifier
    assert "2.0.0" not in specifier
    assert "2.0.0a1" not in specifier
    assert demessaging.__version__ in SpecifierSet(requirement().removeprefix("demessaging"))
    with pytest.raises(GeneratorError, match="does not start with a number"):
        requirement("dev")


@pytest.mark.parametrize(
    ("where", "command"),
    [
        ("climate-client", "pip install --find-links ./climate-client/wheels ./climate-client"),
        ("./out/c", "pip install --find-links ./out/c/wheels ./out/c"),
        ("../c/", "pip install --find-links ../c/wheels ../c"),
        ("/srv/c", "pip install --find-links /srv/c/wheels /srv/c"),
        (Path("out/c"), "pip install --find-links ./out/c/wheels ./out/c"),
    ],
)
def test_partner_command(where: str | Path, command: str) -> None:
    assert partner_command(where) == command


def test_generated_readme_gives_the_partner_command(tmp_path: Path) -> None:
    package = generate(CLIMATE, tmp_path / "deep" / "climate-client", broker_url="memory://")
    readme = (package.root / "README.md").read_text()
    assert "\npip install --find-links ./climate-client/wheels ./climate-client\n" in readme


def test_defaults_without_source_form_are_refused_by_name(
    write_backend: Callable[[str], Path], tmp_path: Path
) -> None:
    path = write_backend(
        "from typing import Any\n"
        "class Opaque:\n    pass\n"
        "SENTINEL = Opaque()\n"
        "def f(x: Any = SENTINEL) -> int:\n    return 1\n"
    )
    with pytest.raises(GeneratorError, match=r"default of f\(x\)"):
        generate(path, tmp_path / "out")


def test_environment_overrides_generated_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMESSAGING_TIMEOUT", "7")
    monkeypatch.setenv("MY_CLIENT_TOPIC", "elsewhere")
    monkeypatch.setenv("DEMESSAGING_TOPIC", "ignored-because-the-package-prefix-wins")
    remote = RemoteModule(
        "unused", topic="generated", broker_url="memory://x", env_prefix="MY_CLIENT_"
    )
    assert remote.settings.topic == "elsewhere"
    assert remote.settings.timeout == 7.0
    assert remote.settings.broker_url == "memory://x"
    monkeypatch.delenv("MY_CLIENT_TOPIC")
    monkeypatch.delenv("DEMESSAGING_TOPIC")
    assert (
        RemoteModule("unused", topic="generated", env_prefix="MY_CLIENT_").settings.topic
        == "generated"
    )


@pytest.mark.slow
def test_installed_into_a_fresh_virtual_environment(tmp_path: Path) -> None:
    """pip-install the package into a throw-away venv; compare and call from there."""
    package = generate(KITCHEN, tmp_path / "src", name="ks-installed", broker_url="memory://")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # demessaging and its dependencies come from this environment; the client is installed
    here = [p for p in sys.path if p.endswith("site-packages")] + [str(ROOT)]
    Path(site, "outer.pth").write_text("\n".join(here) + "\n")
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            str(package.root),
        ],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    assert not (Path(site) / package.package).is_symlink()
    aio = f"{package.package}.aio"
    report = subprocess.run(
        [str(python), str(DATA / "compare_mirror.py"), str(KITCHEN), package.package, aio],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert report.returncode == 0, report.stderr
    import json

    result = json.loads(report.stdout)
    for module in (package.package, aio):
        assert result[module]["problems"] == []
        assert result[module]["checked"] >= 15
        assert result[module]["file"].startswith(site)
    call = subprocess.run(
        [
            str(python),
            "-c",
            "import asyncio; from demessaging.backend import serve; import ks_installed as ks\n"
            "from ks_installed import aio\n"
            f"with serve({str(KITCHEN)!r}, broker_url='memory://', topic='kitchen_sink'):\n"
            "    print(ks.Counter(start=1).after(2), ks.root(9.0))\n"
            "    print(asyncio.run(aio.Counter(start=1).after(3)), asyncio.run(aio.root(4.0)))\n"
            "ks._remote.close()",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert call.returncode == 0, call.stderr
    assert call.stdout.split() == ["3", "3.0", "4", "2.0"]
    shutil.rmtree(venv)


def test_a_declared_error_with_its_own_init_keeps_its_message(
    mirror: Callable[..., tuple[ModuleType, str]], tmp_path: Path
) -> None:
    source = tmp_path / f"ranges_{uuid.uuid4().hex[:8]}.py"
    source.write_text(
        "class OutOfRangeError(ValueError):\n"
        "    def __init__(self, value: int) -> None:\n"
        "        super().__init__(f'{value} is out of range')\n\n\n"
        "def check(value: int) -> int:\n"
        "    raise OutOfRangeError(value)\n"
    )
    ranges, broker_url = mirror(source)
    with (
        serve(source, broker_url=broker_url, topic=source.stem),
        pytest.raises(ranges.OutOfRangeError) as error,
    ):
        ranges.check(5)
    assert str(error.value) == "5 is out of range"
