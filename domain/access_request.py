"""Access-request tickets: the ``key: value`` lines of a ticket's description, parsed and
validated into an :class:`~domain.models.AccessRequest` (INTERFACES.md "Access-request tickets").

Pure: no I/O, and the date is passed in. Every problem is collected, not only the first, and
each names its line, so the requester can fix the ticket in one go; ``str()`` of the error is
written to be posted as the ticket comment as it is.

Project names are not checked here: whether a project exists is a question for the org, which
the runbook asks.

Hostile text gets the same treatment as a typo: a line holding invisible or control characters
(bidi overrides, zero-width joiners, escape sequences) or a value longer than ``MAX_VALUE`` is
a problem of its line, and the line is echoed back with those characters spelled out
(``\\u202e``) and cut short, so the comment shows what was really sent. Emails must be plain
(``domain.models.PlainEmail``); look-alike letters are letters, kept as written (the runbook
warns when an account looks like another).

:func:`parse_access_request` is a short sequence of named rules, each a small pure function with
its own table of cases (``tests/domain/test_access_request_rules.py``): each line through
:func:`key_problem`, :func:`text_problem` and :func:`parse_value` (:func:`read_lines`), then
:func:`missing_errors` and :func:`build_request`.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date

from pydantic import TypeAdapter, ValidationError

from domain.escaping import quoted
from domain.models import AccessRequest, Email, Module, PlainEmail, Role, visible

KEYS = ("email", "projects", "org_role", "modules", "until", "justification", "sow", "org")
_ORG = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
REQUIRED = ("email", "projects")
TEMPORARY_LABEL = "temporary"
MAX_VALUE = 2000  # characters in one value; a justification is a few sentences
SHOWN = 120  # characters of a line echoed back in a problem

_EMAIL = TypeAdapter(Email)
_PLAIN_EMAIL = TypeAdapter(PlainEmail)
# Jira's rich-text editor turns a typed address into a link: "[a@b.com|mailto:a@b.com]".
_MAILTO = re.compile(r"^\[([^|\]]+)\|mailto:[^\]]*\]$", re.IGNORECASE)
_EXAMPLES = {
    "email": "email: name@example.com",
    "projects": "projects: Production=viewer, Staging=manager",
}


@dataclass(frozen=True)
class LineError:
    """One problem: the line it is on (1-based; ``None`` for something missing) and what is
    wrong."""

    line_no: int | None
    line: str
    message: str

    def __str__(self) -> str:
        if self.line_no is None:
            return self.message
        return f'line {self.line_no} ("{shown(self.line.strip())}"): {spelled(self.message)}'


def spelled(text: str) -> str:
    """``text`` as it may be echoed back: a tab as a space, other invisible and control
    characters spelled out (``\\u202e``)."""
    return "".join(
        " "
        if c == "\t"
        else c
        if not unicodedata.category(c).startswith("C")
        else f"\\u{ord(c):04x}"
        for c in text
    )


def shown(text: str) -> str:
    """:func:`spelled`, cut at ``SHOWN`` characters."""
    out = spelled(text[: SHOWN + 1])
    return out if len(text) <= SHOWN else out[:SHOWN] + "…"


class AccessRequestError(ValueError):
    """The description is not a valid access request; ``errors`` holds every problem."""

    def __init__(self, errors: Iterable[LineError]) -> None:
        self.errors = list(errors)
        super().__init__(self._text())

    def _text(self) -> str:
        n = len(self.errors)
        head = (
            f"This access request cannot be processed ({n} problem{'s' * (n != 1)}). "
            "Please correct the description and update the ticket:"
        )
        return "\n".join([head, *(f"- {e}" for e in self.errors)])

    def __str__(self) -> str:
        return self._text()


def _listing(values: Iterable[str]) -> str:
    items = list(values)
    return ", ".join(items[:-1]) + f" or {items[-1]}" if len(items) > 1 else "".join(items)


def _key(raw: str) -> str:
    """``Org Role`` / ``org-role`` / ``ORG_ROLE`` → ``org_role``."""
    return re.sub(r"[\s\-]+", "_", raw.strip().lower())


def _role(value: str) -> Role | None:
    try:
        return Role(value.strip().lower())
    except ValueError:
        return None


def _module(value: str) -> Module | None:
    try:
        return Module(_key(value))
    except ValueError:
        return None


def _email(value: str) -> tuple[str | None, str | None]:
    """(email, None) or (None, why not)."""
    value = value.strip()
    if m := _MAILTO.match(value):
        value = m.group(1).strip()
    if not value:
        return None, "email is empty"
    try:
        _EMAIL.validate_python(value)
    except ValidationError:
        return None, f"{quoted(value)} is not a valid email address"
    try:
        return _PLAIN_EMAIL.validate_python(value), None
    except ValidationError:
        return None, (
            f"{quoted(value)} is not a valid email address: before the @ only letters, digits and "
            ". _ + - ' are taken; after it, dot-separated labels of letters, digits and hyphens"
        )


def _projects(value: str) -> tuple[dict[str, Role], list[str]]:
    """``Production=viewer, Staging=manager`` → ({name: role}, problems)."""
    out: dict[str, Role] = {}
    problems: list[str] = []
    entries = [e.strip() for e in re.split(r"[,;]", value)]
    if not any(entries):
        return out, ["no project given; write them like 'Production=viewer, Staging=manager'"]
    roles = _listing(r.value for r in Role)
    for entry in entries:
        if not entry:
            continue  # a trailing comma is harmless
        name, eq, role_text = entry.partition("=")
        name, role_text = name.strip(), role_text.strip()
        if not eq or not name or not role_text:
            problems.append(f"malformed projects entry '{entry}': expected Name=role")
            continue
        role = _role(role_text)
        if role is None:
            problems.append(f"unknown role '{role_text}' for project '{name}': use {roles}")
        elif name.casefold() in {p.casefold() for p in out}:
            problems.append(f"project '{name}' is listed twice")
        else:
            out[name] = role
    return out, problems


def _modules(value: str) -> tuple[tuple[Module, ...], list[str]]:
    mods: list[Module] = []
    problems: list[str] = []
    if value.strip().lower() in ("", "none", "-"):
        return (), problems
    for raw in (p.strip() for p in value.split(",")):
        if not raw:
            continue
        mod = _module(raw)
        if mod is None:
            known = _listing(m.value for m in Module)
            problems.append(f"unknown module '{raw}': use {known}")
        elif mod not in mods:
            mods.append(mod)
    return tuple(mods), problems


def _until(value: str, today: date) -> tuple[date | None, str | None]:
    text = value.strip()
    try:
        until = date.fromisoformat(text)
    except ValueError:
        return None, f"'{text}' is not a date; write it as YYYY-MM-DD"
    if until <= today:
        return None, f"until {until.isoformat()} is not after today ({today.isoformat()})"
    return until, None


# --- the rules -----------------------------------------------------------------------------------
# Each rule is a small pure function; parse_access_request runs them over each line in order.


def key_problem(line: str, *, seen: Mapping[str, int]) -> tuple[str, str, str | None]:
    """The line's key (normalised) and value, and what is wrong with its key, if anything: no
    ``key: value`` shape, an unknown key (with the closest known one), or a key already
    ``seen`` (key → the line it was first on)."""
    raw_key, colon, value = line.partition(":")
    key = _key(raw_key)
    if not colon or not key:
        return key, value, "expected 'key: value', e.g. " + _EXAMPLES["email"]
    if key not in KEYS:
        hint = difflib.get_close_matches(key, KEYS, n=1)
        also = f" (did you mean '{hint[0]}'?)" if hint else ""
        known = f"; the keys are {', '.join(KEYS)}"
        return key, value, f"unknown key '{shown(raw_key.strip())}'{also}{known}"
    if key in seen:
        return key, value, f"'{key}' is given twice (first on line {seen[key]})"
    return key, value, None


def text_problem(line: str, value: str) -> str | None:
    """Hostile text: invisible or control characters anywhere on the line (a tab is only
    whitespace), or a value longer than ``MAX_VALUE``."""
    try:
        visible(line.replace("\t", " "))
    except ValueError as exc:
        return f"{exc}: retype the line without them"
    if len(value.strip()) > MAX_VALUE:
        return f"the value is {len(value.strip())} characters long; at most {MAX_VALUE}"
    return None


def parse_value(key: str, value: str, *, today: date) -> tuple[object, list[str]]:
    """The value of a known key, parsed (``None`` where it is wrong), and its problems;
    ``justification`` and ``sow`` are free text."""
    if key == "email":
        email, why = _email(value)
        return email, [why] if why else []
    if key == "projects":
        return _projects(value)
    if key == "org_role":
        role = _role(value)
        if role is None:
            roles = _listing(r.value for r in Role)
            return None, [f"unknown org role '{value.strip()}': use {roles}"]
        return role, []
    if key == "modules":
        return _modules(value)
    if key == "until":
        until, why = _until(value, today)
        return until, [why] if why else []
    if key == "org":
        org = value.strip().lower()
        if not _ORG.match(org):
            return None, [f"org '{value.strip()}' is not an org name (e.g. 'org: qa')"]
        return org, []
    return value.strip(), []


@dataclass
class ParsedLines:
    """What the lines of a description say: each key's value, the line each key is on, and
    every problem found, in line order."""

    values: dict[str, object] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)
    errors: list[LineError] = field(default_factory=list)


def read_lines(description: str | None, *, today: date) -> ParsedLines:
    """Every non-blank line through :func:`key_problem`, :func:`text_problem` and
    :func:`parse_value`, in that order. A known key counts as given from its first line on,
    even when that line's text is refused (so a second line with it is "given twice", and it
    is not "missing")."""
    read = ParsedLines()
    for no, line in enumerate((description or "").splitlines(), start=1):
        if not line.strip():
            continue
        key, value, why = key_problem(line, seen=read.seen)
        if why is None:
            read.seen[key] = no
            why = text_problem(line, value)
        if why is None:
            read.values[key], problems = parse_value(key, value, today=today)
        else:
            problems = [why]
        read.errors += [LineError(no, line, p) for p in problems]
    return read


def missing_errors(seen: Collection[str]) -> list[LineError]:
    """A problem, on no line, for each required key no line gives."""
    return [
        LineError(None, "", f"'{key}' is missing: add a line like '{_EXAMPLES[key]}'")
        for key in REQUIRED
        if key not in seen
    ]


def build_request(
    values: Mapping[str, object],
    *,
    ticket: str | None,
    labels: Iterable[str],
    requester: str | None,
) -> AccessRequest:
    """The request from the parsed values, the defaults filled in (Viewer, no module).

    Raises:
        AccessRequestError: the model refuses a value (only reachable if the model gains
            rules the parser lacks).
    """
    temporary = any(lbl.strip().lower() == TEMPORARY_LABEL for lbl in labels)
    try:
        return AccessRequest(
            ticket=ticket,
            email=values["email"],
            projects=values["projects"],
            org_role=values.get("org_role") or Role.VIEWER,
            modules=values.get("modules") or (),
            until=values.get("until"),
            justification=values.get("justification") or "",
            sow=values.get("sow") or "",
            org=values.get("org") or "",
            # An end date is what makes access temporary; the label alone asks for it too.
            temporary=temporary or values.get("until") is not None,
            requester=requester,
        )
    except ValidationError as exc:
        raise AccessRequestError(
            LineError(None, "", f"{'.'.join(map(str, e['loc']))}: {e['msg']}") for e in exc.errors()
        ) from exc


def parse_access_request(
    description: str | None,
    *,
    ticket: str | None = None,
    labels: Iterable[str] = (),
    requester: str | None = None,
    today: date,
) -> AccessRequest:
    """Parse the ``key: value`` lines of an access-request ticket.

    Keys (case and ``_``/space/``-`` do not matter): ``email`` and ``projects`` (required),
    ``org_role``, ``modules``, ``until``, ``justification``, ``sow``. Blank lines are ignored;
    any other line must be ``key: value`` with a known key, once. A ``temporary`` label, or an
    ``until`` date, makes the access temporary.

    Args:
        description: the ticket's description (``None`` is read as empty).
        ticket: the ticket key, kept on the request.
        labels: the ticket's labels.
        requester: who asked (the ticket's reporter).
        today: the date ``until`` must be after.

    Returns:
        The validated request.

    Raises:
        AccessRequestError: with every problem found, each naming its line.
    """
    read = read_lines(description, today=today)
    errors = read.errors + missing_errors(read.seen)
    if errors:
        raise AccessRequestError(errors)
    return build_request(read.values, ticket=ticket, labels=labels, requester=requester)
