"""The HR roster as a file: the :class:`~connectors.capabilities.Roster` capability for the
quarterly access review (``handover review --roster FILE``).

A CSV with a header row, or JSON (a list of objects, or ``{"rows": [...]}`` as the sandbox
exports it), with columns ``email``, ``name``, ``status`` (active / terminated / leave), and
optionally ``manager``, ``department``, ``end_date`` (ISO date or empty). Other columns are
ignored: HR exports carry many. Every row is validated as a :class:`domain.models.RosterEntry`;
all problems are collected and reported together, each naming its row (and, for CSV, its line)
and the field, so a person can fix the file in one pass. The file is read once, when the
connector is made, so a bad file fails before a review starts.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from domain.models import RosterEntry

COLUMNS = ("email", "name", "status", "manager", "department", "end_date")
REQUIRED = ("email", "name", "status")
_OPTIONAL_EMPTY_IS_NONE = ("manager", "end_date")


@dataclass(frozen=True)
class RowError:
    """One problem: the data row (1-based; ``None`` for the file as a whole), the CSV line,
    the field, and what is wrong."""

    row: int | None
    field: str | None
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}" + (f" (line {self.line})" if self.line else ""))
        if self.field:
            where.append(f"field '{self.field}'")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class RosterError(ValueError):
    """The roster cannot be used; ``errors`` holds every problem found."""

    def __init__(self, source: str, errors: Iterable[RowError]) -> None:
        self.source = source
        self.errors = list(errors)
        n = len(self.errors)
        lines = [f"roster {source}: {n} problem{'s' * (n != 1)}", *(f"- {e}" for e in self.errors)]
        super().__init__("\n".join(lines))


def _clean(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Only our columns, trimmed; empty optional values read as absent."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        col = str(key).strip().lower() if key is not None else ""
        if col not in COLUMNS:
            continue
        if isinstance(value, str):
            value = value.strip()
            if col == "status":
                value = value.lower()  # "Active" in a spreadsheet means active
        if col in _OPTIONAL_EMPTY_IS_NONE and value in ("", None):
            continue
        if col == "department" and value is None:
            continue
        out[col] = value
    return out


def _message(err: Mapping[str, Any]) -> str:
    msg = str(err.get("msg", "invalid"))
    # pydantic prefixes a validator's own ValueError; the rest of the message says it all
    return msg.removeprefix("Value error, ")


def _validate(
    rows: Iterable[tuple[int, int | None, Any]], source: str
) -> tuple[list[RosterEntry], dict[str, RosterEntry]]:
    """Rows as (row number, CSV line, raw object) → entries, or RosterError with all problems."""
    errors: list[RowError] = []
    entries: list[RosterEntry] = []
    first_row: dict[str, int] = {}
    for row, line, raw in rows:
        if not isinstance(raw, Mapping):
            errors.append(RowError(row, None, "expected an object with named fields", line))
            continue
        data = _clean(raw)
        missing = [c for c in REQUIRED if data.get(c) in (None, "")]
        for col in missing:
            errors.append(RowError(row, col, "is missing or empty", line))
        try:
            entry = RosterEntry.model_validate({k: v for k, v in data.items() if k not in missing})
        except ValidationError as exc:
            for e in exc.errors():
                field = str(e["loc"][0]) if e.get("loc") else None
                if field in missing:
                    continue  # already said
                errors.append(RowError(row, field, _message(e), line))
            continue
        if missing:
            continue
        if entry.email in first_row:
            errors.append(
                RowError(
                    row,
                    "email",
                    f"{entry.email} is also on row {first_row[entry.email]}",
                    line,
                )
            )
            continue
        first_row[entry.email] = row
        entries.append(entry)
    if errors:
        raise RosterError(source, errors)
    return entries, {e.email: e for e in entries}


def _csv_rows(text: str, source: str) -> list[tuple[int, int | None, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    header = [str(h).strip().lower() for h in reader.fieldnames or []]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        found = ", ".join(h for h in header if h) or "nothing"
        raise RosterError(
            source,
            [
                RowError(None, col, f"the header has no '{col}' column (found: {found})", 1)
                for col in missing
            ],
        )
    rows: list[tuple[int, int | None, Any]] = []
    for n, raw in enumerate(reader, start=1):
        if not any((v or "").strip() for v in raw.values() if isinstance(v, str)):
            continue  # a blank line, as spreadsheets leave at the end
        rows.append((n, reader.line_num, raw))
    return rows


def _json_rows(text: str, source: str) -> list[tuple[int, int | None, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RosterError(
            source, [RowError(None, None, f"not valid JSON: {exc.msg}", exc.lineno)]
        ) from exc
    if isinstance(data, dict) and "rows" in data:
        data = data["rows"]
    if not isinstance(data, list):
        raise RosterError(
            source, [RowError(None, None, 'expected a list of objects or {"rows": [...]}')]
        )
    return [(n, None, raw) for n, raw in enumerate(data, start=1)]


class RosterFile:
    """The Roster capability over a CSV or JSON file (or rows already in memory).

    Args:
        path: the file; ``.json`` is read as JSON, ``.csv`` as CSV, anything else by its first
            character (``[`` or ``{`` means JSON).

    Raises:
        RosterError: the file cannot be read, or any row is invalid (all problems at once).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        source = str(self.path)
        try:
            text = self.path.read_text(encoding="utf-8-sig")  # Excel writes a BOM
        except (OSError, UnicodeDecodeError) as exc:
            raise RosterError(source, [RowError(None, None, f"cannot be read: {exc}")]) from exc
        suffix = self.path.suffix.lower()
        is_json = suffix == ".json" or (suffix != ".csv" and text.lstrip()[:1] in ("[", "{"))
        rows = _json_rows(text, source) if is_json else _csv_rows(text, source)
        self._entries, self._by_email = _validate(rows, source)

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]], *, source: str = "rows") -> RosterFile:
        """A roster from rows already in memory (e.g. the sandbox's seeded roster).

        Args:
            rows: objects with the roster's columns.
            source: how error messages name where the rows came from.

        Returns:
            The roster.

        Raises:
            RosterError: any row is invalid (all problems at once).
        """
        self = cls.__new__(cls)
        self.path = Path(source)
        numbered = [(n, None, raw) for n, raw in enumerate(rows, start=1)]
        self._entries, self._by_email = _validate(numbered, source)
        return self

    def __repr__(self) -> str:
        return f"RosterFile({str(self.path)!r}, {len(self._entries)} entries)"

    def get(self, email: str) -> RosterEntry | None:
        """The entry with this email (case-insensitive), or None.

        Args:
            email: the person's email.

        Returns:
            Their roster entry, or None if HR does not know them.
        """
        return self._by_email.get(email.strip().lower())

    def entries(self) -> list[RosterEntry]:
        """Every entry, in the file's order.

        Returns:
            A new list (changing it does not change the roster).
        """
        return list(self._entries)
