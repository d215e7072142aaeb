"""Approval records and the decisions received for them.

The ledger is the source of truth for decisions (PREFECT_NOTES.md: two concurrent resumes both
"succeed", so a resume is only a wake-up); one person's repeated click is stored once.

A decision is stored with its audit event in one transaction, and remembers the event's seq.
Every read checks that event: it must authenticate with the audit key (ledger/anchor.py) and
name this approval, approver, answer and plan; a decision row without one (e.g. inserted by
someone with database access but not the key) reads as not ``authenticated``, and the tally
counts no such decision.
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
from sqlalchemy.orm import Mapped, Session, mapped_column

from domain.records import ApprovalRequest, ApprovalState, AuditEvent, Decision
from ledger.audit import AuditRow, append_in, authentic
from ledger.db import LedgerBase, LedgerDB, get_row, update_row

DECISION_ACTION = "approval.decision"


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
    # The seq of its audit event (0: none; a decision an older Handover stored has none).
    audit_seq: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))


def _authenticated(db: LedgerDB, d: DecisionRow, event: AuditRow | None) -> bool:
    """``event`` is ``d``'s audit record: keyed by the audit key, about this very decision."""
    return (
        db.anchor is not None
        and event is not None
        and authentic(db.anchor, event)
        and (event.action, event.target, event.on_behalf_of, event.effect, event.plan_hash)
        == (DECISION_ACTION, d.approval_id, d.approver, d.decision, d.plan_hash)
    )


def _model(
    db: LedgerDB, row: ApprovalRow, decisions: list[DecisionRow], events: dict[int, AuditRow]
) -> ApprovalRequest:
    data = {c.name: getattr(row, c.name) for c in ApprovalRow.__table__.columns}
    data["decisions"] = [
        Decision.model_validate(d, from_attributes=True).model_copy(
            update={"authenticated": _authenticated(db, d, events.get(d.audit_seq))}
        )
        for d in decisions
    ]
    return ApprovalRequest(**data)


def create_approval(
    db: LedgerDB, req: ApprovalRequest, *, event: AuditEvent | None = None
) -> ApprovalRequest:
    """Store a new approval request (idempotent on its id), with its audit ``event`` in the
    same transaction when it is new."""
    with db.session() as s:
        if s.get(ApprovalRow, req.id) is None:
            s.add(ApprovalRow(**req.model_dump(exclude={"decisions"}, mode="python")))
            if event is not None:
                append_in(db, s, event, now=req.created_at)
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
        seqs = [d.audit_seq for d in ds if d.audit_seq]
        events = (
            {e.seq: e for e in s.scalars(select(AuditRow).where(AuditRow.seq.in_(seqs)))}
            if seqs
            else {}
        )
        return _model(db, row, ds, events)


def list_approvals(db: LedgerDB, *, state: ApprovalState | None = None) -> list[ApprovalRequest]:
    with db.sessions() as s:
        q = select(ApprovalRow).order_by(ApprovalRow.created_at)
        if state is not None:
            q = q.where(ApprovalRow.state == state.value)
        ids = [r.id for r in s.scalars(q)]
    return [get_approval(db, i) for i in ids]


def add_decision(
    db: LedgerDB, approval_id: str, decision: Decision, *, details: dict[str, Any] | None = None
) -> bool:
    """Record a decision and its audit event (``approval.decision``: the approval, approver,
    answer and plan, and ``details`` — how the person was authenticated, on which channel) in
    one transaction; False when the same person already gave the same answer (a double click
    counts once, and is audited once).

    Raises:
        KeyError: no such approval.
    """
    try:
        with db.session() as s:
            appr = get_row(s, ApprovalRow, approval_id, what="approval")
            if not _make_room(db, s, approval_id, decision):
                return False
            row = DecisionRow(
                approval_id=approval_id,
                **decision.model_dump(exclude={"authenticated", "counted", "reason"}),
            )
            s.add(row)
            s.flush()  # a repeated click fails here, before anything is audited
            event = AuditEvent(
                action=DECISION_ACTION,
                subject=appr.subject,
                target=approval_id,
                on_behalf_of=decision.approver,
                flow_run_id=appr.flow_run_id,
                ticket=appr.ticket,
                plan_hash=decision.plan_hash,
                effect=decision.decision,
                after=details,
            )
            row.audit_seq = append_in(db, s, event, now=decision.at).seq
        return True
    except IntegrityError:
        return False


def _make_room(db: LedgerDB, s: Session, approval_id: str, decision: Decision) -> bool:
    """False when this person already gave this answer on this plan (a double click); a row
    saying so that does not authenticate (written into the database directly) is removed, so
    it cannot stand in the way of the person's real answer."""
    same = s.scalar(
        select(DecisionRow).where(
            DecisionRow.approval_id == approval_id,
            DecisionRow.approver == decision.approver,
            DecisionRow.decision == decision.decision,
            DecisionRow.plan_hash == decision.plan_hash,
        )
    )
    if same is None:
        return True
    if _authenticated(db, same, s.get(AuditRow, same.audit_seq)):
        return False
    s.delete(same)
    s.flush()
    return True


def update_approval(
    db: LedgerDB,
    approval_id: str,
    *,
    event: AuditEvent | None = None,
    now: datetime | None = None,
    **changes: Any,
) -> ApprovalRequest:
    """Change an approval's columns, with its audit ``event`` (at ``now``) in the same
    transaction."""
    with db.session() as s:
        update_row(s, ApprovalRow, approval_id, changes, what="approval")
        if event is not None:
            append_in(db, s, event, now=now)
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
