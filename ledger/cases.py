"""Runbook cases: one open case per person and runbook, with the steps already done.

A re-run of an interrupted offboarding finds its case again (same ticket, same approval) and
skips what is done, so nothing is done twice — no second rotation, transfer or message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from domain.runbook import ApprovedPlan, Case, CaseStatus
from ledger.db import LedgerBase, LedgerDB, get_row


class CaseRow(LedgerBase):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    runbook: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(320), index=True)
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    reason: Mapped[str] = mapped_column(String(32), default="")
    ticket: Mapped[str] = mapped_column(String(64), default="")
    requester: Mapped[str] = mapped_column(String(320), default="")
    approved_plan: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    opened_at: Mapped[datetime]
    closed_at: Mapped[datetime | None] = mapped_column(nullable=True)
    outcome: Mapped[str] = mapped_column(String(300), default="")


class DoneStep(LedgerBase):
    __tablename__ = "case_steps"
    __table_args__ = (UniqueConstraint("case_id", "step_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    step_id: Mapped[str] = mapped_column(String(300))
    effect: Mapped[str] = mapped_column(String(300))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    at: Mapped[datetime]


def find_open_case(db: LedgerDB, *, runbook: str, subject: str) -> Case | None:
    """The open case of this person and runbook, without opening one."""
    with db.sessions() as s:
        row = s.scalar(
            select(CaseRow).where(
                CaseRow.runbook == runbook, CaseRow.subject == subject, CaseRow.status == "open"
            )
        )
        return _case(row) if row is not None else None


def find_closed_case(
    db: LedgerDB,
    *,
    runbook: str,
    subject: str,
    ticket: str,
    outcomes: tuple[str, ...],
    reason: str = "",
) -> Case | None:
    """The newest closed case of this runbook, person and ticket that ended in one of
    ``outcomes`` (and had ``reason``, when given): a re-run of a finished request finds it and
    does nothing twice. Without a ticket there is nothing to match: ``None``."""
    if not ticket:
        return None
    with db.sessions() as s:
        q = (
            select(CaseRow)
            .where(
                CaseRow.runbook == runbook,
                CaseRow.subject == subject,
                CaseRow.ticket == ticket,
                CaseRow.status == "closed",
                CaseRow.outcome.in_(outcomes),
            )
            .order_by(CaseRow.id.desc())
        )
        if reason:
            q = q.where(CaseRow.reason == reason)
        row = s.scalars(q).first()
        return _case(row) if row is not None else None


def sweep_case_id(
    db: LedgerDB, *, runbook: str, subject: str, reason: str, create: bool, now: datetime
) -> int | None:
    """The long-lived case of a scheduled sweep (expiry, hygiene), opened only when ``create``
    (a sweep with nothing to do writes nothing)."""
    if not create:
        found = find_open_case(db, runbook=runbook, subject=subject)
        return found.id if found else None
    case = open_case(
        db,
        runbook=runbook,
        subject=subject,
        reason=reason,
        requester="schedule",
        ticket="",
        now=now,
    )
    return case.id


def open_case(
    db: LedgerDB,
    *,
    runbook: str,
    subject: str,
    reason: str,
    requester: str,
    ticket: str,
    now: datetime,
) -> Case:
    """The open case of this person and runbook, or a new one (``resumed``: an earlier run
    had opened it)."""
    with db.session() as s:
        row = s.scalar(
            select(CaseRow).where(
                CaseRow.runbook == runbook, CaseRow.subject == subject, CaseRow.status == "open"
            )
        )
        resumed = row is not None
        if row is None:
            row = CaseRow(
                runbook=runbook,
                subject=subject,
                reason=reason,
                ticket=ticket,
                requester=requester,
                opened_at=now,
            )
            s.add(row)
            s.flush()
        elif ticket and not row.ticket:
            row.ticket = ticket
        return _case(row, resumed=resumed)


def _case(row: CaseRow, *, resumed: bool = False) -> Case:
    return Case.model_validate(
        {c.name: getattr(row, c.name) for c in CaseRow.__table__.columns} | {"resumed": resumed}
    )


def update_case(
    db: LedgerDB,
    case_id: int,
    *,
    ticket: str | None = None,
    approved_plan: ApprovedPlan | None = None,
    outcome: str | None = None,
    closed_at: datetime | None = None,
) -> Case:
    """Record the case's ticket, its approved plan, or how it ended (``outcome`` with
    ``closed_at`` closes it)."""
    with db.session() as s:
        row = get_row(s, CaseRow, case_id, what="case")
        if ticket is not None:
            row.ticket = ticket
        if approved_plan is not None:
            row.approved_plan = approved_plan.model_dump(mode="json")
        if outcome is not None:
            row.outcome = outcome
        if closed_at is not None:
            row.status = CaseStatus.CLOSED.value
            row.closed_at = closed_at
        s.flush()
        return _case(row)


def done_steps(db: LedgerDB, case_id: int) -> dict[str, dict[str, Any]]:
    with db.sessions() as s:
        return {
            r.step_id: {"effect": r.effect, "detail": r.detail, "at": r.at}
            for r in s.scalars(select(DoneStep).where(DoneStep.case_id == case_id))
        }


def mark_done(
    db: LedgerDB, case_id: int, step_id: str, effect: str, detail: dict[str, Any], now: datetime
) -> bool:
    """Record a step as done; False when it was already."""
    try:
        with db.session() as s:
            s.add(DoneStep(case_id=case_id, step_id=step_id, effect=effect, detail=detail, at=now))
        return True
    except IntegrityError:
        return False
