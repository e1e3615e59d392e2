"""Apache Pulsar standalone: fetched from Maven Central, started on 127.0.0.1, stopped by PID.

The official binary distribution, ``org.apache.pulsar:pulsar-server-distribution:<version>``
(``tar.gz``, classifier ``bin``), is fetched once with Maven (which keeps it in ``~/.m2``) and
unpacked into a cache directory: ``$DEMESSAGING_CACHE_DIR``, else ``$XDG_CACHE_HOME/demessaging``,
else ``~/.cache/demessaging``. It needs Java 17 and Maven 3.

A broker is ``bin/pulsar standalone --no-functions-worker --no-stream-storage`` with its data,
configuration and logs in a folder of its own, and

- its binary protocol, its web service (admin REST API, WebSocket API) and its bookie bound to
  127.0.0.1, on free ports unless given;
- a 512 MiB heap and as much direct memory (the defaults, 2 GiB and 4 GiB, are too much for a
  small machine; the bookie fails below 512 MiB);
- optionally, token authentication (:mod:`demessaging.tokens`), TLS on two more ports (its
  binary protocol, ``pulsar+ssl://``, and its web service, ``https://`` and ``wss://``; the
  plain ports stay, for the broker's own clients), client certificates as a second way to
  authenticate, and authorization (only the superuser role ``admin`` may do anything until
  roles are granted permissions).

It is ready when its admin REST API lists the namespace ``public/default``.

From the command line::

    python -m tools.pulsar install    # fetch and unpack; prints its folder
    python -m tools.pulsar run        # run a broker until Ctrl-C
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from demessaging._local import alive, free_port, locked, stop_process
from demessaging.errors import ConfigurationError, TransportError
from demessaging.tokens import create_token

from ._process import run_until_signal

__all__ = ["TLS", "VERSION", "PulsarStandalone", "cache_dir", "install", "start"]

log = logging.getLogger("tools")

#: The Pulsar version fetched by default: the 4.0 LTS line, which runs on Java 17.
VERSION = "4.0.8"
ARTIFACT = "org.apache.pulsar:pulsar-server-distribution:{version}:tar.gz:bin"
JVM_MEMORY = "-Xms512m -Xmx512m -XX:MaxDirectMemorySize=512m"
#: pulsar_env.sh's extra options, plus one that makes the bookie read ``listeningInterface``
#: from system properties: the standalone bookie otherwise listens on all interfaces.
JVM_EXTRA = (
    "-Dpulsar.allocator.exit_on_oom=true -Dio.netty.recycler.maxCapacityPerThread=4096 "
    "-Dorg.apache.bookkeeper.conf.readsystemproperties=true -DlisteningInterface=lo"
)
#: The role of the broker's own admin client when authentication is on.
ADMIN_ROLE = "admin"


def cache_dir() -> Path:
    """Where unpacked distributions are kept."""
    if os.environ.get("DEMESSAGING_CACHE_DIR"):
        return Path(os.environ["DEMESSAGING_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "demessaging"


def _tool(name: str, purpose: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise ConfigurationError(f"{purpose} needs `{name}` on PATH, which is not there")
    return found


def install(version: str = VERSION, cache: Path | None = None) -> Path:
    """The folder of the unpacked distribution, fetched and unpacked on first use.

    Parameters
    ----------
    version
        The Pulsar version.
    cache
        Where to unpack it; :func:`cache_dir` by default.

    Raises
    ------
    ConfigurationError
        If Maven is missing, or the distribution cannot be fetched (Maven's output is quoted).
    """
    cache = cache or cache_dir()
    home = cache / f"apache-pulsar-{version}"
    if (home / "bin" / "pulsar").exists():
        return home
    with locked(cache / "pulsar-install.lock"):
        if (home / "bin" / "pulsar").exists():
            return home
        mvn = _tool("mvn", "fetching Apache Pulsar")
        with tempfile.TemporaryDirectory(dir=cache, prefix=".fetch-") as tmp:
            started = time.monotonic()
            artifact = ARTIFACT.format(version=version)
            command = [mvn, "-B", "-q", "-C", "dependency:copy", f"-Dartifact={artifact}"]
            done = subprocess.run(
                [*command, f"-DoutputDirectory={tmp}"],
                capture_output=True,
                text=True,
                cwd=tmp,
                check=False,
            )
            tarballs = list(Path(tmp).glob("*.tar.gz"))
            if done.returncode != 0 or len(tarballs) != 1:
                raise ConfigurationError(
                    f"could not fetch {artifact} with Maven:\n{(done.stdout + done.stderr)[-3000:]}"
                )
            log.info(
                "fetched %s (%.0f MB) in %.1f s",
                artifact,
                tarballs[0].stat().st_size / 1e6,
                time.monotonic() - started,
            )
            unpacked = Path(tmp) / "unpacked"
            with tarfile.open(tarballs[0]) as archive:
                if hasattr(tarfile, "tar_filter"):  # Python >= 3.10.12
                    archive.extractall(unpacked, filter="tar")
                else:  # pragma: no cover
                    archive.extractall(unpacked)
            (unpacked / f"apache-pulsar-{version}").rename(home)
    return home


def _configure(template: Path, settings: Mapping[str, str]) -> str:
    """``template`` (a ``key=value`` file) with ``settings`` replacing or adding keys."""
    lines, seen = [], set()
    for line in template.read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        if key in settings and not line.lstrip().startswith("#"):
            line = f"{key}={settings[key]}"
            seen.add(key)
        lines.append(line)
    lines += [f"{key}={value}" for key, value in settings.items() if key not in seen]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class TLS:
    """The broker's TLS files, all PEM.

    Attributes
    ----------
    certificate
        Its server certificate (its subjectAltName should name the host clients use).
    key
        The certificate's private key, unencrypted PKCS#8 (``BEGIN PRIVATE KEY``).
    ca
        The CA bundle that client certificates are checked against.
    """

    certificate: Path
    key: Path
    ca: Path


@dataclass
class PulsarStandalone:
    """A running Apache Pulsar standalone broker.

    Attributes
    ----------
    pid
        The process id of its JVM.
    port, web_port
        Its binary-protocol port and its web-service port, on 127.0.0.1.
    folder
        Its data, configuration, ``pulsar.log`` and ``pid`` (while it runs).
    admin_token
        With token authentication, a token of the superuser role; else empty.
    tls_port, web_tls_port
        With TLS, its binary-protocol and web-service TLS ports; else 0.
    """

    pid: int
    port: int
    web_port: int
    folder: Path
    admin_token: str = field(default="", repr=False)
    tls_port: int = 0
    web_tls_port: int = 0
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def broker_url(self) -> str:
        """Its service URL, ``pulsar://127.0.0.1:<port>``."""
        return f"pulsar://127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        """Its web service (admin REST API), ``http://127.0.0.1:<web_port>``."""
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def tls_url(self) -> str:
        """Its TLS service URL, ``pulsar+ssl://127.0.0.1:<tls_port>`` (empty without TLS)."""
        return f"pulsar+ssl://127.0.0.1:{self.tls_port}" if self.tls_port else ""

    @property
    def admin_tls_url(self) -> str:
        """Its web service over TLS, ``https://127.0.0.1:<web_tls_port>`` (empty without TLS)."""
        return f"https://127.0.0.1:{self.web_tls_port}" if self.web_tls_port else ""

    @property
    def wss_url(self) -> str:
        """Its WebSocket API over TLS, ``wss://127.0.0.1:<web_tls_port>`` (empty without TLS)."""
        return f"wss://127.0.0.1:{self.web_tls_port}" if self.web_tls_port else ""

    def log(self) -> str:
        """What it has written to its log so far."""
        return (self.folder / "pulsar.log").read_text(errors="replace")

    def ready(self) -> bool:
        """Whether its admin REST API lists ``public/default``."""
        request = urllib.request.Request(f"{self.admin_url}/admin/v2/namespaces/public")
        if self.admin_token:
            request.add_header("Authorization", f"Bearer {self.admin_token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return "public/default" in json.load(response)
        except (OSError, ValueError):
            return False

    def stop(self, timeout: float = 60.0) -> None:
        """Stop it by its PID: SIGTERM, then SIGKILL after ``timeout`` seconds."""
        stop_process(self._process or self.pid, timeout, name="Apache Pulsar")
        (self.folder / "pid").unlink(missing_ok=True)
        log.info("stopped Apache Pulsar (pid %d)", self.pid)

    def _alive(self) -> bool:
        return alive(self._process or self.pid)

    def __enter__(self) -> PulsarStandalone:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(
    folder: Path,
    *,
    version: str = VERSION,
    port: int = 0,
    web_port: int = 0,
    token_secret: bytes | None = None,
    tls: TLS | None = None,
    client_certificates: bool = False,
    require_client_certificates: bool = False,
    authorization: bool = False,
    settings: Mapping[str, str] | None = None,
    timeout: float = 240.0,
) -> PulsarStandalone:
    """Start a standalone broker keeping its state in ``folder``; wait until it serves.

    Parameters
    ----------
    folder
        Its data, configuration and log; a broker started again on the same folder keeps its
        topics.
    version
        The Pulsar version, installed by :func:`install` if needed.
    port, web_port
        Its ports on 127.0.0.1; free ones if 0.
    token_secret
        Turn on token authentication with this HS256 key (see :mod:`demessaging.tokens`);
        clients then need a token signed with it.
    tls
        Also serve TLS, on two more free ports (``tls_url``, ``admin_tls_url``, ``wss_url``)
        with these files; the plain ports stay.
    client_certificates
        With ``tls`` and ``token_secret``: client certificates signed by ``tls.ca``
        authenticate too, as the role of their common name (``AuthenticationProviderTls``
        next to tokens). A certificate the CA did not sign is refused in the TLS handshake.
    require_client_certificates
        Refuse TLS connections without a trusted client certificate
        (``tlsRequireTrustedClientCertOnConnect``).
    authorization
        With ``token_secret``: turn authorization on; only the role ``admin`` may do anything
        until others are granted permissions.
    settings
        More ``standalone.conf`` settings.
    timeout
        Seconds to wait until it serves.

    Raises
    ------
    ConfigurationError
        If Java or Maven are missing, the distribution cannot be fetched, a TLS file is
        missing, or a switch lacks the one it needs.
    TransportError
        If the broker exits or does not serve in time (its log is quoted); it is stopped.
    """
    if (client_certificates or require_client_certificates) and tls is None:
        raise ConfigurationError("client certificates need tls=TLS(...)")
    if (client_certificates or authorization) and token_secret is None:
        raise ConfigurationError("client certificates and authorization need a token_secret")
    java = _tool("java", "Apache Pulsar")
    home = install(version)
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    port, web_port = port or free_port(), web_port or free_port()
    conf: dict[str, str] = {
        "bindAddress": "127.0.0.1",
        "advertisedAddress": "127.0.0.1",
        "brokerServicePort": str(port),
        "webServicePort": str(web_port),
    }
    admin_token = ""
    if token_secret is not None:
        key = folder / "token-secret.key"
        key.unlink(missing_ok=True)
        with os.fdopen(os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
            out.write(token_secret)
        admin_token = create_token(token_secret, ADMIN_ROLE)
        conf |= {
            "authenticationEnabled": "true",
            "authenticationProviders": (
                "org.apache.pulsar.broker.authentication.AuthenticationProviderToken"
            ),
            "tokenSecretKey": f"file://{key}",
            "superUserRoles": ADMIN_ROLE,
            "brokerClientAuthenticationPlugin": (
                "org.apache.pulsar.client.impl.auth.AuthenticationToken"
            ),
            "brokerClientAuthenticationParameters": json.dumps({"token": admin_token}),
        }
    tls_port = web_tls_port = 0
    if tls is not None:
        conf |= _tls_conf(tls, require_client_certificates)
        tls_port, web_tls_port = int(conf["brokerServicePortTls"]), int(conf["webServicePortTls"])
    if client_certificates:
        conf["authenticationProviders"] += ",org.apache.pulsar.broker.authentication." + (
            "AuthenticationProviderTls"
        )
    if authorization:
        conf["authorizationEnabled"] = "true"
    conf |= dict(settings or {})
    (folder / "standalone.conf").write_text(_configure(home / "conf" / "standalone.conf", conf))
    env = os.environ | {
        "JAVA_HOME": os.environ.get("JAVA_HOME") or str(Path(java).resolve().parents[1]),
        "PULSAR_MEM": JVM_MEMORY,
        "PULSAR_GC": "-XX:+UseG1GC",
        "PULSAR_EXTRA_OPTS": JVM_EXTRA,
        "PULSAR_LOG_DIR": str(folder / "logs"),
    }
    started = time.monotonic()
    with open(folder / "pulsar.log", "ab") as out:
        process = subprocess.Popen(
            [
                str(home / "bin" / "pulsar"),
                "standalone",
                "--no-functions-worker",
                "--no-stream-storage",
                "--config",
                str(folder / "standalone.conf"),
                "--bookkeeper-dir",
                str(folder / "bookkeeper"),
                "--metadata-dir",
                str(folder / "metadata"),
            ],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C meant for the caller does not stop it first
        )
    broker = PulsarStandalone(
        process.pid, port, web_port, folder, admin_token, tls_port, web_tls_port, process
    )
    (folder / "pid").write_text(f"{process.pid}\n")
    deadline = started + timeout
    try:
        while not broker.ready():
            if process.poll() is not None or time.monotonic() > deadline:
                what = "timed out" if process.poll() is None else f"exit {process.returncode}"
                raise TransportError(
                    f"Apache Pulsar did not start ({what}); its log ends:\n{broker.log()[-3000:]}"
                )
            time.sleep(0.25)
    except BaseException:  # Ctrl-C too: never leave the JVM behind
        broker.stop()
        raise
    log.info(
        "Apache Pulsar %s serves at %s (pid %d) after %.1f s",
        version,
        broker.broker_url,
        broker.pid,
        time.monotonic() - started,
    )
    return broker


def _tls_conf(tls: TLS, require_client_certificates: bool) -> dict[str, str]:
    """The ``standalone.conf`` settings of TLS on two free ports, with ``tls``'s files."""
    for what, path in (("certificate", tls.certificate), ("key", tls.key), ("CA", tls.ca)):
        if not Path(path).is_file():
            raise ConfigurationError(f"the broker's TLS {what} {path} does not exist")
    return {
        "brokerServicePortTls": str(free_port()),
        "webServicePortTls": str(free_port()),
        "tlsCertificateFilePath": str(Path(tls.certificate).resolve()),
        "tlsKeyFilePath": str(Path(tls.key).resolve()),
        "tlsTrustCertsFilePath": str(Path(tls.ca).resolve()),
        "tlsAllowInsecureConnection": "false",
        "tlsRequireTrustedClientCertOnConnect": str(require_client_certificates).lower(),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m tools.pulsar install|run``."""
    parser = argparse.ArgumentParser(prog="python -m tools.pulsar")
    parser.add_argument("--version", default=VERSION, help="Pulsar version (%(default)s)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help="fetch and unpack the distribution; print its folder")
    run = commands.add_parser("run", help="run a standalone broker until Ctrl-C")
    run.add_argument("--folder", type=Path, default=cache_dir() / "pulsar-standalone")
    run.add_argument("--port", type=int, default=6650)
    run.add_argument("--web-port", type=int, default=8080)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "install":
            print(install(args.version))
            return 0
        broker = start(args.folder, version=args.version, port=args.port, web_port=args.web_port)
    except (ConfigurationError, TransportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Apache Pulsar at {broker.broker_url}, admin API at {broker.admin_url}; Ctrl-C stops it")
    run_until_signal(broker._alive)
    broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
