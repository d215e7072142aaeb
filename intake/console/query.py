"""The filters of the console's list pages (cases, audit), read from a GET's query string.

Whatever a person typed is checked here: a value that is not a date, a number or one of the
choices is named in a message shown on the page, and that filter alone is left out — the
page is still served, nothing else fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from urllib.parse import urlencode

from starlette.datastructures import QueryParams

PAGE_SIZE = 50
TEXT_LIMIT = 320  # an address is at most this long; so is anything worth searching for


@dataclass
class Filters:
    """The query string as read: each field's text (to fill the form again), and the problems."""

    params: QueryParams
    values: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def text(self, name: str) -> str:
        """A text filter, trimmed and cut to :data:`TEXT_LIMIT` ("" when absent)."""
        value = (self.params.get(name) or "").strip()[:TEXT_LIMIT]
        self.values[name] = value
        return value

    def choice(self, name: str, choices: list[str], label: str) -> str:
        """One of ``choices`` ("" when absent or not one of them: then said so)."""
        value = self.text(name)
        if value and value not in choices:
            self.problems.append(f"{label}: {value!r} is not one of {', '.join(choices) or 'none'}")
            self.values[name] = ""
            return ""
        return value

    def day(self, name: str, label: str, *, end: bool = False) -> datetime | None:
        """A date (``YYYY-MM-DD``, UTC) or an ISO 8601 time; ``end``: a date means the end of
        that day (so "to 2026-12-03" includes the 3rd)."""
        value = self.text(name)
        if not value:
            return None
        try:
            if len(value) == 10:
                d = date.fromisoformat(value)
                at = datetime(d.year, d.month, d.day, tzinfo=UTC)
                return at + timedelta(days=1) if end else at
            at = datetime.fromisoformat(value)
        except ValueError:
            self.problems.append(f"{label}: {value!r} is not a date (YYYY-MM-DD)")
            return None
        return at if at.tzinfo else at.replace(tzinfo=UTC)

    def number(self, name: str, label: str, *, least: int = 0) -> int | None:
        value = self.text(name)
        if not value:
            return None
        if not value.isdigit() or int(value) < least or len(value) > 18:
            self.problems.append(f"{label}: {value!r} is not a whole number of at least {least}")
            return None
        return int(value)

    def times_ok(self, since: datetime | None, until: datetime | None, label: str) -> bool:
        """False (and said so) when the range ``since`` … ``until`` (excluded) is empty."""
        if since is not None and until is not None and since >= until:
            self.problems.append(f"{label}: the start is after the end")
            return False
        return True

    def range_ok(self, low: int | None, high: int | None, label: str) -> bool:
        """False (and said so) when ``low`` is above ``high``."""
        if low is not None and high is not None and low > high:
            self.problems.append(f"{label}: the start is after the end")
            return False
        return True

    def page(self) -> int:
        return self.number("page", "Page", least=1) or 1

    def link(self, **change: object) -> str:
        """This query string with ``change`` applied (empty values left out)."""
        merged = {**self.values, **{k: str(v) for k, v in change.items()}}
        return urlencode({k: v for k, v in merged.items() if v})
