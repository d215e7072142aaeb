"""The Members export an admin downloads from the org's console (seed 004: "Export current
Members list"): what a SCIM-only org does not say by API — each member's org role, status and
last login — for the access review (``handover review --members-export FILE``).

The export's exact layout is the console's, not an API contract, so the reader goes by header
names, case- and punctuation-insensitive: an email column (``Email``, ``User Email``…) and at
least one of ``Role`` (``Org Role``…), ``Last Login`` (``Last Active``, ``Last Seen``…),
``Status``. Dates are ISO 8601 (a date alone is midnight UTC) or ``MM/DD/YYYY``; a blank,
``Never`` or ``-`` is "never logged in". Every problem is reported with its line, and a file
with any is refused as a whole (bad input: nothing is reviewed from half a file).
"""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime
from pathlib import Path

from domain.models import Role
from domain.review import ConsoleRecord

MAX_BYTES = 20 * 1024 * 1024
EMAIL_HEADERS = {"email", "emailaddress", "useremail", "memberemail"}
ROLE_HEADERS = {"role", "orgrole", "organizationrole", "organisationrole"}
LOGIN_HEADERS = {"lastlogin", "lastloginat", "lastactive", "lastseen", "lastloggedin"}
STATUS_HEADERS = {"status", "memberstatus"}
NEVER = {"", "never", "-", "n/a", "none"}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class MembersExportError(ValueError):
    """The export cannot be read; the message names every problem (with its line)."""


def _key(header: str) -> str:
    return re.sub(r"[^a-z]", "", header.casefold())


def _when(value: str) -> datetime | None:
    """A last-login cell as an aware UTC time (None: never).

    Raises:
        ValueError: not a date.
    """
    v = value.strip()
    if v.casefold() in NEVER:
        return None
    if m := re.fullmatch(r"(\d{1,2})/(\d{1,2})/(\d{4})", v):
        return datetime(int(m.group(3)), int(m.group(1)), int(m.group(2)), tzinfo=UTC)
    t = datetime.fromisoformat(v.replace("Z", "+00:00"))
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _status(value: str) -> str | None:
    v = value.strip().casefold()
    if v in ("joined", "active", "member"):
        return "joined"
    if v in ("pending", "invited"):
        return "pending"
    if not v:
        return None
    raise ValueError(f"status {value!r} is not joined or pending")


def parse_members_export(text: str) -> list[ConsoleRecord]:
    """The members of an export's text.

    Raises:
        MembersExportError: no usable header, or any row with a bad email, role, status or
            date, or an email twice (every problem listed, with its line).
    """
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    if not rows:
        raise MembersExportError("the members export is empty")
    header = [_key(h) for h in rows[0]]

    def col(names: set[str]) -> int | None:
        return next((i for i, h in enumerate(header) if h in names), None)

    email_at, role_at, login_at, status_at = (
        col(EMAIL_HEADERS),
        col(ROLE_HEADERS),
        col(LOGIN_HEADERS),
        col(STATUS_HEADERS),
    )
    if email_at is None:
        raise MembersExportError(f"no email column in the header {rows[0]!r}")
    if role_at is None and login_at is None and status_at is None:
        raise MembersExportError(
            f"the header {rows[0]!r} has none of Role, Last Login, Status: nothing to review"
        )
    out: list[ConsoleRecord] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue

        def cell(i: int | None, row: list[str] = row) -> str:
            return row[i].strip() if i is not None and i < len(row) else ""

        email = cell(email_at).casefold()
        why: list[str] = []
        if not _EMAIL.match(email):
            why.append(f"email {cell(email_at)!r} is not an email address")
        elif email in seen:
            why.append(f"{email} is already on line {seen[email]}")
        role = None
        if cell(role_at):
            try:
                role = Role(cell(role_at).casefold())
            except ValueError:
                why.append(f"role {cell(role_at)!r} is not admin, manager, member or viewer")
        try:
            last = _when(cell(login_at))
        except ValueError:
            last = None
            why.append(f"last login {cell(login_at)!r} is not a date")
        try:
            status = _status(cell(status_at))
        except ValueError as e:
            status = None
            why.append(str(e))
        if why:
            problems.append(f"line {line}: " + "; ".join(why))
            continue
        seen[email] = line
        out.append(ConsoleRecord(email=email, org_role=role, status=status, last_login=last))
    if problems:
        shown = problems[:20] + ([f"… and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise MembersExportError("the members export has bad rows: " + " | ".join(shown))
    return out


def read_members_export(path: str | Path) -> list[ConsoleRecord]:
    """The members of the export file at ``path`` (UTF-8, a BOM allowed).

    Raises:
        MembersExportError: missing, too large, not UTF-8, or bad rows.
    """
    p = Path(path)
    try:
        if p.stat().st_size > MAX_BYTES:
            raise MembersExportError(f"{p} is larger than {MAX_BYTES // 2**20} MiB")
        return parse_members_export(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise MembersExportError(f"cannot read the members export {p}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise MembersExportError(f"{p} is not UTF-8 text") from None
