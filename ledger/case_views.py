"""Runbook cases as people look for them: a filtered list, one case's audit events, and the
case a Prefect flow run worked on.

A case records no flow run (one case may take several: a killed run's successor resumes it),
so its events are found in the audit log by what they share with it:

- the events of its approval (``target``: the approval's id, which is derived from the case's
  key, ``approvals.gate.approval_id_for``) and of its human tasks (``target``:
  ``task-<case id>-…``, ``approvals.tasks.task_id_for``);
- its runbook's own events (``action`` ``<runbook>.…``: each step, the record, a rejection)
  about its subject between its opening and its closing (one case of a person and runbook is
  open at a time, so these windows never overlap), and an emergency declared for its subject
  in the terminal within the policy's timeout before it opened (the declaration that let its
  run through);
- and then every event of the flow runs that wrote any of those (what a run recorded before it
  opened the case, a post-hoc review, a task's notice).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, or_, select

from domain.records import AuditRecord
from domain.runbook import Case
from ledger.approvals import ApprovalRow
from ledger.audit import AuditRow
from ledger.audit_search import events_where
from ledger.cases import CaseRow, _case
from ledger.db import LedgerDB

DECLARED = "emergency_declared"  # tasks.triggers.declare's event: offboard.emergency_declared


@dataclass(frozen=True)
class CaseQuery:
    """Which cases to list; an empty field matches everything. ``people``: only cases whose
    subject or requester is one of these addresses (a requester's own); ``since``/``until``:
    opened in that range (until excluded)."""

    person: str = ""  # part of the subject's or the requester's address
    runbook: str = ""
    state: str = ""  # open | closed
    outcome: str = ""  # done | denied | failed | … (closed cases)
    since: datetime | None = None
    until: datetime | None = None
    people: tuple[str, ...] | None = None


def _utc(when: datetime) -> datetime:
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC)


def _where(q: CaseQuery) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = []
    if q.person:
        conds.append(
            or_(
                CaseRow.subject.icontains(q.person, autoescape=True),
                CaseRow.requester.icontains(q.person, autoescape=True),
            )
        )
    if q.runbook:
        conds.append(CaseRow.runbook == q.runbook)
    if q.state:
        conds.append(CaseRow.status == q.state)
    if q.outcome:
        conds.append(CaseRow.outcome == q.outcome)
    if q.since is not None:
        conds.append(CaseRow.opened_at >= _utc(q.since))
    if q.until is not None:
        conds.append(CaseRow.opened_at < _utc(q.until))
    if q.people is not None:
        mine = [p.lower() for p in q.people]
        conds.append(
            or_(func.lower(CaseRow.subject).in_(mine), func.lower(CaseRow.requester).in_(mine))
        )
    return conds


def list_cases(
    db: LedgerDB, q: CaseQuery, *, offset: int = 0, limit: int = 50
) -> tuple[list[Case], int]:
    """One page of the cases matching ``q``, newest first, and how many match in all."""
    conds = _where(q)
    with db.sessions() as s:
        total = s.scalar(select(func.count()).select_from(CaseRow).where(*conds)) or 0
        rows = s.scalars(
            select(CaseRow)
            .where(*conds)
            .order_by(CaseRow.opened_at.desc(), CaseRow.id.desc())
            .offset(offset)
            .limit(limit)
        )
        return [_case(r) for r in rows], total


def case_choices(db: LedgerDB) -> tuple[list[str], list[str]]:
    """The runbooks and the outcomes the cases have (what the filters offer)."""
    with db.sessions() as s:
        runbooks = s.scalars(select(CaseRow.runbook).distinct().order_by(CaseRow.runbook))
        outcomes = s.scalars(
            select(CaseRow.outcome)
            .where(CaseRow.outcome != "")
            .distinct()
            .order_by(CaseRow.outcome)
        )
        return list(runbooks), list(outcomes)


def get_case(db: LedgerDB, case_id: int) -> Case | None:
    with db.sessions() as s:
        row = s.get(CaseRow, case_id)
        return _case(row) if row is not None else None


def _at(when: datetime) -> str:
    return _utc(when).isoformat(timespec="microseconds")


def _own(case: Case, approval_id: str, declared: timedelta) -> ColumnElement[bool]:
    """The events that name the case itself (see the module's docstring)."""
    about = AuditRow.subject == case.subject
    until = [AuditRow.at <= _at(case.closed_at)] if case.closed_at is not None else []
    return or_(
        AuditRow.target == approval_id,
        AuditRow.target.startswith(f"task-{case.id}-", autoescape=True),
        and_(
            about,
            AuditRow.action.startswith(f"{case.runbook}.", autoescape=True),
            AuditRow.at >= _at(case.opened_at),
            *until,
        ),
        # An emergency declared in the terminal comes before the run it lets through.
        and_(
            about,
            AuditRow.action == f"{case.runbook}.{DECLARED}",
            AuditRow.at >= _at(case.opened_at - declared),
            *until,
        ),
    )


def case_events(
    db: LedgerDB, case: Case, *, approval_id: str, declared: timedelta = timedelta(hours=24)
) -> tuple[list[AuditRecord], list[str]]:
    """The case's events, oldest first, and the flow runs that wrote them (first one first);
    ``approval_id``: the id its approval has (or would have); ``declared``: how long before the
    case opened an emergency declaration that let it through may have been made (the policy's
    timeout)."""
    own = _own(case, approval_id, declared)
    found = events_where(db, own)
    runs = list(dict.fromkeys(e.flow_run_id for e in found if e.flow_run_id))
    if not runs:
        return found, []
    return events_where(db, or_(own, AuditRow.flow_run_id.in_(runs))), runs


@dataclass(frozen=True)
class RunApproval:
    """An approval a flow run asked for: enough to find its case."""

    id: str
    runbook: str
    subject: str


def approvals_of_run(db: LedgerDB, flow_run_id: str) -> list[RunApproval]:
    with db.sessions() as s:
        rows = s.scalars(select(ApprovalRow).where(ApprovalRow.flow_run_id == flow_run_id))
        return [RunApproval(r.id, r.runbook, r.subject) for r in rows]


def cases_of(db: LedgerDB, *, runbook: str, subject: str) -> list[Case]:
    """Every case of this runbook and person, newest first."""
    with db.sessions() as s:
        rows = s.scalars(
            select(CaseRow)
            .where(CaseRow.runbook == runbook, CaseRow.subject == subject)
            .order_by(CaseRow.id.desc())
        )
        return [_case(r) for r in rows]


def case_by_events_of_run(db: LedgerDB, flow_run_id: str) -> Case | None:
    """The case whose runbook event (``<runbook>.…`` about its subject, while it was open) the
    flow run wrote; None when it wrote none."""
    for e in events_where(db, AuditRow.flow_run_id == flow_run_id):
        runbook = e.action.split(".", 1)[0]
        for case in cases_of(db, runbook=runbook, subject=e.subject):
            if case.opened_at <= e.at and (case.closed_at is None or e.at <= case.closed_at):
                return case
    return None
