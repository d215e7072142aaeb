"""Bulk onboarding (issue 6, ``handover onboard --csv FILE``): a CSV of access requests, one row
per person, parsed into :class:`~domain.models.AccessRequest` s, and the batch plan that one
approval covers.

Pure: no I/O, and the date is passed in.

The file: a header row naming the columns ``email`` and ``projects`` (required) and any of
``org_role``, ``modules``, ``until``, ``justification``, ``sow`` (case, spaces and ``-`` do not
matter; an unknown column is a file error). ``projects`` is ``Production=viewer; Staging=manager``
or, quoted, ``"Production=viewer, Staging=manager"``; ``modules`` is ``govern, experiment`` (quoted
when it has commas) or ``govern; experiment``. A UTF-8 BOM and CRLF line ends are fine; blank
lines are skipped. Values are read exactly like the ``key: value`` lines of an access-request
ticket (:mod:`domain.access_request`).

A bad row is reported with its line in the file and the field, and does not stop the others;
an email given on an earlier row makes every later row with it an error.

Re-runs: the single-person runbook resends a pending invitation. A batch run again (the same
file, a day later) must not resend 47 invitations, so :func:`settle_pending` turns a pending
invitation that already grants exactly what the row asks, sent or resent less than
``RESEND_AFTER`` (48 h) ago, into ``nothing_to_do``; an older one is resent once (the resend
step only: a temporary grant was recorded with the first invitation).
"""

from __future__ import annotations

import csv
import difflib
import io
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from domain.access_request import KEYS, REQUIRED, _email, _key, _modules, _projects, _role, _until
from domain.models import AccessRequest, Module, Role
from domain.onboard import OnboardPlan, OnboardState, OnboardStepKind, Outcome
from domain.runbook import batch_counts, batch_hash

RESEND_AFTER = timedelta(hours=48)
MAX_ROWS = 5000


class BulkFileError(ValueError):
    """The file as a whole cannot be read as a batch (empty, no header, unknown columns)."""


@dataclass(frozen=True)
class RowError:
    """One problem of one row: its line in the file (1-based; the header is line 1), the
    field and what is wrong."""

    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}, {self.field}: {self.message}"


@dataclass(frozen=True)
class BulkRow:
    """One data row: the request, or every problem found in it."""

    line: int
    email: str  # as written (for the report), or the validated address
    request: AccessRequest | None = None
    errors: tuple[RowError, ...] = ()

    @property
    def ok(self) -> bool:
        return self.request is not None and not self.errors

    @property
    def message(self) -> str:
        return "; ".join(map(str, self.errors))


def _header(fields: list[str]) -> list[str]:
    keys = [_key(f) for f in fields]
    problems: list[str] = []
    for raw, key in zip(fields, keys, strict=True):
        if key not in KEYS:
            hint = difflib.get_close_matches(key, KEYS, n=1)
            also = f" (did you mean '{hint[0]}'?)" if hint else ""
            problems.append(f"unknown column '{raw.strip()}'{also}")
    dupes = [k for k, n in Counter(keys).items() if n > 1 and k in KEYS]
    problems += [f"column '{k}' is given twice" for k in dupes]
    missing = [k for k in REQUIRED if k not in keys]
    problems += [f"column '{k}' is missing" for k in missing]
    if problems:
        raise BulkFileError(
            "line 1 (header): "
            + "; ".join(problems)
            + f"; the columns are {', '.join(KEYS)} (email and projects required)"
        )
    return keys


