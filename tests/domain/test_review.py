"""The access review's rules (domain.review), as a table of cases."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from domain.models import Invitation, Member, PermissionGroup, ProjectGrant, Role, RosterEntry
from domain.review import Kind, Recommendation, finding_id, review_findings

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)
ADMIN = Member(email="root@acme.com", org_role=Role.ADMIN, last_login_at=NOW)


def member(email: str, *, days: float | None = 1, status: str = "joined", **kw: Any) -> Member:
    return Member(
        email=email,
        org_role=kw.pop("org_role", Role.MEMBER),
        status=status,
        last_login_at=None if days is None else NOW - timedelta(days=days),
        invited_at=NOW - timedelta(days=kw.pop("invited_days", 400)),
        **kw,
    )


def hr(email: str, status: str = "active", **kw: Any) -> RosterEntry:
    return RosterEntry(email=email, name=email.split("@")[0], status=status, **kw)


def invite(email: str, days: float, state: str = "pending") -> Invitation:
    sent = NOW - timedelta(days=days)
    return Invitation(
        email=email,
        state=state,
        sent_at=sent,
        last_sent_at=sent,
        expires_at=sent + timedelta(days=14),
        invited_by="it@acme.com",
    )


def flagged(
    members: list[Member],
    roster: list[RosterEntry],
    invitations: list[Invitation] = (),  # type: ignore[assignment]
    **kw: Any,
) -> set[tuple[str, str, str]]:
    out = review_findings([ADMIN, *members], [hr(ADMIN.email), *roster], invitations, NOW, **kw)
    return {(f.kind.value, f.subject, f.action.value) for f in out if f.kind is not Kind.ADMINS}


CASES = [
    # id, members, roster, invitations, kwargs, expected (kind, subject, action)
    ("active_and_recent", [member("a@acme.com")], [hr("a@acme.com")], [], {}, set()),
    (
        "terminated_joined",
        [member("t@acme.com")],
        [hr("t@acme.com", "terminated", end_date=date(2025, 5, 1))],
        [],
        {},
        {("terminated_still_in_org", "t@acme.com", "remove")},
    ),
    (
        "terminated_only_invited",
        [member("t@acme.com", status="pending", days=None, invited_days=2)],
        [hr("t@acme.com", "terminated")],
        [invite("t@acme.com", 2)],
        {},
        {("terminated_still_in_org", "t@acme.com", "revoke_invitation")},
    ),
    (
        "unknown_joined",
        [member("x@gmail.com")],
        [],
        [],
        {},
        {("unknown_to_hr", "x@gmail.com", "remove")},
    ),
    (
        "unknown_pending_partner_not_flagged",
        [member("p@partner.io", status="pending", days=None, invited_days=3)],
        [],
        [invite("p@partner.io", 3)],
        {},
        set(),
    ),
    (
        "unknown_pending_lookalike",
        [member("j\u043en.smith@acme.com", status="pending", days=None, invited_days=2)],
        [hr("jon.smith@acme.com")],
        [invite("j\u043en.smith@acme.com", 2)],
        {},
        {("unknown_to_hr", "j\u043en.smith@acme.com", "revoke_invitation")},
    ),
    (
        "inactive_at_threshold",
        [member("i@acme.com", days=90)],
        [hr("i@acme.com")],
        [],
        {},
        {("inactive", "i@acme.com", "remove")},
    ),
    ("below_threshold", [member("m@acme.com", days=45)], [hr("m@acme.com")], [], {}, set()),
    (
        "custom_threshold",
        [member("m@acme.com", days=45)],
        [hr("m@acme.com")],
        [],
        {"inactive_days": 30},
        {("inactive", "m@acme.com", "remove")},
    ),
    (
        "never_logged_in_counts_from_invitation",
        [member("n@acme.com", days=None, invited_days=120)],
        [hr("n@acme.com")],
        [],
        {},
        {("inactive", "n@acme.com", "remove")},
    ),
    (
        "on_leave_and_inactive_reviewed_not_removed",
        [member("l@acme.com", days=100)],
        [hr("l@acme.com", "leave")],
        [],
        {},
        {("on_leave", "l@acme.com", "review")},
    ),
    (
        "on_leave_but_active",
        [member("l@acme.com", days=3)],
        [hr("l@acme.com", "leave")],
        [],
        {},
        set(),
    ),
    (
        "terminated_and_inactive_is_one_finding",
        [member("t@acme.com", days=200)],
        [hr("t@acme.com", "terminated")],
        [],
        {},
        {("terminated_still_in_org", "t@acme.com", "remove")},
    ),
    (
        "stale_invitation",
        [member("e@partner.io", status="pending", days=None, invited_days=20)],
        [],
        [invite("e@partner.io", 20, "expired")],
        {},
        {("stale_invitation", "e@partner.io", "revoke_invitation")},
    ),
    ("fresh_invitation", [], [], [invite("f@acme.com", 13)], {}, set()),
    ("accepted_old_invitation", [], [], [invite("o@acme.com", 300, "accepted")], {}, set()),
]


@pytest.mark.parametrize(
    ("members", "roster", "invitations", "kw", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_cases(
    members: list[Member],
    roster: list[RosterEntry],
    invitations: list[Invitation],
    kw: dict[str, Any],
    expected: set[tuple[str, str, str]],
) -> None:
    assert flagged(members, roster, invitations, **kw) == expected


# ---------------------------------------------------------------------------- group union
ANALYSTS = PermissionGroup(
    id="1", name="Analysts", members=("g@acme.com", "o@acme.com"), projects={"Prod": Role.MEMBER}
)
MANAGERS = PermissionGroup(
    id="2", name="Prod Managers", members=("g@acme.com",), projects={"Prod": Role.MANAGER}
)
IDP_VIEWERS = PermissionGroup(
    id="3", name="idp-viewers", members=("g@acme.com", "o@acme.com"), projects={"Prod": Role.VIEWER}
)
GROUPS = [ANALYSTS, MANAGERS, IDP_VIEWERS]


def grant(role: Role, *groups: str, individual: bool = True) -> ProjectGrant:
    src = (("individual",) if individual else ()) + tuple(f"group:{g}" for g in groups)
    return ProjectGrant(project="Prod", role=role, sources=src)


UNION = [
    (
        "two_raising_groups_flagged",
        member("g@acme.com", projects=(grant(Role.MANAGER, "Analysts", "Prod Managers"),)),
        {"g@acme.com": {"Prod": Role.VIEWER}},
        "Prod Managers",
    ),
    (
        "no_individual_grant",
        member(
            "g@acme.com",
            projects=(grant(Role.MANAGER, "Analysts", "Prod Managers", individual=False),),
        ),
        {},
        "Prod Managers",
    ),
    (
        "individual_already_manager",
        member("g@acme.com", projects=(grant(Role.MANAGER, "Analysts", "Prod Managers"),)),
        {"g@acme.com": {"Prod": Role.MANAGER}},
        None,
    ),
    (
        "one_raising_group_and_a_viewer_group",
        member("o@acme.com", projects=(grant(Role.MEMBER, "Analysts", "idp-viewers"),)),
        {"o@acme.com": {"Prod": Role.VIEWER}},
        None,
    ),
]


@pytest.mark.parametrize(
    ("m", "individual", "group"), [c[1:] for c in UNION], ids=[c[0] for c in UNION]
)
def test_group_union(m: Member, individual: dict[str, dict[str, Role]], group: str | None) -> None:
    out = review_findings([m], [hr(m.email)], [], NOW, groups=GROUPS, individual_roles=individual)
    over = [f for f in out if f.kind is Kind.OVER_PRIVILEGED]
    if group is None:
        assert over == []
    else:
        assert len(over) == 1
        f = over[0]
        assert (f.group, f.project, f.action) == (group, "Prod", Recommendation.REVIEW)
        assert f"through group '{group}'" in f.detail


# ---------------------------------------------------------------------------- admins, ids
def test_admins_one_informational_finding() -> None:
    raj = member("raj@acme.com", org_role=Role.ADMIN)
    pending_admin = member("p@acme.com", org_role=Role.ADMIN, status="pending", days=None)
    out = review_findings(
        [ADMIN, raj, pending_admin],
        [hr(ADMIN.email), hr("raj@acme.com"), hr("p@acme.com")],
        [],
        NOW,
    )
    admins = [f for f in out if f.kind is Kind.ADMINS]
    assert len(admins) == 1
    assert admins[0].action is Recommendation.NONE
    assert admins[0].detail == "2 org Admins: raj@acme.com, root@acme.com"


def test_ids_are_stable_and_distinct() -> None:
    args = (
        [member("x@gmail.com"), member("t@acme.com")],
        [hr("t@acme.com", "terminated")],
        [],
        NOW,
    )
    a, b = review_findings(*args), review_findings(*args)
    assert [f.id for f in a] == [f.id for f in b]
    assert len({f.id for f in a}) == len(a)
    assert a[-1].id == finding_id(a[-1].kind, a[-1].subject.upper())  # case-folded


def test_removal_reasons() -> None:
    out = review_findings(
        [member("x@gmail.com"), member("t@acme.com"), member("i@acme.com", days=200)],
        [hr("t@acme.com", "terminated"), hr("i@acme.com")],
        [],
        NOW,
    )
    reasons = {f.subject: f.reason for f in out if f.action is Recommendation.REMOVE}
    assert reasons == {
        "x@gmail.com": "termination",
        "t@acme.com": "termination",
        "i@acme.com": "inactivity",
    }


def test_bad_threshold() -> None:
    with pytest.raises(ValueError, match="inactive_days"):
        review_findings([], [], [], NOW, inactive_days=0)
