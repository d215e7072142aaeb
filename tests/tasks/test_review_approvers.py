"""An access review's approval stands for an offboarding only when it is an approved review
and the item named is one it approved about that person, recent and unused: anything else is
refused before a single step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from approvals.policy import load_policy
from domain.records import ApprovalRequest, ApprovalState, Decision
from ledger import open_ledger
from ledger.approvals import add_decision, create_approval
from ledger.reviews import ReviewItem, record_items
from tasks.offboard import review_approvers
from tests.anchors import anchor_in

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def _approval(db: object, aid: str, *, runbook: str, subject: str, state: ApprovalState) -> None:
    create_approval(
        db,
        ApprovalRequest(  # type: ignore[arg-type]
            id=aid,
            runbook=runbook,
            subject=subject,
            requester="access-review",
            plan_hash="h" * 64,
            rule="access-review-removal",
            created_at=NOW,
            expires_at=NOW + timedelta(hours=24),
            state=state,
        ),
    )
    add_decision(
        db,
        aid,
        Decision(
            approver="sec.lead@acme.com",
            decision="approve",  # type: ignore[arg-type]
            at=NOW,
            plan_hash="h" * 64,
            counted=True,
        ),
    )


def test_only_an_approved_review_covering_the_person_stands(tmp_path: Path) -> None:
    db = open_ledger(f"sqlite:///{tmp_path / 'l.db'}", anchor=anchor_in(tmp_path))
    _approval(
        db,
        "apr-item",
        runbook="review",
        subject="frank.former@acme.com",
        state=ApprovalState.APPROVED,
    )
    _approval(
        db,
        "apr-pending",
        runbook="review",
        subject="frank.former@acme.com",
        state=ApprovalState.PENDING,
    )
    _approval(
        db,
        "apr-onboard",
        runbook="onboard",
        subject="frank.former@acme.com",
        state=ApprovalState.APPROVED,
    )
    for aid in ("apr-item", "apr-pending", "apr-onboard"):
        record_items(
            db,
            [
                ReviewItem(
                    approval_id=aid,
                    item_id="f-frank",
                    subject="frank.former@acme.com",
                    action="remove",
                    approved_at=NOW,
                    approvers=["sec.lead@acme.com"],
                )
            ],
        )
    # What review_approvers reads of a runtime: its ledger, clock and policy.
    rt = SimpleNamespace(ledger=db, clock=lambda: NOW + timedelta(days=1), policy=load_policy())

    def approvers(aid: str, who: str, item: str = "f-frank", case: int = 1) -> list[str]:
        return review_approvers(rt, aid, item, email=who, org="", case_id=case)  # type: ignore[arg-type]

    assert approvers("apr-item", "frank.former@acme.com") == ["sec.lead@acme.com"]
    for aid, who, item, case in [
        ("apr-item", "dana.sole@acme.com", "f-frank", 2),  # someone else
        ("apr-item", "frank.former@acme.com", "f-other", 2),  # no such item
        ("apr-item", "frank.former@acme.com", "f-frank", 2),  # used by case 1
        ("apr-pending", "frank.former@acme.com", "f-frank", 1),
        ("apr-onboard", "frank.former@acme.com", "f-frank", 1),
        ("apr-none", "frank.former@acme.com", "f-frank", 1),
    ]:
        with pytest.raises(ValueError):
            approvers(aid, who, item, case)
    assert approvers("apr-item", "frank.former@acme.com") == ["sec.lead@acme.com"]  # case 1 again