def _parse_row(line: int, values: dict[str, str], *, today: date, requester: str | None) -> BulkRow:
    errors: list[RowError] = []

    def bad(field_: str, message: str) -> None:
        errors.append(RowError(line, field_, message))

    raw_email = values.get("email", "").strip()
    email, why = _email(raw_email)
    if why:
        bad("email", why)
    projects: dict[str, Role] = {}
    if not values.get("projects", "").strip():
        bad("projects", "no project given; write them like 'Production=viewer; Staging=manager'")
    else:
        projects, problems = _projects(values["projects"])
        for p in problems:
            bad("projects", p)
    org_role = Role.VIEWER
    if values.get("org_role", "").strip():
        role = _role(values["org_role"])
        if role is None:
            roles = ", ".join(r.value for r in Role)
            bad("org_role", f"unknown org role '{values['org_role'].strip()}': use {roles}")
        else:
            org_role = role
    modules: tuple[Module, ...] = ()
    if values.get("modules", "").strip():
        modules, problems = _modules(values["modules"].replace(";", ","))
        for p in problems:
            bad("modules", p)
    until = None
    if values.get("until", "").strip():
        until, why = _until(values["until"], today)
        if why:
            bad("until", why)
    if errors or email is None:
        return BulkRow(line, email or raw_email, errors=tuple(errors))
    request = AccessRequest(
        email=email,
        projects=projects,
        org_role=org_role,
        modules=modules,
        until=until,
        justification=values.get("justification", "").strip()[:2000],
        sow=values.get("sow", "").strip()[:200],
        temporary=until is not None,
        requester=requester,
    )
    return BulkRow(line, email, request=request)


def parse_bulk_csv(text: str, *, today: date, requester: str | None = None) -> list[BulkRow]:
    """Every data row of a bulk-onboarding CSV, parsed (see the module docstring).

    Returns:
        One :class:`BulkRow` per non-blank data row, in file order: a request, or its errors.

    Raises:
        BulkFileError: the file is empty, has no header with ``email`` and ``projects``, has an
            unknown column, or has more than ``MAX_ROWS`` rows.
    """
    text = text.removeprefix("\ufeff")
    if not text.strip():
        raise BulkFileError("the file is empty: expected a header line 'email,projects,…'")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
        while not any(c.strip() for c in header):
            header = next(reader)
    except StopIteration:
        raise BulkFileError("the file has no header line") from None
    except csv.Error as e:
        raise BulkFileError(f"line {reader.line_num}: {e}") from None
    keys = _header(header)
    rows: list[BulkRow] = []
    seen: dict[str, int] = {}
    end = reader.line_num
    while True:
        start = end + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise BulkFileError(f"line {start}: {e}") from None
        end = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if len(rows) >= MAX_ROWS:
            raise BulkFileError(f"more than {MAX_ROWS} rows: split the file")
        if len(cells) > len(keys):
            extra = RowError(
                start, "row", f"{len(cells)} values for {len(keys)} columns (quote commas)"
            )
            rows.append(BulkRow(start, cells[0].strip() if cells else "", errors=(extra,)))
            continue
        values = dict(zip(keys, cells, strict=False))
        row = _parse_row(start, values, today=today, requester=requester)
        key = row.email.strip().casefold()
        if key and key in seen:
            dup = RowError(start, "email", f"{row.email} is already on line {seen[key]}")
            row = BulkRow(start, row.email, errors=(*row.errors, dup))
        elif key:
            seen[key] = start
        rows.append(row)
    if not rows:
        raise BulkFileError("the file has a header but no rows")
    return rows


# --- re-runs ----------------------------------------------------------------------------------


def settle_pending(
    plan: OnboardPlan, state: OnboardState, *, now: datetime, after: timedelta = RESEND_AFTER
) -> OnboardPlan:
    """A batch re-run's view of a pending invitation (see the module docstring).

    A plan that only resends (and records the grant again) a pending invitation that already
    grants exactly the asked access, sent less than ``after`` ago → ``nothing_to_do``; sent
    longer ago → the resend only. Any other plan is returned as is.
    """
    kinds = {s.kind for s in plan.steps}
    if OnboardStepKind.RESEND_INVITATION not in kinds or not kinds <= {
        OnboardStepKind.RESEND_INVITATION,
        OnboardStepKind.RECORD_GRANT,
    }:
        return plan
    m, inv = state.member, state.invitation
    if m is None or m.status != "pending":
        return plan
    same = (
        m.org_role in (None, plan.org_role)
        and {g.project: g.role for g in m.projects} == plan.projects
        and set(m.modules) == set(plan.modules)
    )
    if not same:
        return plan  # the single-person rule: resend, and warn that it grants something else
    last = inv.last_sent_at if inv is not None else m.invited_at
    if last is not None and now - last < after:
        return plan.model_copy(update={"steps": [], "outcome": Outcome.NOTHING_TO_DO})
    resend = [s for s in plan.steps if s.kind is OnboardStepKind.RESEND_INVITATION]
    return plan.model_copy(update={"steps": resend})


