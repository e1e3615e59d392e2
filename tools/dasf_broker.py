"""dasf-broker-django, the DASF community's broker: installed from PyPI, run on 127.0.0.1.

dasf-broker-django is a Django app that serves the part of Pulsar's WebSocket API that DASF
uses. It ships no Django project and no server, so :func:`start` writes a minimal project
into a folder (SQLite, Channels' in-memory layer, token authentication through Django REST
framework) and serves it with daphne, stopped by its PID.

The broker and its dependencies (Django among them) are installed once into a virtual
environment of their own in the cache directory (see :func:`.pulsar.cache_dir`), not into
the environment that runs demessaging: the package's pytest plugin needs pytest-django.

Permissions are dasf-broker-django's own, as installed: nobody may make topics by publishing
to them (``dasf_broker.add_brokertopic``), so each request topic is made beforehand, public
and open to anonymous users, as its ``dasf_topic --new --anonymous`` command does
(:meth:`DasfBroker.create_topic`). Reply topics it makes itself, for the requests that name
them.

From the command line::

    python -m tools.dasf_broker install   # prints the environment's folder
    python -m tools.dasf_broker run       # serves until Ctrl-C
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
import venv
from dataclasses import dataclass, field
from pathlib import Path

from demessaging._local import alive, free_port, locked, stop_process
from demessaging.errors import ConfigurationError, TransportError

from ._process import run_until_signal
from .pulsar import cache_dir

__all__ = ["REQUIREMENTS", "DasfBroker", "install", "start"]

log = logging.getLogger("tools")

#: What the broker's environment gets.
REQUIREMENTS = ("dasf-broker-django==0.0.1.dev1", "daphne>=4", "djangorestframework>=3.14")

_SETTINGS = """\
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "local-test-broker"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "daphne",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "rest_framework",
    "rest_framework.authtoken",
    "guardian",
    "channels",
    "dasf_broker",
]
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "db.sqlite3",
        "OPTIONS": {"timeout": 30},  # topics are made while it serves
    }
}
ASGI_APPLICATION = "site_broker.asgi.application"
ROOT_URLCONF = "site_broker.urls"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
"""

_ASGI = """\
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "site_broker.settings")

from django.core.asgi import get_asgi_application

http = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter
from dasf_broker.routing import websocket_urlpatterns
from dasf_broker.token_auth_middleware import TokenAuthMiddlewareStack

