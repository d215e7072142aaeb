"""Temporary grants: who has what until when (the expiry sweep's source of truth)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, select
from sqlalchemy.orm import Mapped, mapped_column

from domain.records import Grant, GrantStatus
from ledger.db import LedgerBase, LedgerDB, update_row


class GrantRow(LedgerBase):
    __tablename__ = "grants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subject: Mapped[str] = mapped_column(String(320), index=True)
    project: Mapped[str | None] = mapped_column(String(200), nullable=True)
    role: Mapped[str | None] = mapped_column(String(32), nullable=True)
    module: Mapped[str | None] = mapped_column(String(32), nullable=True)
    start: Mapped[datetime]
    end: Mapped[datetime] = mapped_column(index=True)
    ticket: Mapped[str] = mapped_column(String(64), default="")
    sponsor: Mapped[str] = mapped_column(String(320), default="")
    status: Mapped[str] = mapped_column(String(16), default=GrantStatus.ACTIVE.value, index=True)
    last_reminder: Mapped[str] = mapped_column(String(16), default="")
    extended_from: Mapped[datetime | None] = mapped_column(nullable=True)


def _model(r: GrantRow) -> Grant:
    return Grant.model_validate(r, from_attributes=True)


def record_grant(db: LedgerDB, grant: Grant) -> Grant:
    """Store a grant; the same active (subject, project, role, module, ticket) is kept once."""
    with db.session() as s:
        existing = s.scalar(
            select(GrantRow).where(
                GrantRow.subject == grant.subject,
                GrantRow.project == grant.project,
                GrantRow.role == grant.role,
                GrantRow.module == grant.module,
                GrantRow.ticket == grant.ticket,
                GrantRow.status == GrantStatus.ACTIVE.value,
            )
        )
        if existing is not None:
            return _model(existing)
        row = GrantRow(**grant.model_dump(exclude={"id"}))
        s.add(row)
        s.flush()
        return _model(row)


def grants(
    db: LedgerDB,
    *,
    subject: str | None = None,
    status: GrantStatus | None = None,
    due_by: datetime | None = None,
) -> list[Grant]:
    with db.sessions() as s:
        q = select(GrantRow).order_by(GrantRow.end, GrantRow.id)
        if subject is not None:
            q = q.where(GrantRow.subject == subject)
        if status is not None:
            q = q.where(GrantRow.status == status.value)
        if due_by is not None:
            q = q.where(GrantRow.end <= due_by)
        return [_model(r) for r in s.scalars(q)]


def set_grant(db: LedgerDB, grant_id: int, **changes: object) -> Grant:
    """Update a grant's status, end or reminder mark (the caller records the audit event)."""
    with db.session() as s:
        row = update_row(s, GrantRow, grant_id, changes, what="grant")
        s.flush()
        return _model(row)
