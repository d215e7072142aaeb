"""Review items (ledger/reviews.py): an approved item stands for one offboarding per org, of the
person and org it names, for ``max_age``; and the additive column migration of an older ledger."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from ledger import LedgerDB, open_ledger
from ledger.reviews import ItemRefused, ReviewItem, claim_item, record_items

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
DAYS14 = timedelta(days=14)


def _item(**kw: object) -> ReviewItem:
    data: dict[str, object] = {
        "approval_id": "apr-1",
        "item_id": "f-1",
        "subject": "frank@x.com",
        "action": "remove",
        "approved_at": T0,
        "approvers": ["sec@x.com"],
    }
    return ReviewItem.model_validate(data | kw)


def claim(
    db: LedgerDB, *, case: str = "1", org: str = "", at: datetime = T0, **kw: str
) -> ReviewItem:
    args = {"approval_id": "apr-1", "item_id": "f-1", "subject": "frank@x.com"} | kw
    return claim_item(
        db,
        args["approval_id"],
        args["item_id"],
        subject=args["subject"],
        org=org,
        case=case,
        now=at,
        max_age=DAYS14,
    )


def test_an_item_stands_once_per_org_for_its_person_while_recent(ledger: LedgerDB) -> None:
    record_items(ledger, [_item(), _item(item_id="f-2", subject="qa@x.com", org="qa")])
    record_items(ledger, [_item(approvers=["someone@else.com"])])  # recorded already: kept
    assert claim(ledger).approvers == ["sec@x.com"]
    assert claim(ledger).claims == ["#1"]  # the same case again: a resumed run
    with pytest.raises(ItemRefused, match="used already"):
        claim(ledger, case="2")
    assert claim(ledger, case="3", org="qa").claims == ["#1", "qa#3"]  # a main-org item: every org
    with pytest.raises(ItemRefused, match=r"is about frank@x\.com"):
        claim(ledger, subject="ceo@x.com")
    with pytest.raises(ItemRefused, match="no approved review item f-9"):
        claim(ledger, item_id="f-9")
    with pytest.raises(ItemRefused, match=r"is about qa@x.com \(qa\)"):
        claim(ledger, item_id="f-2", subject="qa@x.com", org="")
    with pytest.raises(ItemRefused, match="older than 14 days"):
        claim(ledger, item_id="f-2", subject="qa@x.com", org="qa", at=T0 + timedelta(days=15))
    assert claim(ledger, item_id="f-2", subject="qa@x.com", org="qa", at=T0 + DAYS14).claims


def test_an_older_ledger_gains_the_new_columns_in_place(ledger_url: str) -> None:
    db = open_ledger(ledger_url)
    with db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE approval_decisions DROP COLUMN auth"))
    db.dispose()
    again = open_ledger(ledger_url)  # what a newer Handover does at start
    with again.engine.connect() as conn:
        cols = [r[0] for r in conn.execute(text("SELECT auth FROM approval_decisions"))]
    assert cols == []
    again.dispose()
