"""The items an access review's approval covers, each usable once, for a limited time.

A review's removals are approved by security as *items* (one finding: this person, in this org,
for this reason). The review records each approved item here before it starts the offboardings;
an offboarding that stands on a review approval must name an item recorded for that approval and
that person, approved recently, and not used by another case. Naming an approval id alone grants
nothing: the item is what was approved.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import JSON, String
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from ledger.db import LedgerBase, LedgerDB


class ReviewItemRow(LedgerBase):
    __tablename__ = "review_items"

    approval_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    item_id: Mapped[str] = mapped_column(String(80), primary_key=True)
    review_run: Mapped[str] = mapped_column(String(64), default="")
    subject: Mapped[str] = mapped_column(String(320), index=True)
    org: Mapped[str] = mapped_column(String(31), default="")
    action: Mapped[str] = mapped_column(String(32))
    approved_at: Mapped[datetime]
    approvers: Mapped[list[str]] = mapped_column(JSON, default=list)
    # The offboarding cases that used it, one per org ("<org>#<case id>").
    claims: Mapped[list[str]] = mapped_column(JSON, default=list)


class ReviewItem(BaseModel):
    """One approved item of an access review."""

    approval_id: str
    item_id: str
    review_run: str = ""
    subject: str
    org: str = ""
    action: str
    approved_at: datetime
    approvers: list[str]
    claims: list[str] = []


class ItemRefused(ValueError):
    """The review item does not stand for this offboarding (the message says why)."""


def record_items(db: LedgerDB, items: Sequence[ReviewItem]) -> None:
    """Record approved items; an item recorded already (a resumed review) is kept as it was."""
    for item in items:
        try:
            with db.session() as s:
                if s.get(ReviewItemRow, (item.approval_id, item.item_id)) is None:
                    s.add(ReviewItemRow(**item.model_dump()))
        except IntegrityError:  # recorded at the same moment by a resumed run
            pass


def claim_item(
    db: LedgerDB,
    approval_id: str,
    item_id: str,
    *,
    subject: str,
    org: str,
    case: str,
    now: datetime,
    max_age: timedelta,
    check_only: bool = False,
) -> ReviewItem:
    """The approved item ``item_id`` of review approval ``approval_id``, claimed for ``case``
    (the offboarding's case in ``org``): it must be about ``subject`` in ``org`` (a main-org
    item covers every org), approved at most ``max_age`` before ``now``, and not claimed by
    another case in that org. The same case claims it again (a resumed run). ``check_only``:
    the same checks, nothing claimed (before an offboarding opens its case and ticket).

    Raises:
        ItemRefused: no such item, about someone or somewhere else, too old, or used already.
    """
    claim = f"{org}#{case}"
    with db.session() as s:
        row = s.get(ReviewItemRow, (approval_id, item_id), with_for_update=True)
        if row is None:
            raise ItemRefused(
                f"approval {approval_id} has no approved review item {item_id or '(none)'}"
            )
        if row.subject != subject.lower() or row.org not in ("", org):
            where = f"{row.subject} ({row.org or 'main org'})"
            raise ItemRefused(f"review item {item_id} of {approval_id} is about {where}")
        claims = list(row.claims or [])
        if claim in claims:
            return ReviewItem.model_validate(row, from_attributes=True)
        used = [c for c in claims if c.partition("#")[0] == org]
        if used:
            raise ItemRefused(
                f"review item {item_id} of {approval_id} was used already (case {used[0]})"
            )
        if now - _aware(row.approved_at, now) > max_age:
            raise ItemRefused(
                f"review approval {approval_id} is from {row.approved_at:%Y-%m-%d}: older than "
                f"{max_age.days} days, ask again"
            )
        if not check_only:
            row.claims = [*claims, claim]
        return ReviewItem.model_validate(row, from_attributes=True)


def _aware(at: datetime, like: datetime) -> datetime:
    # SQLite returns naive datetimes; every time the ledger stores is UTC.
    return at.replace(tzinfo=like.tzinfo) if at.tzinfo is None else at
