"""The access review's rules (domain/review.py), each as its own small table of cases.

``test_review.py`` checks whole reviews; here each rule alone, with one person at a time against
a roster of acme.com people.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from domain.models import Invitation, Member, PermissionGroup, ProjectGrant, Role, RosterEntry
from domain.review import (
    ADMINS_SUBJECT,
    Finding,
    Kind,
    Recommendation,
    admins_finding,
    finding_id,
    idle_finding,
    over_privileged_findings,
    review_order,
    roster_finding,
    stale_invitation_findings,
    terminated_finding,
    unknown_finding,
)

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)


def member(email: str = "m@acme.com", *, days: float | None = 1, **kw: Any) -> Member:
    base: dict[str, Any] = {
        "email": email,
        "org_role": Role.MEMBER,
        "last_login_at": None if days is None else NOW - timedelta(days=days),
        "invited_at": NOW - timedelta(days=400),
    }
    return Member(**{**base, **kw})


def pending(email: str = "m@acme.com") -> Member:
    return member(email, days=None, status="pending", invited_at=NOW - timedelta(days=2))


def hr(email: str = "m@acme.com", status: str = "active", **kw: Any) -> RosterEntry:
    return RosterEntry(email=email, name=email.split("@")[0], status=status, **kw)


def invite(days: float, state: str = "pending", **kw: Any) -> Invitation:
    sent = NOW - timedelta(days=days)
    base: dict[str, Any] = {
        "email": "i@acme.com",
        "state": state,
        "sent_at": sent,
        "last_sent_at": sent,
        "expires_at": sent + timedelta(days=14),
    }
    return Invitation(**{**base, **kw})


def brief(f: Finding | None) -> tuple[str, str, str, str] | None:
    return None if f is None else (f.kind.value, f.action.value, f.reason, f.detail)


# --- what the roster says ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("m", "entry", "expected"),
    [
        pytest.param(
            member(),
            hr(status="terminated", end_date=date(2025, 5, 1)),
            ("remove", "termination", "terminated by HR on 2025-05-01; still in the org"),
            id="joined",
        ),
        pytest.param(
            pending(),
            hr(status="terminated"),
            ("revoke_invitation", "", "terminated by HR; still invited (pending)"),
            id="only-invited",
        ),
    ],
)
def test_terminated_finding(m: Member, entry: RosterEntry, expected: tuple[str, ...]) -> None:
    f = terminated_finding(m, entry)
    assert (f.kind, f.subject) == (Kind.TERMINATED, m.email)
    assert (f.action.value, f.reason, f.detail) == expected


LIKE = "j\u043en.smith@acme.com"  # a Cyrillic o


@pytest.mark.parametrize(
    ("m", "known", "expected"),
    [
        pytest.param(
            member("x@gmail.com"),
            {"jon.smith@acme.com"},
            ("unknown_to_hr", "remove", "termination", "a member in the org, not on the HR roster"),
            id="joined",
        ),
        pytest.param(
            member("x@gmail.com", org_role=None),
            set(),
            ("unknown_to_hr", "remove", "termination", "a member in the org, not on the HR roster"),
            id="joined-role-unknown",
        ),
        pytest.param(
            member(LIKE, org_role=Role.ADMIN),
            {"jon.smith@acme.com", LIKE},
            (
                "unknown_to_hr",
                "remove",
                "termination",
                "a admin in the org, not on the HR roster; looks like jon.smith@acme.com",
            ),
            id="joined-lookalike-not-itself",
        ),
        pytest.param(pending("p@partner.io"), {"jon.smith@acme.com"}, None, id="pending-partner"),
        pytest.param(
            pending(LIKE),
            {"jon.smith@acme.com"},
            (
                "unknown_to_hr",
                "revoke_invitation",
                "",
                "a pending invitation, not on the HR roster; looks like jon.smith@acme.com",
            ),
            id="pending-lookalike",
        ),
    ],
)
def test_unknown_finding(m: Member, known: set[str], expected: tuple[str, ...] | None) -> None:
    assert brief(unknown_finding(m, known)) == expected


@pytest.mark.parametrize(
    ("m", "entry", "inactive_days", "expected"),
    [
        pytest.param(member(days=89), hr(), 90, None, id="below-threshold"),
        pytest.param(
            member(days=90),
            hr(),
            90,
            ("inactive", "remove", "inactivity", "last login 90 days ago (threshold 90 days)"),
            id="at-threshold",
        ),
        pytest.param(
            member(days=None, invited_at=NOW - timedelta(days=120)),
            hr(),
            90,
            ("inactive", "remove", "inactivity", "never logged in (threshold 90 days)"),
            id="never-logged-in-from-invitation",
        ),
        pytest.param(member(days=None, invited_at=None), hr(), 1, None, id="no-date-at-all"),
        pytest.param(
            member(days=100),
            hr(status="leave"),
            90,
            (
                "on_leave",
                "review",
                "",
                "on leave per HR and last login 100 days ago: not removed; confirm the return",
            ),
            id="on-leave",
        ),
        pytest.param(member(days=3), hr(status="leave"), 90, None, id="on-leave-but-active"),
        pytest.param(pending(), hr(), 1, None, id="invitee-never-idle"),
    ],
)
def test_idle_finding(
    m: Member, entry: RosterEntry, inactive_days: int, expected: tuple[str, ...] | None
) -> None:
    assert brief(idle_finding(m, entry, now=NOW, inactive_days=inactive_days)) == expected


@pytest.mark.parametrize(
    ("m", "entry", "kind"),
    [
        pytest.param(member(days=200), hr(status="terminated"), Kind.TERMINATED, id="terminated"),
        pytest.param(member(days=200), None, Kind.UNKNOWN, id="unknown"),
        pytest.param(member(days=200), hr(), Kind.INACTIVE, id="inactive"),
        pytest.param(member(days=200), hr(status="leave"), Kind.ON_LEAVE, id="on-leave"),
        pytest.param(member(), hr(), None, id="nothing"),
    ],
)
def test_roster_finding_gives_at_most_one(
    m: Member, entry: RosterEntry | None, kind: Kind | None
) -> None:
    f = roster_finding(m, entry, now=NOW, known=set(), inactive_days=90)
    assert (f.kind if f else None) == kind


# --- the group-union trap ------------------------------------------------------------------------
ANALYSTS = PermissionGroup(
    id="1", name="Analysts", members=("g@acme.com",), projects={"Prod": Role.MEMBER}
)
MANAGERS = PermissionGroup(
    id="2", name="Prod Managers", members=("G@acme.com",), projects={"Prod": Role.MANAGER}
)
VIEWERS = PermissionGroup(
    id="3", name="viewers", members=("g@acme.com",), projects={"Prod": Role.VIEWER}
)
OTHERS = PermissionGroup(
    id="4", name="Others", members=("o@acme.com",), projects={"Prod": Role.ADMIN}
)


def grant(role: Role, *, individual: bool = True) -> ProjectGrant:
    return ProjectGrant(project="Prod", role=role, sources=("individual",) if individual else ())


def detail(mine: str) -> str:
    return (
        "effective manager in Prod through group 'Prod Managers' "
        f"({mine}; also in Analysts (member))"
    )


@pytest.mark.parametrize(
    ("held", "groups", "individual", "expected"),
    [
        pytest.param(
            grant(Role.MANAGER),
            [ANALYSTS, MANAGERS],
            {"Prod": Role.VIEWER},
            detail("individual grant viewer"),
            id="two-raising-groups",
        ),
        pytest.param(
            grant(Role.MANAGER),
            [ANALYSTS, MANAGERS],
            None,
            detail("individual grant of unknown role"),
            id="own-grant-unknown",
        ),
        pytest.param(
            grant(Role.MANAGER, individual=False),
            [ANALYSTS, MANAGERS],
            {"Prod": Role.ADMIN},  # no individual source: not the member's own grant
            detail("no individual grant"),
            id="no-individual-grant",
        ),
        pytest.param(
            grant(Role.MANAGER), [ANALYSTS, MANAGERS], {"Prod": Role.MEMBER}, None, id="one-raises"
        ),
        pytest.param(
            grant(Role.MEMBER), [ANALYSTS, VIEWERS], {"Prod": Role.VIEWER}, None, id="viewer-group"
        ),
        pytest.param(
            grant(Role.ADMIN), [ANALYSTS, MANAGERS], {"Prod": Role.VIEWER}, None, id="other-source"
        ),
        pytest.param(
            grant(Role.ADMIN), [ANALYSTS, OTHERS], {"Prod": Role.VIEWER}, None, id="not-a-member"
        ),
    ],
)
def test_over_privileged_findings(
    held: ProjectGrant,
    groups: list[PermissionGroup],
    individual: dict[str, Role] | None,
    expected: str | None,
) -> None:
    m = member("g@acme.com", projects=(held,))
    found = over_privileged_findings(m, groups, individual=individual)
    assert [f.detail for f in found] == ([] if expected is None else [expected])
    for f in found:
        assert (f.kind, f.project, f.group) == (Kind.OVER_PRIVILEGED, "Prod", "Prod Managers")
        assert f.action is Recommendation.REVIEW


# --- admins, invitations, order ------------------------------------------------------------------
@pytest.mark.parametrize(
    ("people", "detail"),
    [
        pytest.param([], "0 org Admins: none", id="none"),
        pytest.param(
            [member("r@acme.com", org_role=Role.ADMIN)], "1 org Admin: r@acme.com", id="one"
        ),
        pytest.param(
            [
                member("z@acme.com", org_role=Role.ADMIN),
                member("a@acme.com", org_role=Role.ADMIN),
                member("p@acme.com", org_role=Role.ADMIN, status="pending"),
                member("m@acme.com"),
            ],
            "2 org Admins: a@acme.com, z@acme.com",
            id="joined-only-sorted",
        ),
        pytest.param(
            [member("r@acme.com", org_role=Role.ADMIN), member("u@acme.com", org_role=None)],
            "1 org Admin: r@acme.com (the org role of 1 member(s) is unknown)",
            id="some-roles-unknown",
        ),
    ],
)
def test_admins_finding(people: list[Member], detail: str) -> None:
    f = admins_finding(people)
    assert f is not None
    assert (f.kind, f.subject, f.action, f.detail) == (
        Kind.ADMINS,
        ADMINS_SUBJECT,
        Recommendation.NONE,
        detail,
    )


@pytest.mark.parametrize(
    ("inv", "detail"),
    [
        pytest.param(invite(14), None, id="fourteen-days-not-yet"),
        pytest.param(
            invite(15, invited_by="it@acme.com"),
            "invitation pending, first sent 15 days ago (2025-05-17) by it@acme.com",
            id="pending",
        ),
        pytest.param(
            invite(20, "expired"),
            "invitation expired, first sent 20 days ago (2025-05-12) by unknown",
            id="expired",
        ),
        pytest.param(invite(300, "accepted"), None, id="accepted"),
        pytest.param(invite(300, "revoked"), None, id="revoked"),
    ],
)
def test_stale_invitation_findings(inv: Invitation, detail: str | None) -> None:
    found = stale_invitation_findings([inv], NOW)
    assert [f.detail for f in found] == ([] if detail is None else [detail])
    assert all(f.action is Recommendation.REVOKE_INVITATION for f in found)


def finding(kind: Kind, subject: str, project: str = "") -> Finding:
    return Finding(
        id=finding_id(kind, subject, project),
        kind=kind,
        subject=subject,
        detail="",
        action=Recommendation.NONE,
        project=project,
    )


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        pytest.param(
            [finding(Kind.STALE_INVITATION, "a@x.io"), finding(Kind.ADMINS, ADMINS_SUBJECT)],
            [(Kind.ADMINS, ADMINS_SUBJECT, ""), (Kind.STALE_INVITATION, "a@x.io", "")],
            id="admins-first",
        ),
        pytest.param(
            [
                finding(Kind.OVER_PRIVILEGED, "b@x.io", "Stage"),
                finding(Kind.OVER_PRIVILEGED, "b@x.io", "Prod"),
                finding(Kind.INACTIVE, "b@x.io"),
                finding(Kind.TERMINATED, "c@x.io"),
            ],
            [
                (Kind.INACTIVE, "b@x.io", ""),
                (Kind.OVER_PRIVILEGED, "b@x.io", "Prod"),
                (Kind.OVER_PRIVILEGED, "b@x.io", "Stage"),
                (Kind.TERMINATED, "c@x.io", ""),
            ],
            id="subject-kind-project",
        ),
    ],
)
def test_review_order(found: list[Finding], expected: list[tuple[Kind, str, str]]) -> None:
    assert [(f.kind, f.subject, f.project) for f in review_order(found)] == expected


# --- a SCIM-only org and the console's Members export --------------------------------------------
def test_a_member_whose_status_is_unknown_and_terminated_is_removed() -> None:
    """SCIM does not say who has joined: a terminated person it lists is removed (the
    offboarding handles an invitee too), never left as an invitation to revoke."""
    from domain.review import terminated_finding

    scim = Member(email="t@acme.com", status="unknown")
    entry = RosterEntry(email="t@acme.com", name="T", status="terminated")
    found = terminated_finding(scim, entry)
    assert (found.action.value, found.reason) == ("remove", "termination")


def test_the_members_export_adds_roles_status_and_logins() -> None:
    from domain.review import NO_EXPORT, ConsoleRecord, with_console_export

    scim = [Member(email=e, status="unknown") for e in ("a@acme.com", "b@acme.com", "c@acme.com")]
    assert with_console_export(scim, None) == (scim, [NO_EXPORT])
    login = NOW - timedelta(days=100)
    export = [
        ConsoleRecord(email="a@acme.com", org_role=Role.ADMIN, last_login=login),
        ConsoleRecord(email="b@acme.com", org_role=Role.VIEWER, status="pending"),
        ConsoleRecord(email="gone@acme.com", org_role=Role.VIEWER),
    ]
    members, warnings = with_console_export(scim, export)
    a, b, c = members
    assert (a.org_role, a.status, a.last_login_at) == (Role.ADMIN, "joined", login)
    assert (b.org_role, b.status) == (Role.VIEWER, "pending")
    assert (c.org_role, c.status) == (None, "unknown")  # not exported: as SCIM says
    assert any(
        "1 member(s) are not in the members export" in w and "c@acme.com" in w for w in warnings
    )
    assert any("1 address(es) of the export are not members" in w for w in warnings)


def test_no_admins_finding_where_the_org_says_nobodys_role() -> None:
    """SCIM without the console's export: "0 org Admins" would be a claim nobody checked."""
    assert admins_finding([Member(email="u@acme.com", status="unknown")]) is None


def test_someone_unknown_to_hr_whose_status_is_unknown_is_only_looked_at() -> None:
    """SCIM does not say joined or invited: a look-alike is flagged for review (nobody is
    removed or revoked on a guess); anyone else is not flagged (the warnings say so)."""
    from domain.review import unknown_finding

    alike = unknown_finding(
        Member(email="jon.smith@gmail.com", status="unknown"), ["jon.smith@acme.com"]
    )
    assert alike is not None and alike.action is Recommendation.REVIEW
    assert "joined or invited" in alike.detail
    assert unknown_finding(Member(email="p@partner.io", status="unknown"), ["a@acme.com"]) is None
