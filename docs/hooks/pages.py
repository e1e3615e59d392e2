"""mkdocs hooks: README.md is the site's home page and CHANGELOG.md its changelog page.

Both stay where they are in the repository; the hook adds them to the site as ``index.md`` and
``changelog.md``, with README's links into ``docs/`` made relative to the site and links to
other files of the repository pointing at the repository.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

#: Pages made from files of the repository's root: the file, and its name on the site.
PAGES = {"README.md": "index.md", "CHANGELOG.md": "changelog.md"}
LINK = re.compile(r"\]\((?!https?://|#)([^)\s]+)\)")


def relinked(text: str, repo_url: str) -> str:
    """``text`` of a file of the root, with its links made to work on the site."""

    def target(match: re.Match[str]) -> str:
        path = match[1]
        if path.startswith("docs/"):
            return f"]({path.removeprefix('docs/')})"
        if path in PAGES:
            return f"]({PAGES[path]})"
        return f"]({repo_url.rstrip('/')}/blob/main/{path})"

    return LINK.sub(target, text)


def on_files(files: Files, config: Any) -> Files:
    """Add the pages made from README.md and CHANGELOG.md."""
    root = Path(config.config_file_path).parent
    for source, name in PAGES.items():
        text = relinked((root / source).read_text(encoding="utf-8"), config.repo_url or "")
        files.append(File.generated(config, name, content=text))
    return files
