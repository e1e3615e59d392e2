"""The page inside a generated client package, and ``python -m <package> docs``."""

from __future__ import annotations

from pathlib import Path

from ..core.specs import ModuleSpec
from .command import Written, write_page
from .local import module_docs

__all__ = ["PAGE", "write_package_docs"]

#: Where the page lies in a generated package, relative to the package's folder.
PAGE = "docs/index.html"

_MAIN = '''"""``python -m {package} docs``: the API page of the backend this package calls."""

import sys
import webbrowser
from pathlib import Path

PAGE = Path(__file__).resolve().parent / {page!r}
USAGE = """usage: python -m {package} docs [--print]

  docs          open the API page of the backend in a browser, and print its path
  docs --print  only print its path"""


def main(argv: list[str]) -> int:
    if argv not in (["docs"], ["docs", "--print"]):
        print(USAGE, file=sys.stderr)
        return 2
    print(PAGE)
    if "--print" not in argv:
        webbrowser.open(PAGE.as_uri())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
'''


def write_package_docs(
    folder: Path, spec: ModuleSpec, *, topic: str, broker_url: str, package: str
) -> Written:
    """Write the page and AsyncAPI into a package's ``docs/``, and its ``__main__.py``."""
    page, info, items = module_docs(spec, topic=topic, package=package)
    written = write_page(folder / Path(PAGE).parent, page, info, broker_url, items)
    (folder / "__main__.py").write_text(_MAIN.format(package=package, page=PAGE), encoding="utf-8")
    return written
