"""Progress of long work, for whoever watches in this process (the terminal's progress bar).

Prefect gets its own progress artifact from the flow; this hook lets the CLI draw a bar without
the flow knowing about terminals.
"""

from __future__ import annotations

from collections.abc import Callable

Reporter = Callable[[int, int, str], None]
_reporter: Reporter | None = None


def set_reporter(fn: Reporter | None) -> None:
    global _reporter
    _reporter = fn


def report(done: int, total: int, what: str) -> None:
    if _reporter is not None:
        _reporter(done, total, what)
