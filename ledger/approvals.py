"""Approval records and the decisions received for them.

The ledger is the source of truth for decisions (PREFECT_NOTES.md: two concurrent resumes both
"succeed", so a resume is only a wake-up); one person's repeated click is stored once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from domain.records import ApprovalRequest, ApprovalState, Decision
from ledger.db import LedgerBase, LedgerDB, get_row, update_row


class ApprovalRow(LedgerBase):
    __tablename__ = "approvals"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    flow_run_id: Mapped[str] = mapped_column(String(64), default="", index=True)
    runbook: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(320), index=True)
    requester: Mapped[str] = mapped_column(String(320))
    plan_hash: Mapped[str] = mapped_column(String(64))
    rule: Mapped[str] = mapped_column(String(100))
    required: Mapped[list[Any]] = mapped_column(JSON, default=list)
    quorum: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[str] = mapped_column(String(16), default=ApprovalState.PENDING.value, index=True)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    escalated: Mapped[bool] = mapped_column(Boolean, default=False)
    slack_refs: Mapped[list[Any]] = mapped_column(JSON, default=list)
    ticket: Mapped[str] = mapped_column(String(64), default="")
    # What approvers are shown (added after the first ledgers: defaults for older rows).
    plan_lines: Mapped[list[Any]] = mapped_column(JSON, default=list, server_default=text("'[]'"))
    plan_warnings: Mapped[list[Any]] = mapped_column(
        JSON, default=list, server_default=text("'[]'")
    )
    org: Mapped[str] = mapped_column(String(31), default="", server_default=text("''"))


class DecisionRow(LedgerBase):
    __tablename__ = "approval_decisions"
    __table_args__ = (UniqueConstraint("approval_id", "approver", "decision", "plan_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    approval_id: Mapped[str] = mapped_column(ForeignKey("approvals.id"), index=True)
    approver: Mapped[str] = mapped_column(String(320))
    decision: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime]
    plan_hash: Mapped[str] = mapped_column(String(64))
    comment: Mapped[str] = mapped_column(String(2000), default="")
    channel: Mapped[str] = mapped_column(String(16), default="slack")
    # How the approver was authenticated (domain.identity); added after the first ledgers.
    auth: Mapped[str] = mapped_column(String(32), default="", server_default=text("''"))
    counted: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(String(300), default="")


def _model(row: ApprovalRow, decisions: list[DecisionRow]) -> ApprovalRequest:
    data = {c.name: getattr(row, c.name) for c in ApprovalRow.__table__.columns}
    data["decisions"] = [Decision.model_validate(d, from_attributes=True) for d in decisions]
    return ApprovalRequest(**data)


def create_approval(db: LedgerDB, req: ApprovalRequest) -> ApprovalRequest:
    """Store a new approval request (idempotent on its id)."""
    with db.session() as s:
        if s.get(ApprovalRow, req.id) is None:
            s.add(ApprovalRow(**req.model_dump(exclude={"decisions"}, mode="python")))
    return get_approval(db, req.id)


def get_approval(db: LedgerDB, approval_id: str) -> ApprovalRequest:
    with db.sessions() as s:
        row = get_row(s, ApprovalRow, approval_id, what="approval")
        ds = list(
            s.scalars(
                select(DecisionRow)
                .where(DecisionRow.approval_id == approval_id)
                .order_by(DecisionRow.id)
            )
        )
        return _model(row, ds)


def list_approvals(db: LedgerDB, *, state: ApprovalState | None = None) -> list[ApprovalRequest]:
    with db.sessions() as s:
        q = select(ApprovalRow).order_by(ApprovalRow.created_at)
        if state is not None:
            q = q.where(ApprovalRow.state == state.value)
        ids = [r.id for r in s.scalars(q)]
    return [get_approval(db, i) for i in ids]


def add_decision(db: LedgerDB, approval_id: str, decision: Decision) -> bool:
    """Record a decision; False when the same person already gave the same answer (a double
    click counts once)."""
    try:
        with db.session() as s:
            get_row(s, ApprovalRow, approval_id, what="approval")
            s.add(DecisionRow(approval_id=approval_id, **decision.model_dump()))
        return True
    except IntegrityError:
        return False


def update_approval(db: LedgerDB, approval_id: str, **changes: Any) -> ApprovalRequest:
    with db.session() as s:
        update_row(s, ApprovalRow, approval_id, changes, what="approval")
    return get_approval(db, approval_id)


def mark_decisions(db: LedgerDB, approval_id: str, verdicts: dict[int, tuple[bool, str]]) -> None:
    """Store whether each decision (by position) counted, and why not."""
    with db.session() as s:
        rows = list(
            s.scalars(
                select(DecisionRow)
                .where(DecisionRow.approval_id == approval_id)
                .order_by(DecisionRow.id)
            )
        )
        for i, (counted, reason) in verdicts.items():
            rows[i].counted, rows[i].reason = counted, reason
