"""Access review campaigns: each review run with its findings, the evidence behind each, the
approval that decides each actionable item, and what became of it — what the console's review
pages read (domain.campaign). The review flow writes them through its tasks (tasks.review);
decisions themselves stay on the approvals (ledger.approvals), where every channel records them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Integer, String, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from domain.campaign import Campaign, CampaignItem, Evidence
from ledger.db import LedgerBase, LedgerDB, get_row


class CampaignRow(LedgerBase):
    __tablename__ = "review_campaigns"

    run: Mapped[str] = mapped_column(String(64), primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(index=True)
    started_by: Mapped[str] = mapped_column(String(320))
    approve: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(32))
    finished_at: Mapped[datetime | None] = mapped_column(nullable=True)
    reports: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    warnings: Mapped[list[Any]] = mapped_column(JSON, default=list)


class CampaignItemRow(LedgerBase):
    __tablename__ = "review_campaign_items"

    run: Mapped[str] = mapped_column(String(64), primary_key=True)
    finding_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(320), index=True)
    org: Mapped[str] = mapped_column(String(31), default="")
    project: Mapped[str] = mapped_column(String(200), default="")
    group: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[str] = mapped_column(String(2000))
    action: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(32), default="")
    actionable: Mapped[bool] = mapped_column(Boolean, default=False)
    approval_id: Mapped[str] = mapped_column(String(40), default="", index=True)
    evidence: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    outcome: Mapped[str] = mapped_column(String(2000), default="")
    offboarding_run: Mapped[str] = mapped_column(String(64), default="")
    ticket: Mapped[str] = mapped_column(String(64), default="")


def _campaign(r: CampaignRow) -> Campaign:
    return Campaign(
        run=r.run,
        title=r.title,
        started_at=r.started_at,
        started_by=r.started_by,
        approve=r.approve,
        state=r.state,
        finished_at=r.finished_at,
        reports=dict(r.reports or {}),
        warnings=tuple(r.warnings or ()),
    )


def _item(r: CampaignItemRow) -> CampaignItem:
    data = {c.name: getattr(r, c.name) for c in CampaignItemRow.__table__.columns}
    data.pop("run")
    ev = data.pop("evidence")
    return CampaignItem(**data, evidence=Evidence.model_validate(ev) if ev else None)


def open_campaign(db: LedgerDB, campaign: Campaign, items: Sequence[CampaignItem]) -> None:
    """Record a campaign and its items; one recorded already (a resumed review) is kept."""
    try:
        with db.session() as s:
            if s.get(CampaignRow, campaign.run) is not None:
                return
            s.add(
                CampaignRow(
                    **campaign.model_dump(exclude={"warnings", "reports"}),
                    reports=dict(campaign.reports),
                    warnings=list(campaign.warnings),
                )
            )
            for i in items:
                data = i.model_dump(exclude={"evidence"})
                evidence = i.evidence.model_dump(mode="json") if i.evidence else None
                s.add(CampaignItemRow(run=campaign.run, **data, evidence=evidence))
    except IntegrityError:  # recorded at the same moment by a resumed run
        pass


def set_approvals(db: LedgerDB, run: str, approval_of: Mapping[str, str]) -> None:
    """Name the approval that decides each item (finding id → approval id)."""
    with db.session() as s:
        for row in s.scalars(select(CampaignItemRow).where(CampaignItemRow.run == run)):
            if row.finding_id in approval_of:
                row.approval_id = approval_of[row.finding_id]


def set_state(db: LedgerDB, run: str, state: str) -> None:
    """The campaign's state while it runs (deciding, applying)."""
    with db.session() as s:
        get_row(s, CampaignRow, run, what="campaign").state = state


def finish_campaign(
    db: LedgerDB,
    run: str,
    *,
    state: str,
    at: datetime,
    outcomes: Mapping[str, str],
    offboardings: Mapping[str, Mapping[str, str]],
    reports: Mapping[str, str],
) -> None:
    """The campaign ended in ``state``: each item's outcome and, for a removal, its
    offboarding run and ticket (``offboardings``: finding id → ``run_id``, ``ticket``)."""
    with db.session() as s:
        row = get_row(s, CampaignRow, run, what="campaign")
        row.state, row.finished_at, row.reports = state, at, dict(reports)
        for item in s.scalars(select(CampaignItemRow).where(CampaignItemRow.run == run)):
            item.outcome = outcomes.get(item.finding_id, item.outcome)[:2000]
            case = offboardings.get(item.finding_id, {})
            item.offboarding_run = case.get("run_id", item.offboarding_run)[:64]
            item.ticket = case.get("ticket", item.ticket)[:64]


def list_campaigns(db: LedgerDB) -> list[Campaign]:
    """Every campaign, newest first."""
    with db.sessions() as s:
        q = select(CampaignRow).order_by(CampaignRow.started_at.desc())
        return [_campaign(r) for r in s.scalars(q)]


def get_campaign(db: LedgerDB, run: str) -> tuple[Campaign, list[CampaignItem]]:
    """A campaign and its items in the review's order.

    Raises:
        KeyError: no campaign ``run``.
    """
    with db.sessions() as s:
        row = get_row(s, CampaignRow, run, what="campaign")
        q = (
            select(CampaignItemRow)
            .where(CampaignItemRow.run == run)
            .order_by(CampaignItemRow.position)
        )
        return _campaign(row), [_item(r) for r in s.scalars(q)]


def items_of_campaigns(db: LedgerDB, runs: Sequence[str]) -> dict[str, list[CampaignItem]]:
    """The items of each of ``runs`` (for the list of campaigns and their progress)."""
    out: dict[str, list[CampaignItem]] = {r: [] for r in runs}
    with db.sessions() as s:
        q = select(CampaignItemRow).where(CampaignItemRow.run.in_(list(runs)))
        for r in s.scalars(q.order_by(CampaignItemRow.position)):
            out[r.run].append(_item(r))
    return out
