"""docker/: the compose file wires the backend to Apache Pulsar, and the image builds and serves.

No Docker engine is needed: the compose file is read with PyYAML and the Dockerfile as text,
and what they refer to is checked against the repository and demessaging itself.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import pytest
import yaml

from demessaging.config import ENV_PREFIX, setting_names

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker" / "docker-compose.yml"
BROKER_PORT = 6650  # Apache Pulsar's binary protocol
ADMIN_PORT = 8080  # its web service: the admin REST API
BACKEND = "climate"


class Port(NamedTuple):
    """One entry of a service's ``ports``."""

    host_ip: str
    published: str
    target: int


def load_compose() -> dict[str, Any]:
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(compose, dict)
    return compose


@pytest.fixture
def compose() -> dict[str, Any]:
    return load_compose()


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose.get("services")
    assert isinstance(found, dict)
    assert found, "the compose file defines no services"
    return found


def pulsar_service(compose: dict[str, Any]) -> str:
    """The name of the one service running the apachepulsar/pulsar image."""
    names = [
        name
        for name, service in services(compose).items()
        if str(service.get("image", "")).startswith("apachepulsar/pulsar:")
    ]
    assert len(names) == 1, f"expected one apachepulsar/pulsar service, found {names}"
    return names[0]


def environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment, from either the mapping or the list syntax."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def command_words(command: str | list[str] | None) -> list[str]:
    if command is None:
        return []
    return shlex.split(command) if isinstance(command, str) else [str(w) for w in command]


def ports(service: dict[str, Any]) -> list[Port]:
    """A service's ``ports``, short syntax (``[HOST_IP:]PUBLISHED:TARGET``) or long syntax."""
    found = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            found.append(
                Port(
                    str(entry.get("host_ip", "")),
                    str(entry.get("published", "")),
                    int(entry["target"]),
                )
            )
            continue
        parts = str(entry).split("/", 1)[0].rsplit(":", 2)
        host_ip, published = ["", "", *parts[:-1]][-2:]
        found.append(Port(host_ip.strip("[]"), published, int(parts[-1])))
    return found


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, arguments), continuation lines joined."""
    result, pending = [], ""
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, arguments = (pending + line).strip().partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        pending = ""
    return result


def exec_form(arguments: str) -> list[str]:
    """The words of an instruction in exec (JSON) or shell form."""
    if arguments.startswith("["):
        words = json.loads(arguments)
        assert isinstance(words, list)
        return [str(w) for w in words]
    return shlex.split(arguments)


def build_paths(compose: dict[str, Any]) -> tuple[Path, Path]:
    """The backend's build context and Dockerfile, as the compose file resolves them."""
    build = services(compose)[BACKEND]["build"]
    if isinstance(build, str):
        build = {"context": build}
    context = (COMPOSE_FILE.parent / build.get("context", ".")).resolve()
    return context, (context / build.get("dockerfile", "Dockerfile")).resolve()


