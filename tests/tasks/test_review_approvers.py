"""An access review's approval stands for an offboarding only when it is an approved review
that covers that person: anything else is refused before a single step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from domain.records import ApprovalRequest, ApprovalState, Decision
from ledger import open_ledger
from ledger.approvals import add_decision, create_approval
from tasks.offboard import review_approvers

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
    db = open_ledger(f"sqlite:///{tmp_path / 'l.db'}")
    _approval(
        db,
        "apr-item",
        runbook="review",
        subject="frank.former@acme.com",
        state=ApprovalState.APPROVED,
    )
    _approval(
        db,
        "apr-bulk",
        runbook="review",
        subject="access-review 2026-11-01",
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
    assert review_approvers(db, "apr-item", "frank.former@acme.com") == ["sec.lead@acme.com"]
    assert review_approvers(db, "apr-bulk", "frank.former@acme.com") == ["sec.lead@acme.com"]
    for aid, who in [
        ("apr-item", "dana.sole@acme.com"),
        ("apr-pending", "frank.former@acme.com"),
        ("apr-onboard", "frank.former@acme.com"),
        ("apr-none", "frank.former@acme.com"),
    ]:
        with pytest.raises(ValueError):
            review_approvers(db, aid, who)  # type: ignore[arg-type]
