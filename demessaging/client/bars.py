"""Progress messages about running calls, and the bars (tqdm) that show them.

A call without an ``on_progress`` callback shows a bar once the backend sends its first
progress message, in terminals and in Jupyter notebooks (``progress = "auto"``), always
(``"on"``) or never (``"off"``). The bar follows the report's root step: its message, its
``done`` count (or, for DASF's reports, its finished sub-tasks) out of ``steps``, and the
sub-task running now; it closes when the report or the call ends.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

__all__ = ["Bar", "Progress", "wanted"]


@dataclasses.dataclass(frozen=True)
class Progress:
    """A progress message about a running call.

    Attributes
    ----------
    status
        ``running``, ``success`` or ``error``: where the reported step stands.
    payload
        What the backend sent: for DASF progress reports, the JSON of the whole report tree.
    """

    status: str
    payload: bytes

    @property
    def report(self) -> Any:
        """The payload decoded from JSON (a DASF report: ``step_message``, ``children``...)."""
        return json.loads(self.payload)


def wanted(setting: str) -> bool:
    """Whether to show bars under the ``progress`` setting, here and now."""
    if setting == "off":
        return False
    if setting == "on":
        return True
    return _in_notebook() or _terminal(sys.stderr)


def _terminal(stream: Any) -> bool:
    """Whether ``stream`` is a terminal; asked once a stream (a call each asked it before)."""
    if _ASKED[0] is not stream:
        _ASKED[:] = [stream, bool(getattr(stream, "isatty", lambda: False)())]
    return bool(_ASKED[1])


_ASKED: list[Any] = [None, False]


def _in_notebook() -> bool:
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    return type(shell).__name__ == "ZMQInteractiveShell"


class Bar:
    """The bar of one call; pass it as the call's ``on_progress`` and close it at the end."""

    def __init__(self, member: str) -> None:
        self.member = member
        self._bar: Any = None

    def __call__(self, progress: Progress) -> None:
        """Show a progress message: open the bar on the first, close it on the last."""
        try:
            report = progress.report
            steps, done, message = _root(report)
        except (ValueError, TypeError, AttributeError, KeyError):
            return  # not a report this bar understands
        if self._bar is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=steps or None, desc=self.member or None, leave=False)
        bar = self._bar
        if steps and bar.total != steps:
            bar.total = steps
        bar.n = done
        bar.set_postfix_str(message, refresh=False)
        bar.refresh()
        if report.get("status") in ("success", "error"):
            self.close()

    def close(self) -> None:
        """Close the bar, if it was shown."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _root(report: dict[str, Any]) -> tuple[int, int, str]:
    """(steps, done, what happens now) of a report tree."""
    steps = int(report.get("steps") or 0)
    children = report.get("children") or []
    done = report.get("done")
    if done is None:  # DASF's reports count finished sub-tasks
        done = sum(1 for child in children if child.get("status") == "success")
    message = str(report.get("step_message") or "")
    running = [child for child in children if child.get("status") == "running"]
    if running:
        now = str(running[-1].get("step_message") or "")
        message = f"{message}: {now}" if message and now else message or now
    return steps, int(done), message
