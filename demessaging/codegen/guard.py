"""The first lines of a generated package: stop with a clear ImportError without its runtime.

DASF's demessaging 0.x is another code base under the same distribution name; a package index
may install it in place of this one. The guard finds out what ``demessaging`` is before
importing it (DASF's imports its backend and broker libraries): it needs the subpackage
``client``, and a version of the major line the package was generated with.
"""

from __future__ import annotations

import json
import re

from .. import __version__
from ..errors import GeneratorError

__all__ = ["requirement", "runtime_guard"]

_GUARD = '''
import sys

if "demessaging.client" not in sys.modules:  # before the runtime's first import: is it there?

    def _demessaging_runtime() -> None:
        """Raise ImportError unless {requirement} is installed.

        DASF's demessaging 0.x has the same name, but another code base without
        demessaging.client; it is not imported.
        """
        import importlib.util
        import os
        import re

        def key(version: str) -> tuple[int, ...]:
            """The version as numbers in PEP 440's order (N.N.N, aN, bN, rcN, .postN, .devN)."""
            pattern = (
                r"v?(\\d+(?:\\.\\d+)*)(?:[-_.]?(a|b|rc)(\\d+))?"
                r"(?:[-_.]?post(\\d+))?(?:[-_.]?dev(\\d+))?"
            )
            m = re.match(pattern, version.strip().lower())
            if m is None:
                return (-1,)
            release = [int(n) for n in m[1].split(".")][:4]
            final = 3 if m[4] or not m[5] else -1  # N.devM comes before N's pre-releases
            pre = {{"a": 0, "b": 1, "rc": 2}}.get(m[2] or "", final)
            post = int(m[4]) if m[4] else -1
            dev = int(m[5]) if m[5] else 2**31
            return (*release, *[0] * (4 - len(release)), pre, int(m[3] or 0), post, dev)

        spec = importlib.util.find_spec("demessaging")
        if spec is None:
            found = "it is not installed"
        else:
            folders = list(spec.submodule_search_locations or [])
            where = folders[0] if folders else str(spec.origin)
            if not any(os.path.isdir(os.path.join(f, "client")) for f in folders):
                import importlib.metadata

                version = ""
                for dist in importlib.metadata.distributions(name="demessaging"):
                    place = os.path.realpath(str(dist.locate_file("demessaging")))
                    if place == os.path.realpath(where):
                        version = f" {{dist.version}}"
                found = f"the demessaging{{version}} in {{where}} is another (DASF's 0.x)"
            else:
                import demessaging

                version = str(getattr(demessaging, "__version__", "unknown"))
                if key({lowest}) <= key(version) < ({below},):
                    return
                found = f"demessaging {{version}} is installed ({{where}})"
        raise ImportError(
            f"{{__name__}} needs {requirement}, but {{found}}; "
            "install the client package with `pip install --find-links DIR/wheels DIR`, "
            "where DIR is the folder the package was generated into"
        )

    _demessaging_runtime()
    del _demessaging_runtime
'''


def requirement(version: str = __version__) -> str:
    """What a generated package requires of demessaging: ``version`` up to the next major one.

    ``demessaging>=1.0.0a1,<2`` for 1.0.0a1: the lower bound names a pre-release if the
    version is one, so pip accepts it; the upper bound keeps out a runtime whose major version
    may have changed what generated code calls. DASF's demessaging 0.x never satisfies it.
    """
    public = version.split("+", 1)[0]  # local labels are not allowed in ">="
    major = re.match(r"\d+", public)
    if major is None:
        raise GeneratorError(f"demessaging's version {version!r} does not start with a number")
    return f"demessaging>={public},<{int(major[0]) + 1}"


def runtime_guard(version: str = __version__) -> str:
    """The guard's source, for the top of a generated package's ``__init__.py``.

    It accepts the runtimes :func:`requirement` accepts.
    """
    needed = requirement(version)
    lowest, below = needed.removeprefix("demessaging>=").split(",<")
    return _GUARD.format(requirement=needed, lowest=json.dumps(lowest), below=below).strip()