application = ProtocolTypeRouter(
    {"http": http, "websocket": TokenAuthMiddlewareStack(URLRouter(websocket_urlpatterns))}
)
"""


def _python(env: Path) -> Path:
    return env / "bin" / "python"


def install(cache: Path | None = None) -> Path:
    """Make the broker's virtual environment unless it exists; returns its folder."""
    env = (cache or cache_dir()) / "dasf-broker-env"
    cache_root = env.parent
    cache_root.mkdir(parents=True, exist_ok=True)
    with locked(cache_root / "dasf-broker-install.lock"):
        done = env / "installed"
        if done.exists() and done.read_text() == "\n".join(REQUIREMENTS):
            return env
        log.info("installing dasf-broker-django into %s", env)
        venv.EnvBuilder(with_pip=True, clear=True).create(env)
        pip = [str(_python(env)), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        result = subprocess.run([*pip, *REQUIREMENTS], capture_output=True, text=True)
        if result.returncode != 0:
            raise ConfigurationError(
                f"could not install dasf-broker-django: {result.stderr.strip()[-2000:]}"
            )
        done.write_text("\n".join(REQUIREMENTS))
    return env


@dataclass
class DasfBroker:
    """A running dasf-broker-django.

    Attributes
    ----------
    pid
        The process id of its daphne server.
    port
        Its port on 127.0.0.1.
    folder
        Its Django project, database, ``broker.log`` and ``pid`` (while it runs).
    """

    pid: int
    port: int
    folder: Path
    env: Path
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """Its WebSocket root, ``ws://127.0.0.1:<port>/ws``: the broker URL to use."""
        return f"ws://127.0.0.1:{self.port}/ws"

    def log(self) -> str:
        """What it has written to its log so far."""
        return (self.folder / "broker.log").read_text(errors="replace")

    def manage(self, *args: str, timeout: float = 120) -> str:
        """Run ``manage.py`` of its project; returns the output."""
        return _manage(self.env, self.folder, *args, timeout=timeout)

    def create_topic(self, *slugs: str) -> None:
        """Make topics that anybody may publish to and read, as an admin does.

        Each as ``manage.py dasf_topic SLUG --new --anonymous`` makes it (in one process).
        """
        calls = "".join(
            f"call_command('dasf_topic', {slug!r}, new=True, anonymous=True)\n" for slug in slugs
        )
        self.manage("shell", "-c", f"from django.core.management import call_command\n{calls}")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop it by its PID: SIGTERM, then SIGKILL after ``timeout`` seconds."""
        stop_process(self._process or self.pid, timeout, name="dasf-broker-django")
        (self.folder / "pid").unlink(missing_ok=True)

    def _alive(self) -> bool:
        return alive(self._process or self.pid)

    def __enter__(self) -> DasfBroker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _manage(env: Path, folder: Path, *args: str, timeout: float = 120) -> str:
    result = subprocess.run(
        [str(_python(env)), "manage.py", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ | {"DJANGO_SETTINGS_MODULE": "site_broker.settings"},
    )
    if result.returncode != 0:
        raise TransportError(
            f"manage.py {' '.join(args)} failed: {(result.stderr or result.stdout)[-2000:]}"
        )
    return result.stdout


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


def start(
    folder: Path,
    *,
    port: int | None = None,
    frame_size: int = 1024 * 1024,
    timeout: float = 60.0,
) -> DasfBroker:
    """Install (once) and start dasf-broker-django on 127.0.0.1.

    Parameters
    ----------
    folder
        Where its project, database and log go (made if missing).
    port
        Its port; a free one if None.
    frame_size
        The largest WebSocket message and frame it takes, in bytes.
    timeout
        Seconds to wait until it accepts connections.

    Raises
    ------
    ConfigurationError
        If it cannot be installed.
    TransportError
        If it does not start in time; the message quotes its log.
    """
    env = install()
    folder.mkdir(parents=True, exist_ok=True)
    project = folder / "site_broker"
    project.mkdir(exist_ok=True)
    (project / "__init__.py").write_text("")
    (project / "settings.py").write_text(_SETTINGS)
    (project / "asgi.py").write_text(_ASGI)
    (project / "urls.py").write_text("urlpatterns = []\n")
    (folder / "manage.py").write_text(
        "import sys\nfrom django.core.management import execute_from_command_line\n"
        "execute_from_command_line(sys.argv)\n"
    )
    _manage(env, folder, "migrate", "--no-input")
    port = port or free_port()
    command = [
        str(_python(env)),
        "-m",
        "daphne",
        "-b",
        "127.0.0.1",
        "-p",
        str(port),
        "--websocket-max-message-size",
        str(frame_size),
        "--websocket-max-frame-size",
        str(frame_size),
        "--application-close-timeout",
        "2",
        "site_broker.asgi:application",
    ]
    with open(folder / "broker.log", "ab") as out:
        process = subprocess.Popen(
            command,
            cwd=folder,
            env=os.environ | {"DJANGO_SETTINGS_MODULE": "site_broker.settings"},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    broker = DasfBroker(process.pid, port, folder, env, process)
    (folder / "pid").write_text(f"{process.pid}\n")
    deadline = time.monotonic() + timeout
    try:
        while not _listening(port):
            if process.poll() is not None or time.monotonic() > deadline:
                what = "timed out" if process.poll() is None else f"exit {process.returncode}"
                raise TransportError(
                    f"dasf-broker-django did not start ({what}); its log ends:\n"
                    f"{broker.log()[-3000:]}"
                )
            time.sleep(0.1)
    except BaseException:
        broker.stop()
        raise
    log.info("dasf-broker-django serves at %s (pid %d)", broker.url, broker.pid)
    return broker


def main(argv: list[str] | None = None) -> int:
    """``python -m tools.dasf_broker install|run``."""
    parser = argparse.ArgumentParser(prog="python -m tools.dasf_broker")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help="make the broker's environment; print its folder")
    run = commands.add_parser("run", help="run the broker until Ctrl-C")
    run.add_argument("--folder", type=Path, default=cache_dir() / "dasf-broker")
    run.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "install":
            print(install())
            return 0
        broker = start(args.folder, port=args.port)
    except (ConfigurationError, TransportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"dasf-broker-django at {broker.url}; Ctrl-C stops it")
    run_until_signal(broker._alive)
    broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