# --- the batch --------------------------------------------------------------------------------


@dataclass
class BatchRow:
    """One row of the batch: its plan (a good row) or why it is invalid."""

    line: int
    email: str
    plan: OnboardPlan | None = None
    error: str = ""

    @property
    def status(self) -> str:
        """invalid | ready | nothing_to_do | change_needed | blocked."""
        if self.plan is None or self.plan.outcome is Outcome.INVALID:
            return "invalid"
        return self.plan.outcome.value

    @property
    def message(self) -> str:
        if self.plan is None:
            return self.error
        p = self.plan
        if p.outcome is Outcome.INVALID:
            return f"line {self.line}, projects: " + "; ".join(p.problems)
        if p.outcome is Outcome.BLOCKED:
            return "; ".join(p.blockers)
        if p.outcome is Outcome.CHANGE_NEEDED:
            return "existing member: use handover change (" + "; ".join(p.change) + ")"
        if p.outcome is Outcome.NOTHING_TO_DO:
            return "nothing to do: the access (or a recent invitation for it) is already there"
        return p.granted_text()


@dataclass
class BatchPlan:
    """Every row's plan; ``hash`` is what the one approval of the batch approves."""

    rows: list[BatchRow] = field(default_factory=list)

    @property
    def ready(self) -> list[BatchRow]:
        return [r for r in self.rows if r.status == Outcome.READY.value]

    @property
    def hash(self) -> str:
        entries = [(r.line, r.email, r.plan, r.error) for r in self.rows]
        return batch_hash("onboard-bulk", entries, key="rows")

    def counts_by_kind(self) -> dict[str, int]:
        return batch_counts(r.plan for r in self.ready)

    def summary(self) -> str:
        """``12 rows, 9 to apply, 2 invalid``."""
        invalid = sum(r.status == "invalid" for r in self.rows)
        return f"{len(self.rows)} rows, {len(self.ready)} to apply, {invalid} invalid"

    def warnings(self) -> list[str]:
        """Every bad row (invalid, blocked, change_needed), then each ready row's warnings."""
        out = [
            f"line {r.line} ({r.email}) {r.status}: {r.message}"
            for r in self.rows
            if r.status in ("invalid", "blocked", "change_needed")
        ]
        for r in self.ready:
            assert r.plan is not None
            out += [f"line {r.line} ({r.email}): {w}" for w in r.plan.warnings]
        return out

    def needs_approval(self) -> bool:
        """Anything beyond resends (which grant nothing new) needs the batch approval."""
        return any(
            s.kind is not OnboardStepKind.RESEND_INVITATION
            for r in self.ready
            for s in (r.plan.steps if r.plan else [])
        )

    def production_roles(self) -> tuple[str, ...]:
        return tuple(
            dict.fromkeys(x for r in self.ready if r.plan for x in r.plan.production_roles)
        )

    def org_role(self) -> str:
        """The highest org role any row asks (what the policy must approve)."""
        roles = [r.plan.org_role for r in self.ready if r.plan is not None]
        return max(roles, key=lambda x: x.rank).value if roles else Role.VIEWER.value

    def modules(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m.value for r in self.ready if r.plan for m in r.plan.modules))

    def project_names(self, *, production: bool) -> list[str]:
        names: Iterable[str] = (
            p
            for r in self.ready
            if r.plan
            for p in (r.plan.production_projects if production else r.plan.projects)
        )
        return list(dict.fromkeys(names))
