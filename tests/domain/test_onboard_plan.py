"""The onboarding planner as a table of cases (STYLE.md point 13): pure, no servers, no clock.

One small org (Production, Staging; a few members; mapped IdP groups) and one request — the
vendor of ticket ACC-1 — changed a little per case; each case checks the outcome, the steps,
the warnings and the problems.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from domain.models import (
    AccessRequest,
    IdpUser,
    Invitation,
    Member,
    Module,
    Project,
    ProjectGrant,
    Role,
)
from domain.onboard import (
    OnboardState,
    OnboardStepKind,
    Outcome,
    follows_naming,
    make_onboarding_plan,
    project_group,
)

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
VENDOR = "analytics-vendor-max.roe@vendorco.com"
PROJECTS = [
    Project(id="1", name="Production", environment="production", admins=("alice@acme.com",)),
    Project(id="2", name="Staging", environment="staging", admins=("raj@acme.com",)),
]
GROUPS = {
    "amplitude-org-viewers": "g1",
    "amplitude-org-members": "g2",
    "amplitude-project-viewers-production": "g3",
    "amplitude-project-managers-staging": "g4",
    "amplitude-project-admins-staging": "g5",
}


def request(**kw: Any) -> AccessRequest:
    base: dict[str, Any] = {
        "ticket": "ACC-1",
        "email": VENDOR,
        "projects": {"Staging": Role.MANAGER, "Production": Role.VIEWER},
        "org_role": Role.MEMBER,
        "modules": (Module.GOVERN,),
        "until": date(2026, 12, 1),
        "justification": "Tracking plan clean-up",
        "sow": "SOW-2230",
        "temporary": True,
        "requester": "sofia.lead@acme.com",
    }
    return AccessRequest(**{**base, **kw})


def state(**kw: Any) -> OnboardState:
    base: dict[str, Any] = {
        "subject": VENDOR,
        "projects": PROJECTS,
        "others": ["alice@acme.com", "raj@acme.com", "jon.smith@acme.com"],
        "org_domains": ["acme.com"],
        "idp_groups": GROUPS,
        "taken_at": T0,
    }
    return OnboardState(**{**base, **kw})


def member(status: str = "joined", **kw: Any) -> Member:
    base: dict[str, Any] = {
        "email": VENDOR,
        "org_role": Role.MEMBER,
        "status": status,
        "projects": (
            ProjectGrant(project="Staging", role=Role.MANAGER),
            ProjectGrant(project="Production", role=Role.VIEWER),
        ),
        "modules": (Module.GOVERN,),
    }
    return Member(**{**base, **kw})


def invitation(st: str = "pending") -> Invitation:
    return Invitation(
        email=VENDOR,
        state=st,
        sent_at=T0 - timedelta(days=2),
        last_sent_at=T0 - timedelta(days=2),
        expires_at=T0 + timedelta(days=12),
    )


def kinds(plan: Any) -> list[str]:
    return [s.kind.value for s in plan.steps]


CASES: list[tuple[str, dict[str, Any], dict[str, Any], bool, dict[str, Any]]] = [
    # id, request changes, state changes, idp_managed, expectations
    (
        "invite-exact",
        {},
        {},
        False,
        {"outcome": Outcome.READY, "kinds": ["invite", "record_grant"], "warnings": 0},
    ),
    (
        "viewer-by-default-no-modules",
        {"org_role": Role.VIEWER, "modules": (), "until": None, "temporary": False},
        {},
        False,
        {"outcome": Outcome.READY, "kinds": ["invite"]},
    ),
    (
        "unknown-project",
        {"projects": {"Prodution": Role.VIEWER}},
        {},
        False,
        {"outcome": Outcome.INVALID, "kinds": [], "problem": "'Prodution' does not exist"},
    ),
    (
        "until-in-the-past",
        {"until": date(2026, 10, 1)},
        {},
        False,
        {"outcome": Outcome.INVALID, "problem": "is not after today"},
    ),
    (
        "existing-member-other-roles",
        {"projects": {"Production": Role.MANAGER}},
        {"member": member()},
        False,
        {"outcome": Outcome.CHANGE_NEEDED, "kinds": [], "warning": "use change"},
    ),
    (
        "existing-member-same-access",
        {},
        {"member": member()},
        False,
        {"outcome": Outcome.NOTHING_TO_DO, "kinds": []},
    ),
    (
        "pending-invite-resend",
        {},
        {"member": member("pending"), "invitation": invitation()},
        False,
        {"outcome": Outcome.READY, "kinds": ["resend_invitation", "record_grant"]},
    ),
    (
        "pending-invite-of-this-ticket-same-invite",
        {},
        {"member": member("pending"), "invitation": invitation(), "invited_for_ticket": True},
        False,
        {"outcome": Outcome.READY, "kinds": ["invite", "record_grant"]},
    ),
    (
        "expired-invite-blocks",
        {},
        {"member": member("pending"), "invitation": invitation("expired")},
        False,
        {"outcome": Outcome.BLOCKED, "blocker": "expired invitation"},
    ),
    (
        "lookalike-warns",
        {"email": "j\u043en.smith@acme.com"},
        {"subject": "j\u043en.smith@acme.com"},
        False,
        {"outcome": Outcome.READY, "warning": "look-alike accounts exist: jon.smith@acme.com"},
    ),
    (
        "vendor-naming-warns",
        {"email": "max@vendorco.com"},
        {"subject": "max@vendorco.com"},
        False,
        {"outcome": Outcome.READY, "warning": "naming convention"},
    ),
    (
        "idp-path",
        {},
        {},
        True,
        {
            "outcome": Outcome.READY,
            "kinds": [
                "idp_create_user",
                "idp_add_group",
                "idp_add_group",
                "idp_add_group",
                "grant_modules",
                "record_grant",
            ],
        },
    ),
    (
        "idp-existing-user-in-some-groups",
        {"modules": ()},
        {
            "idp_user": IdpUser(id="u1", user_name=VENDOR),
            "idp_user_groups": ["amplitude-org-members"],
        },
        True,
        {"outcome": Outcome.READY, "kinds": ["idp_add_group", "idp_add_group", "record_grant"]},
    ),
    (
        "idp-missing-group-blocks",
        {"projects": {"Production": Role.ADMIN}},
        {},
        True,
        {"outcome": Outcome.BLOCKED, "blocker": "amplitude-project-admins-production"},
    ),
    (
        "idp-user-inactive-blocks",
        {},
        {"idp_user": IdpUser(id="u1", user_name=VENDOR, active=False)},
        True,
        {"outcome": Outcome.BLOCKED, "blocker": "deactivated"},
    ),
]


@pytest.mark.parametrize(
    ("req_kw", "state_kw", "idp", "expect"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_plan_cases(
    req_kw: dict[str, Any], state_kw: dict[str, Any], idp: bool, expect: dict[str, Any]
) -> None:
    plan = make_onboarding_plan(request(**req_kw), state(**state_kw), idp_managed=idp, now=T0)
    assert plan.outcome is expect["outcome"], (plan.problems, plan.blockers, plan.warnings)
    if "kinds" in expect:
        assert kinds(plan) == expect["kinds"]
    if "warnings" in expect:
        assert len(plan.warnings) == expect["warnings"], plan.warnings
    if "warning" in expect:
        assert any(expect["warning"] in w for w in plan.warnings), plan.warnings
    if "problem" in expect:
        assert any(expect["problem"] in p for p in plan.problems), plan.problems
    if "blocker" in expect:
        assert any(expect["blocker"] in b for b in plan.blockers), plan.blockers


def test_the_invite_grants_exactly_what_is_asked() -> None:
    plan = make_onboarding_plan(request(), state(), idp_managed=False, now=T0)
    (invite,) = [s for s in plan.steps if s.kind is OnboardStepKind.INVITE]
    assert invite.params["org_role"] == "member"
    assert invite.params["projects"] == {"Staging": "manager", "Production": "viewer"}
    assert invite.params["modules"] == ["govern"]
    assert invite.params["default_project"] == "Staging"
    assert "ACC-1" in invite.params["note"] and "SOW-2230" in invite.params["note"]
    assert "2026-12-01" in invite.params["note"]
    assert plan.production_roles == ["viewer"] and plan.production_projects == ["Production"]
    (grant,) = [s for s in plan.steps if s.kind is OnboardStepKind.RECORD_GRANT]
    assert grant.params["until"] == "2026-12-01"
    assert {"module": "govern"} in grant.params["grants"]


def test_staging_admin_never_implies_production() -> None:
    req = request(projects={"Staging": Role.ADMIN})
    plan = make_onboarding_plan(req, state(), idp_managed=False, now=T0)
    (invite,) = [s for s in plan.steps if s.kind is OnboardStepKind.INVITE]
    assert invite.params["projects"] == {"Staging": "admin"}
    assert plan.production_roles == []
    idp_plan = make_onboarding_plan(req, state(), idp_managed=True, now=T0)
    targets = [s.target for s in idp_plan.steps if s.kind is OnboardStepKind.IDP_ADD_GROUP]
    assert targets == ["amplitude-org-members", "amplitude-project-admins-staging"]


def test_project_names_are_matched_case_insensitively_and_canonicalised() -> None:
    plan = make_onboarding_plan(
        request(projects={"staging": Role.VIEWER}), state(), idp_managed=False, now=T0
    )
    assert plan.projects == {"Staging": Role.VIEWER}
    assert project_group("Staging", Role.VIEWER) == "amplitude-project-viewers-staging"


def test_every_problem_is_reported_at_once() -> None:
    req = request(projects={"Nope": Role.VIEWER, "Gone": Role.ADMIN}, until=date(2020, 1, 1))
    plan = make_onboarding_plan(req, state(), idp_managed=False, now=T0)
    assert plan.outcome is Outcome.INVALID and len(plan.problems) == 3 and not plan.steps


def test_the_hash_is_stable_and_depends_on_what_is_done() -> None:
    a = make_onboarding_plan(request(), state(), idp_managed=False, now=T0)
    b = make_onboarding_plan(request(), state(), idp_managed=False, now=T0 + timedelta(hours=1))
    c = make_onboarding_plan(
        request(modules=()), state(), idp_managed=False, now=T0 + timedelta(hours=1)
    )
    assert a.hash == b.hash != c.hash


@pytest.mark.parametrize(
    ("email", "ok"),
    [
        ("analytics-vendor-max.roe@vendorco.com", True),
        ("analytics-vendor-anne-marie.roe@vendorco.com", True),
        ("analytics-vendor-maxroe@vendorco.com", False),
        ("max.roe@vendorco.com", False),
    ],
)
def test_naming_convention(email: str, ok: bool) -> None:
    assert follows_naming(email) is ok


def test_an_org_member_needs_no_naming_convention() -> None:
    plan = make_onboarding_plan(
        request(email="nora.new@acme.com"),
        state(subject="nora.new@acme.com"),
        idp_managed=False,
        now=T0,
    )
    assert not any("naming" in w for w in plan.warnings)


def test_a_pending_member_the_idp_provisioned_is_not_resent() -> None:
    st = state(
        member=member("pending", idp_managed=True),
        invitation=invitation(),
        idp_user=IdpUser(id="u1", user_name=VENDOR),
        idp_user_groups=[
            "amplitude-org-members",
            "amplitude-project-viewers-production",
            "amplitude-project-managers-staging",
        ],
    )
    plan = make_onboarding_plan(
        request(modules=(), until=None, temporary=False), st, idp_managed=True, now=T0
    )
    assert plan.outcome is Outcome.NOTHING_TO_DO and not plan.steps
