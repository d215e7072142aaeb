"""Temporary-access expiry rules as a table of cases: pure, no servers, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.expiry import ExpiryKind, Extension, drift, duration, expiry_actions
from domain.models import Member, Module, ProjectGrant, Role
from domain.records import Grant, GrantStatus

NOW = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)
H, D = timedelta(hours=1), timedelta(days=1)
WHO = "carla.contract@agency.io"


def grant(
    gid: int,
    ends_in: timedelta,
    *,
    project: str | None = "Staging",
    role: str | None = "manager",
    module: str | None = None,
    status: GrantStatus = GrantStatus.ACTIVE,
    last_reminder: str = "",
    subject: str = WHO,
) -> Grant:
    return Grant(
        id=gid,
        subject=subject,
        project=None if module else project,
        role=None if module else role,
        module=module,
        start=NOW - 30 * D,
        # The ledger (SQLite) gives naive UTC times back: the rules must read them as UTC.
        end=(NOW + ends_in).replace(tzinfo=None),
        ticket="ACC-7",
        sponsor="sofia.lead@acme.com",
        status=status,
        last_reminder=last_reminder,
    )


def member(
    *projects: tuple[str, str, tuple[str, ...]],
    modules: tuple[str, ...] = (),
    org_role: Role = Role.MEMBER,
) -> Member:
    return Member(
        email=WHO,
        org_role=org_role,
        projects=tuple(ProjectGrant(project=p, role=Role(r), sources=s) for p, r, s in projects),
        modules=tuple(Module(m) for m in modules),
    )


STAGING = ("Staging", "manager", ("individual",))
PROD_IDP = ("Production", "viewer", ("group:amplitude-project-viewers-production",))
PROD_HAND = ("Production", "viewer", ("individual",))


def kinds(actions: list[Any]) -> list[tuple[str, tuple[int, ...], str]]:
    return [(a.kind.value, a.grant_ids, a.reminder) for a in actions]


CASES: list[tuple[str, list[Grant], dict[str, Member] | None, list[Any]]] = [
    (
        "due project grant, other access remains → the role only",
        [grant(1, -1 * H)],
        {WHO: member(STAGING, PROD_IDP)},
        [("revoke_role", (1,), "")],
    ),
    ("not due, no reminder yet", [grant(1, 10 * D)], None, []),
    ("3-day reminder", [grant(1, 2 * D)], None, [("remind", (1,), "3d")]),
    ("3-day reminder sent: not again", [grant(1, 2 * D, last_reminder="3d")], None, []),
    (
        "1-day reminder after the 3-day one",
        [grant(1, 20 * H, last_reminder="3d")],
        None,
        [("remind", (1,), "1d")],
    ),
    ("1-day reminder sent: not again", [grant(1, 2 * H, last_reminder="1d")], None, []),
    (
        "missed 3-day reminder: only the 1-day one",
        [grant(1, 5 * H)],
        None,
        [("remind", (1,), "1d")],
    ),
    ("expired / revoked grants are history", [grant(1, -D, status=GrantStatus.EXPIRED)], None, []),
    (
        "module grant → the module",
        [grant(2, -H, module="experiment")],
        {WHO: member(PROD_IDP, modules=("experiment",))},
        [("revoke_module", (2,), "")],
    ),
    (
        "last grant and nothing else → the membership",
        [grant(1, -H)],
        {WHO: member(STAGING)},
        [("remove_member", (1,), "")],
    ),
    (
        "last grants (role and module) together → one membership removal",
        [grant(1, -H), grant(2, -2 * H, module="experiment")],
        {WHO: member(STAGING, modules=("experiment",))},
        [("remove_member", (1, 2), "")],
    ),
    (
        "another active grant keeps the membership",
        [grant(1, -H), grant(2, 10 * D, project="Development", role="member")],
        {WHO: member(STAGING, ("Development", "member", ("individual",)))},
        [("revoke_role", (1,), "")],
    ),
    (
        "group access to the same project keeps the membership",
        [grant(1, -H)],
        {WHO: member(("Staging", "manager", ("individual", "group:analysts")))},
        [("revoke_role", (1,), "")],
    ),
    (
        "an org Admin is never removed",
        [grant(1, -H)],
        {WHO: member(STAGING, org_role=Role.ADMIN)},
        [("revoke_role", (1,), "")],
    ),
    (
        "access unknown → never the membership",
        [grant(1, -H)],
        None,
        [("revoke_role", (1,), "")],
    ),
]


@pytest.mark.parametrize(
    ("grants", "access", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_expiry_actions(
    grants: list[Grant], access: dict[str, Member] | None, expected: list[Any]
) -> None:
    assert kinds(expiry_actions(grants, NOW, active_access=access)) == expected


def test_reminders_follow_the_policy_days() -> None:
    g = grant(1, 6 * D)
    assert kinds(expiry_actions([g], NOW, reminder_days=[7, 2])) == [("remind", (1,), "7d")]
    assert expiry_actions([g], NOW, reminder_days=[5]) == []


def test_late_revocation_says_how_late() -> None:
    (a,) = expiry_actions([grant(1, -(2 * D + 3 * H))], NOW)
    assert a.kind is ExpiryKind.REVOKE_ROLE
    assert a.late_by == 2 * D + 3 * H
    assert "expired 2 days 3 hours ago, revoked at the next sweep" in a.reason
    (on_time,) = expiry_actions([grant(1, -timedelta(minutes=5))], NOW)
    assert on_time.late_by is None and "ago" not in on_time.reason


def test_actions_are_stable_and_keyed_by_end() -> None:
    g = grant(1, -H)
    (a,) = expiry_actions([g], NOW)
    assert a.id == f"revoke_role:{WHO} (Staging manager)"
    assert a.key == f"1@{(NOW - H).isoformat()}"
    assert expiry_actions([g], NOW) == [a]


def test_duration() -> None:
    assert duration(2 * D + 3 * H + timedelta(minutes=4)) == "2 days 3 hours"
    assert duration(H + timedelta(minutes=1)) == "1 hour 1 minute"
    assert duration(timedelta(seconds=5)) == "less than a minute"


def test_drift_reports_unexplained_project_access() -> None:
    grants = [grant(1, 5 * D)]
    access = {WHO: member(STAGING, PROD_IDP, ("Development", "member", ("individual",)))}
    (only,) = drift(grants, access)
    assert only.startswith(f"{WHO}: Development member (individual)")
    # The Staging role is explained while the grant is active; once revoked, by nothing.
    due = [grant(1, -H)]
    revoked = expiry_actions(due, NOW, active_access=access)
    assert len(drift(due, access, revoked=revoked)) == 1  # the role being revoked is not drift
    expired = [grant(1, -H, status=GrantStatus.EXPIRED)]
    found = drift(expired, {WHO: member(STAGING, PROD_HAND)})
    assert [f.split(" (")[0] for f in found] == [
        f"{WHO}: Staging manager",
        f"{WHO}: Production viewer",
    ]
    assert drift(grants, {}) == []


def test_an_extension_is_approved_by_its_hash_and_says_what_it_moves() -> None:
    g = grant(1, 2 * D)
    ext = Extension(grant=g, days=30, requester=WHO)
    end = NOW + 2 * D
    assert (ext.old_end, ext.new_end) == (end, end + 30 * D)  # naive ledger times read as UTC
    assert ext.target == f"{WHO} (Staging manager)" and ext.step_id == f"extend:{ext.target}"
    assert ext.blockers == []
    plan = ext.plan()
    assert plan["hash"] == ext.hash and plan["blockers"] == []
    (step,) = plan["steps"]
    assert step["kind"] == "extend" and step["target"] == ext.target
    assert step["reason"] == (
        "end 2025-06-03T09:00+00:00 → 2025-07-03T09:00+00:00 (+30 days), asked by " + WHO
    )
    assert ext.summary().endswith(
        "extend by 30 days to 2025-07-03T09:00+00:00 (sponsor sofia.lead@acme.com)"
    )
    assert "approved by sec@acme.com." in ext.comment(["sec@acme.com"])
    assert ext.comment([]).endswith("approved by policy.")
    # The hash is of the grant and both ends: another length, or another end, is another plan.
    assert Extension(grant=g, days=30, requester="someone-else@acme.com").hash == ext.hash
    assert Extension(grant=g, days=31, requester=WHO).hash != ext.hash
    assert Extension(grant=grant(1, 3 * D), days=30, requester=WHO).hash != ext.hash


def test_only_an_active_grant_is_extended_and_only_from_its_end() -> None:
    g = grant(1, 2 * D)
    ext = Extension(grant=g, days=30, requester=WHO)
    assert ext.still_due(g) and not ext.moved(g)
    moved = g.model_copy(update={"end": ext.new_end})
    assert ext.moved(moved) and not ext.still_due(moved)
    expired = grant(1, 2 * D, status=GrantStatus.EXPIRED)
    assert not ext.still_due(expired)
    (blocker,) = Extension(grant=expired, days=30, requester=WHO).blockers
    assert blocker == "grant 1 is expired: only an active grant can be extended"
