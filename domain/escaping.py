"""Text from outside made inert where it is shown: one function per format, used everywhere.

Ticket lines, names, emails, warnings and notes come from people and systems we do not control.
Each output format has control characters of its own, and each is neutralised here, once:

- **Slack mrkdwn** (``mrkdwn``): ``&``, ``<`` and ``>`` become ``&amp;``, ``&lt;``, ``&gt;``,
  as Slack's formatting reference asks ("Escaping text"). Slack then shows them as written,
  so ``<!channel>`` notifies nobody and ``<http://evil|click here>`` is no link. Every block
  builder (domain/blocks.py) and the Slack connector's message text (connectors/slack.py) use it.
- **CSV** (``csv_cell``): a cell beginning with ``=``, ``+``, ``-``, ``@``, a tab or a carriage
  return is a formula to a spreadsheet (``=HYPERLINK(…)``, ``@SUM(…)``); it gets a leading ``'``
  (OWASP, "CSV Injection"), so it is shown as text. Numbers and booleans are left as they are.
  Every CSV Handover writes (``handover audit export --format csv``, the review report) goes
  through it.
- **HTML** (``html_text``): ``&``, ``<``, ``>``, ``"`` and ``'`` as entities (``html.escape``);
  the review report is the one HTML Handover writes.
- **Error messages** (``quoted``): a value our validators name in a refusal is quoted as a
  Python literal (control characters escaped) and cut to :data:`QUOTED_LIMIT` characters, with
  its length said: a hostile field may be megabytes, and a refusal echoes none of that.
"""

from __future__ import annotations

import html
from collections.abc import Iterable

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
QUOTED_LIMIT = 80


def mrkdwn(text: str) -> str:
    """``text`` shown as written in Slack mrkdwn: its three control characters escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def csv_cell(value: object) -> object:
    """A CSV cell that no spreadsheet runs: a text beginning with a formula prefix gets a
    leading ``'``; anything else (numbers, other text, None) is returned as it is."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_row(values: Iterable[object]) -> list[object]:
    """Each value of a CSV row through :func:`csv_cell`."""
    return [csv_cell(v) for v in values]


def html_text(text: str) -> str:
    """``text`` as HTML text or a quoted attribute value: ``& < > " '`` as entities."""
    return html.escape(text, quote=True)


def quoted(value: str, limit: int = QUOTED_LIMIT) -> str:
    """``value`` as an error message names it: its ``repr``, of its first ``limit`` characters
    only when it is longer (then followed by ``…`` and its length)."""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}… ({len(value)} characters)"
