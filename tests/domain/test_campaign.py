"""A review campaign's rules (domain.campaign): an item's decision read from its approval, the
campaign's progress, the report's rows, and the evidence about a person (the group union)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.campaign import (
    CampaignItem,
    Decided,
    decision_of,
    evidence_for,
    progress,
    report_rows,
    spelled_out,
)
from domain.models import Member, PermissionGroup, Role, RosterEntry
from domain.records import ApprovalRequest, ApprovalState, Decision

NOW = datetime(2026, 11, 1, tzinfo=UTC)
H = "a" * 64
SEC, ONCALL, OTHER = "sec.lead@acme.com", "sec.oncall@acme.com", "mallory@acme.com"


def said(
    who: str, what: str, *, plan: str = H, counted: bool = False, reason: str = ""
) -> Decision:
    return Decision(
        approver=who,
        decision=what,
        at=NOW,
        plan_hash=plan,
        channel="console",
        auth="oidc",
        counted=counted,
        reason=reason,
    )


def approval(state: ApprovalState, *decisions: Decision, aid: str = "apr-1") -> ApprovalRequest:
    return ApprovalRequest(
        id=aid,
        runbook="review",
        subject="frank.former@acme.com",
        requester="access-review",
        plan_hash=H,
        rule="access-review-removal",
        required=[[SEC, ONCALL]],
        state=state,
        created_at=NOW,
        expires_at=NOW + timedelta(hours=24),
        decisions=list(decisions),
    )


P, A, D = ApprovalState.PENDING, ApprovalState.APPROVED, ApprovalState.DENIED


@pytest.mark.parametrize(
    ("appr", "state", "settled", "by"),
    [
        pytest.param(None, Decided.UNDECIDED, False, [], id="not asked yet"),
        pytest.param(approval(P), Decided.UNDECIDED, False, [], id="nobody decided"),
        pytest.param(
            approval(P, said(SEC, "deny")), Decided.CERTIFIED, False, [SEC], id="deny untallied"
        ),
        pytest.param(
            approval(P, said(SEC, "approve")), Decided.REVOKED, False, [SEC], id="approve untallied"
        ),
        pytest.param(
            approval(P, said(OTHER, "deny")), Decided.UNDECIDED, False, [], id="not a seat holder"
        ),
        pytest.param(
            approval(P, said(SEC, "deny", plan="b" * 64)),
            Decided.UNDECIDED,
            False,
            [],
            id="an older plan",
        ),
        pytest.param(
            approval(P, said(SEC, "approve", reason="the requester or the subject cannot approve")),
            Decided.UNDECIDED,
            False,
            [],
            id="refused by the tally",
        ),
        pytest.param(
            approval(A, said(SEC, "approve", counted=True)),
            Decided.REVOKED,
            True,
            [SEC],
            id="approved",
        ),
        pytest.param(
            approval(D, said(ONCALL, "deny", counted=True)),
            Decided.CERTIFIED,
            True,
            [ONCALL],
            id="denied",
        ),
        pytest.param(approval(ApprovalState.EXPIRED), Decided.TIMED_OUT, True, [], id="timed out"),
    ],
)
def test_an_items_decision_is_read_from_its_approval(
    appr: ApprovalRequest | None, state: Decided, settled: bool, by: list[str]
) -> None:
    got = decision_of(appr)
    assert (got.state, got.settled, [d.approver for d in got.by]) == (state, settled, by)


def item(fid: str, *, aid: str = "", actionable: bool = True, position: int = 0) -> CampaignItem:
    return CampaignItem(
        finding_id=fid,
        position=position,
        kind="terminated_still_in_org" if actionable else "on_leave",
        subject=f"{fid}@acme.com",
        detail="terminated by HR",
        action="remove" if actionable else "review",
        actionable=actionable,
        approval_id=aid,
        outcome="offboard done" if aid == "apr-1" else "",
    )


def test_progress_and_report_rows_name_each_decision_and_who_made_it() -> None:
    items = [
        item("rv-b", aid="apr-2", position=1),
        item("rv-a", aid="apr-1", position=0),
        item("rv-c", actionable=False, position=2),
    ]
    approvals = {
        "apr-1": approval(A, said(SEC, "approve", counted=True), aid="apr-1"),
        "apr-2": approval(P, aid="apr-2"),
    }
    p = progress(items, approvals)
    assert (p.decided, p.total, p.percent) == (1, 2, 50)
    rows = report_rows(items, approvals)
    assert [(r["id"], r["decision"], r["decided_by"]) for r in rows] == [
        ("rv-a", "revoked", SEC),
        ("rv-b", "undecided", ""),
        ("rv-c", "reported", ""),
    ]
    assert rows[0]["channel"] == "console" and rows[0]["authenticated_by"] == "oidc"
    assert rows[0]["decided_at"] == NOW.isoformat(timespec="seconds")
    assert rows[0]["outcome"] == "offboard done"


def test_the_evidence_names_each_group_and_the_role_it_gives() -> None:
    gina = Member(
        email="gina.groups@acme.com", org_role=Role.MEMBER, last_login_at=NOW, groups=("g1",)
    )
    groups = [
        PermissionGroup(
            id="g1",
            name="Prod Managers",
            members=("GINA.groups@acme.com",),
            projects={"Production": Role.MANAGER},
        ),
        PermissionGroup(
            id="g2",
            name="Analysts Production",
            members=("gina.groups@acme.com",),
            projects={"Production": Role.MEMBER},
        ),
        PermissionGroup(id="g3", name="Elsewhere", members=("x@acme.com",)),
    ]
    ev = evidence_for(
        "gina.groups@acme.com",
        org="",
        member=gina,
        entry=RosterEntry(email="gina.groups@acme.com", name="Gina", status="active"),
        groups=groups,
        individual={"Production": Role.VIEWER},
        invitation=None,
    )
    assert ev.groups == ("Analysts Production", "Prod Managers")  # names, not the org's ids
    assert [(g.group, g.project, g.role) for g in ev.group_grants] == [
        ("Analysts Production", "Production", "member"),
        ("Prod Managers", "Production", "manager"),
    ]
    assert ev.individual == {"Production": "viewer"}
    assert (ev.on_roster, ev.hr_status, ev.member_status) == (True, "active", "joined")
    nobody = evidence_for(
        "ghost@acme.com",
        org="qa",
        member=None,
        entry=None,
        groups=groups,
        individual=None,
        invitation=None,
    )
    assert (nobody.on_roster, nobody.member_status, nobody.groups) == (False, "", ())


def test_a_look_alike_address_is_spelled_out() -> None:
    assert spelled_out("j\u043en.smith@acme.com") == "j\\u043en.smith@acme.com"
    assert spelled_out("jon.smith@acme.com") == ""
