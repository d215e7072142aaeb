"""The expiry sweep's rules (domain/expiry.py), each as its own small table of cases.

``test_expiry.py`` checks whole sweeps; here each rule alone, for Carla, a contractor with
temporary access to Staging (and sometimes a module or Development).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.expiry import (
    ExpiryAction,
    ExpiryKind,
    active_by_subject,
    membership_removal,
    other_access,
    reminder,
    removes_membership,
    revocation,
    sweep_order,
)
from domain.models import Member, Module, ProjectGrant, Role
from domain.records import Grant, GrantStatus

NOW = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)
H, D = timedelta(hours=1), timedelta(days=1)
LATE = timedelta(minutes=20)
WHO = "carla.contract@agency.io"


def grant(
    gid: int | None,
    ends_in: timedelta,
    *,
    project: str | None = "Staging",
    module: str | None = None,
    **kw: object,
) -> Grant:
    return Grant.model_validate(
        {
            "id": gid,
            "subject": WHO,
            "project": None if module else project,
            "role": None if module or not project else "manager",
            "module": module,
            "start": NOW - 30 * D,
            "end": (NOW + ends_in).replace(tzinfo=None),  # the ledger's naive UTC
            "ticket": "ACC-7",
            "sponsor": "sofia.lead@acme.com",
            **kw,
        }
    )


def member(
    *projects: tuple[str, tuple[str, ...]],
    modules: tuple[str, ...] = (),
    org_role: Role = Role.MEMBER,
) -> Member:
    return Member(
        email=WHO,
        org_role=org_role,
        projects=tuple(ProjectGrant(project=p, role=Role.MANAGER, sources=s) for p, s in projects),
        modules=tuple(Module(m) for m in modules),
    )


STAGING = ("Staging", ("individual",))


# --- what a grantee keeps ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("m", "due", "left"),
    [
        pytest.param(member(STAGING), [grant(1, -H)], [], id="nothing-left"),
        pytest.param(
            member(STAGING, org_role=Role.ADMIN), [grant(1, -H)], ["org Admin"], id="org-admin"
        ),
        pytest.param(
            member(STAGING, ("Dev", ("individual",))),
            [grant(1, -H)],
            ["Dev manager"],
            id="another-project",
        ),
        pytest.param(
            member(("Staging", ("individual", "group:analysts"))),
            [grant(1, -H)],
            ["Staging manager"],
            id="a-group-gives-it-too",
        ),
        pytest.param(
            member(("Staging", ("group:amplitude-project-managers-staging",))),
            [grant(1, -H)],
            [],
            id="the-grants-own-idp-group",
        ),
        pytest.param(
            member(("Staging", ("group:amplitude-project-viewers-staging",))),
            [grant(1, -H)],
            ["Staging manager"],
            id="an-idp-group-of-another-role",
        ),
        pytest.param(
            member(("Staging", ())), [grant(1, -H)], ["Staging manager"], id="sources-unknown"
        ),
        pytest.param(
            member(modules=("experiment", "govern")),
            [grant(1, -H, module="experiment")],
            ["module govern"],
            id="another-module",
        ),
    ],
)
def test_other_access(m: Member, due: list[Grant], left: list[str]) -> None:
    assert other_access(m, due) == left


def test_active_by_subject_keeps_only_stored_active_grants_in_order() -> None:
    grants = [
        grant(3, H),
        grant(1, -H, subject="b@x.io"),
        grant(2, -H),
        grant(None, -H),
        grant(4, -H, status=GrantStatus.EXPIRED),
        grant(5, -H, status=GrantStatus.REVOKED),
    ]
    by = active_by_subject(grants)
    assert {s: [g.id for g in gs] for s, gs in by.items()} == {WHO: [3, 2], "b@x.io": [1]}


# --- the membership or the grant -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("due", "remaining", "m", "whole"),
    [
        pytest.param([], [], member(), False, id="nothing-due"),
        pytest.param([grant(1, -H)], [], member(STAGING), True, id="last-grant-nothing-else"),
        pytest.param(
            [grant(1, -H, project=None)], [grant(2, D)], None, True, id="a-membership-grant"
        ),
        pytest.param([grant(1, -H)], [grant(2, D)], member(STAGING), False, id="another-grant"),
        pytest.param([grant(1, -H)], [], None, False, id="access-unknown"),
        pytest.param(
            [grant(1, -H)], [], member(STAGING, org_role=Role.ADMIN), False, id="other-access"
        ),
    ],
)
def test_removes_membership(
    due: list[Grant], remaining: list[Grant], m: Member | None, whole: bool
) -> None:
    assert removes_membership(due, remaining, member=m) is whole


@pytest.mark.parametrize(
    ("due", "ids", "ends_in", "reason", "late"),
    [
        pytest.param(
            [grant(2, -5 * H), grant(1, -2 * D - 3 * H, module="experiment")],
            (1, 2),
            -2 * D - 3 * H,
            "Staging manager, module experiment: expired 2 days 3 hours ago, revoked at the next "
            "sweep (nothing else remains: the membership is removed)",
            True,
            id="late-the-earliest-end-names-it",
        ),
        pytest.param(
            [grant(1, -5 * timedelta(minutes=1))],
            (1,),
            -5 * timedelta(minutes=1),
            "Staging manager: expired (nothing else remains: the membership is removed)",
            False,
            id="on-time",
        ),
    ],
)
def test_membership_removal(
    due: list[Grant], ids: tuple[int, ...], ends_in: timedelta, reason: str, late: bool
) -> None:
    a = membership_removal(WHO, due, now=NOW, late_after=LATE)
    assert (a.kind, a.subject, a.what, a.grant_ids) == (
        ExpiryKind.REMOVE_MEMBER,
        WHO,
        "membership",
        ids,
    )
    assert (a.ends_at, a.reason, a.late_by) == (NOW + ends_in, reason, -ends_in if late else None)
    assert (a.sponsor, a.ticket) == ("sofia.lead@acme.com", "ACC-7")


@pytest.mark.parametrize(
    ("g", "kind", "reason"),
    [
        pytest.param(
            grant(1, -H),
            ExpiryKind.REVOKE_ROLE,
            "Staging manager: expired 1 hour ago, revoked at the next sweep",
            id="role-late",
        ),
        pytest.param(
            grant(2, -timedelta(minutes=20), module="experiment"),
            ExpiryKind.REVOKE_MODULE,
            "module experiment: expired",
            id="module-on-time-at-the-limit",
        ),
    ],
)
def test_revocation(g: Grant, kind: ExpiryKind, reason: str) -> None:
    a = revocation(g, now=NOW, late_after=LATE)
    assert (a.kind, a.grant_ids, a.reason) == (kind, (g.id,), reason)
    assert (a.project, a.role, a.module) == (g.project, g.role, g.module)
    assert a.late_by == (H if kind is ExpiryKind.REVOKE_ROLE else None)


# --- reminders, order ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("ends_in", "last", "days", "expected"),
    [
        pytest.param(10 * D, "", [1, 3], None, id="too-early"),
        pytest.param(3 * D, "", [1, 3], "3d", id="at-three-days"),
        pytest.param(2 * D, "3d", [1, 3], None, id="sent-already"),
        pytest.param(20 * H, "3d", [1, 3], "1d", id="tighter-after-wider"),
        pytest.param(5 * H, "", [1, 3], "1d", id="missed-wider-only-the-tightest"),
        pytest.param(5 * H, "1d", [1, 3], None, id="tightest-sent"),
        pytest.param(5 * H, "oops", [1, 3], "1d", id="unreadable-label-counts-as-none-sent"),
        pytest.param(6 * D, "", [2, 7], "7d", id="policy-days"),
        pytest.param(2 * D, "", [], None, id="no-reminder-days"),
    ],
)
def test_reminder(ends_in: timedelta, last: str, days: list[int], expected: str | None) -> None:
    a = reminder(grant(1, ends_in, last_reminder=last), now=NOW, days=days)
    assert (a.reminder if a else None) == expected
    if a is not None:
        assert a.kind is ExpiryKind.REMIND and a.reason.endswith(f" {a.reminder[:-1]}-day reminder")


def test_reminder_says_when() -> None:
    a = reminder(grant(1, 2 * D + 3 * H), now=NOW, days=[3])
    assert a is not None
    assert a.reason == "ends in 2 days 3 hours (2025-06-03T12:00+00:00): 3-day reminder"


def action(kind: ExpiryKind, ends_in: timedelta, subject: str = WHO, gid: int = 1) -> ExpiryAction:
    return ExpiryAction(
        kind=kind,
        subject=subject,
        grant_ids=(gid,),
        what="x",
        ends_at=NOW + ends_in,
        reason="",
    )


@pytest.mark.parametrize(
    ("actions", "expected"),
    [
        pytest.param(
            [
                action(ExpiryKind.REMIND, -D),
                action(ExpiryKind.REVOKE_MODULE, H),
                action(ExpiryKind.REMOVE_MEMBER, 2 * H),
            ],
            [ExpiryKind.REMOVE_MEMBER, ExpiryKind.REVOKE_MODULE, ExpiryKind.REMIND],
            id="kinds-first",
        ),
        pytest.param(
            [action(ExpiryKind.REVOKE_MODULE, -H), action(ExpiryKind.REVOKE_ROLE, -2 * H)],
            [ExpiryKind.REVOKE_ROLE, ExpiryKind.REVOKE_MODULE],
            id="roles-and-modules-together-by-end",
        ),
    ],
)
def test_sweep_order(actions: list[ExpiryAction], expected: list[ExpiryKind]) -> None:
    assert [a.kind for a in sweep_order(actions)] == expected


def test_sweep_order_then_subject_then_grants() -> None:
    same = [
        action(ExpiryKind.REMIND, D, "b@x.io", 1),
        action(ExpiryKind.REMIND, D, WHO, 3),
        action(ExpiryKind.REMIND, D, "b@x.io", 0),
    ]
    assert [(a.subject, a.grant_ids) for a in sweep_order(same)] == [
        ("b@x.io", (0,)),
        ("b@x.io", (1,)),
        (WHO, (3,)),
    ]