def copy_sources(dockerfile: Path) -> list[str]:
    """The sources of every COPY from the build context (not from other stages)."""
    sources = []
    for keyword, arguments in instructions(dockerfile):
        if keyword not in ("COPY", "ADD"):
            continue
        words = exec_form(arguments)
        if any(w.startswith("--from=") for w in words):
            continue
        paths = [w for w in words if not w.startswith("--")]
        assert len(paths) >= 2, f"{keyword} {arguments}: expected sources and a destination"
        sources += paths[:-1]
    return sources


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore ``patterns`` keep ``path`` (or a folder holding it) out."""
    candidates = [PurePosixPath(path), *PurePosixPath(path).parents]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if any(
            fnmatch.fnmatch(str(c), pattern) or fnmatch.fnmatch(str(c), pattern.replace("**/", ""))
            for c in candidates
            if str(c) != "."
        ):
            result = not negate
    return result


def test_the_broker_is_apache_pulsar_4_0_standalone(compose: dict[str, Any]) -> None:
    service = services(compose)[pulsar_service(compose)]
    assert re.fullmatch(r"apachepulsar/pulsar:4\.0\.\d+", service["image"])
    words = command_words(service.get("command"))
    assert "standalone" in words, f"the broker does not run standalone: {words}"


def test_the_broker_keeps_its_loopback_advertised_address(compose: dict[str, Any]) -> None:
    """A standalone broker advertising a loopback address lets every client keep its own URL.

    Then the backend's pulsar://pulsar:6650 and the host's pulsar://127.0.0.1:6650 both work;
    any other advertised address would be unreachable from one of them.
    """
    service = services(compose)[pulsar_service(compose)]
    words = command_words(service.get("command"))
    for flag in ("-a", "--advertised-address"):
        if flag in words:
            assert words[words.index(flag) + 1] in ("localhost", "127.0.0.1")
    assert not [key for key in environment(service) if "advertised" in key.lower()]


def test_the_backend_reaches_the_broker_by_its_service_name_and_container_port(
    compose: dict[str, Any],
) -> None:
    pulsar = pulsar_service(compose)
    url = urlsplit(environment(services(compose)[BACKEND])["DEMESSAGING_BROKER_URL"])
    assert url.scheme == "pulsar"
    assert url.hostname == pulsar, f"{url.hostname!r} is not the broker's service name"
    assert url.port == BROKER_PORT
    assert BROKER_PORT in [p.target for p in ports(services(compose)[pulsar])]


def test_the_backend_starts_once_the_broker_is_healthy(compose: dict[str, Any]) -> None:
    backend = services(compose)[BACKEND]
    depends_on = backend.get("depends_on")
    assert isinstance(depends_on, dict), "depends_on needs the long syntax to wait for health"
    assert depends_on[pulsar_service(compose)]["condition"] == "service_healthy"
    assert backend.get("restart") in ("unless-stopped", "always", "on-failure")


def test_the_healthcheck_asks_the_admin_api_for_the_default_namespace(
    compose: dict[str, Any],
) -> None:
    service = services(compose)[pulsar_service(compose)]
    check = service["healthcheck"]
    test = check["test"]
    words = (
        command_words(test[1:] if test[0] == "CMD" else test[1])
        if isinstance(test, list)
        else command_words(test)
    )
    assert words[0] == "curl"
    short_flags = "".join(w[1:] for w in words if w.startswith("-") and not w.startswith("--"))
    assert "f" in short_flags or "--fail" in words, "without -f curl succeeds on HTTP errors"
    url = urlsplit(next(w for w in words if "://" in w))
    assert url.hostname in ("localhost", "127.0.0.1")
    assert url.port == ADMIN_PORT
    assert url.path == "/admin/v2/namespaces/public/default"
    assert ADMIN_PORT in [p.target for p in ports(service)]
    assert int(check["retries"]) >= 10


def test_published_ports_bind_only_the_loopback_interface(compose: dict[str, Any]) -> None:
    published = [(name, p) for name, s in services(compose).items() for p in ports(s)]
    assert published
    for name, port in published:
        assert port.host_ip == "127.0.0.1", f"{name} publishes {port} on every interface"
        assert port.published == str(port.target), f"{name}: {port} moves the port"


def test_the_build_context_and_dockerfile_resolve_to_docker_dockerfile(
    compose: dict[str, Any],
) -> None:
    context, dockerfile = build_paths(compose)
    assert context == ROOT
    assert dockerfile == ROOT / "docker" / "Dockerfile"
    assert dockerfile.is_file()


def test_every_copy_source_exists_in_the_build_context(compose: dict[str, Any]) -> None:
    context, dockerfile = build_paths(compose)
    sources = copy_sources(dockerfile)
    ignore_file = context / ".dockerignore"
    patterns = [
        line.strip()
        for line in (ignore_file.read_text().splitlines() if ignore_file.exists() else [])
        if line.strip() and not line.startswith("#")
    ]
    for source in sources:
        assert (context / source).exists(), f"COPY {source}: not in the build context"
        assert not ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((context / "pyproject.toml").read_text())["project"]
    needed = {"pyproject.toml", project["readme"], *project.get("license-files", [])}
    assert needed <= set(sources), f"hatchling needs {sorted(needed - set(sources))} too"


def test_the_image_runs_as_a_non_root_user(compose: dict[str, Any]) -> None:
    _, dockerfile = build_paths(compose)
    users = [arguments for keyword, arguments in instructions(dockerfile) if keyword == "USER"]
    assert users, "the image runs as root"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_the_image_serves_a_module_demessaging_accepts(compose: dict[str, Any]) -> None:
    context, dockerfile = build_paths(compose)
    cmd = [arguments for keyword, arguments in instructions(dockerfile) if keyword == "CMD"]
    assert cmd, "the image has no CMD"
    assert cmd[-1].startswith("["), "CMD in shell form: the backend would not get SIGTERM"
    words = exec_form(cmd[-1])
    assert words[:2] == ["demessaging", "listen"]
    module = words[-1]
    assert (context / module).is_file(), f"{module} is not in the repository"
    result = subprocess.run(
        [sys.executable, "-m", "demessaging", "schema", module],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)


def test_every_demessaging_variable_is_a_real_setting(compose: dict[str, Any]) -> None:
    settings = set(setting_names())
    _, dockerfile = build_paths(compose)
    used = set(re.findall(rf"\b{ENV_PREFIX}\w+", dockerfile.read_text()))
    for service in services(compose).values():
        used |= {key for key in environment(service) if key.startswith(ENV_PREFIX)}
    assert "DEMESSAGING_BROKER_URL" in used
    unknown = sorted(key for key in used if key[len(ENV_PREFIX) :].lower() not in settings)
    assert not unknown, f"not settings of demessaging.config.Settings: {unknown}"


def test_the_backend_is_healthy_while_its_healthz_says_200(compose: dict[str, Any]) -> None:
    """The backend's healthcheck, run here against a metrics server on the port it names."""
    from demessaging.observe.metrics import Metrics, MetricsServer

    service = services(compose)[BACKEND]
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD", "exec form: the image has no shell to rely on"
    assert test[1] == "python", "python:*-slim has no curl"
    env = environment(service)
    assert int(env["DEMESSAGING_METRICS_PORT"]) > 0
    _, dockerfile = build_paths(compose)
    installs = [a for k, a in instructions(dockerfile) if k == "RUN" and "pip install" in a]
    assert any(".[metrics]" in line for line in installs), "the image lacks prometheus-client"

    class Health(Metrics):
        state = "starting"  # type: ignore[assignment]

    metrics = Health()
    server = MetricsServer(metrics, "127.0.0.1", 0)
    check = [sys.executable, *test[2:]]
    here = {"DEMESSAGING_METRICS_PORT": str(server.port), "PATH": "/usr/bin:/bin"}
    try:
        starting = subprocess.run(check, env=here, capture_output=True, timeout=30)
        assert starting.returncode == 1, starting.stderr
        assert b"503" in starting.stderr
        Health.state = "serving"  # type: ignore[assignment]
        serving = subprocess.run(check, env=here, capture_output=True, timeout=30)
        assert serving.returncode == 0, serving.stderr
    finally:
        server.close()
    gone = subprocess.run(check, env=here, capture_output=True, timeout=30)
    assert gone.returncode == 1  # nothing listening: unhealthy too
