"""The onboarding planner's rules (domain/onboard.py), each as its own small table of cases.

``test_onboard_plan.py`` checks whole plans; here each rule alone, in a small org (Production,
Staging) with one vendor asking for access.
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
    OnboardPlan,
    OnboardState,
    Outcome,
    canonical_projects,
    existing_member_plan,
    idp_group_steps,
    idp_path,
    invite_step,
    member_diff,
    production_asks,
    provisioning,
    record_grant_steps,
    request_warnings,
    resend_path,
    until_problems,
    wanted_groups,
)

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
VENDOR = "analytics-vendor-max.roe@vendorco.com"
PROJECTS = [
    Project(id="1", name="Production", environment="Production"),
    Project(id="2", name="Staging", environment="staging"),
]


def request(**kw: Any) -> AccessRequest:
    base: dict[str, Any] = {
        "ticket": "ACC-1",
        "email": VENDOR,
        "projects": {"Staging": Role.MANAGER},
        "org_role": Role.MEMBER,
    }
    return AccessRequest(**{**base, **kw})


def state(**kw: Any) -> OnboardState:
    base: dict[str, Any] = {
        "subject": VENDOR,
        "projects": PROJECTS,
        "org_domains": ["acme.com"],
        "taken_at": T0,
    }
    return OnboardState(**{**base, **kw})


def plan(**kw: Any) -> OnboardPlan:
    base: dict[str, Any] = {
        "subject": VENDOR,
        "projects": {"Staging": Role.MANAGER},
        "org_role": Role.MEMBER,
    }
    return OnboardPlan(**{**base, **kw})


def member(status: str = "joined", **kw: Any) -> Member:
    base: dict[str, Any] = {
        "email": VENDOR,
        "org_role": Role.MEMBER,
        "status": status,
        "projects": (ProjectGrant(project="Staging", role=Role.MANAGER),),
    }
    return Member(**{**base, **kw})


def ids(steps: list[Any]) -> list[str]:
    return [s.id for s in steps]


# --- the request against the org -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("asked", "projects", "problems"),
    [
        pytest.param({" staging ": Role.VIEWER}, {"Staging": Role.VIEWER}, 0, id="canonical"),
        pytest.param(
            {"Staging": Role.VIEWER, "Nope": Role.ADMIN}, {"Staging": Role.VIEWER}, 1, id="unknown"
        ),
    ],
)
def test_canonical_projects(
    asked: dict[str, Role], projects: dict[str, Role], problems: int
) -> None:
    got, found = canonical_projects(request(projects=asked), state())
    assert got == projects and len(found) == problems
    if found:
        assert (
            found[0] == "project 'Nope' does not exist in the org (projects: Production, Staging)"
        )


def test_production_asks_match_the_environment_case_insensitively() -> None:
    asked = {"production": Role.VIEWER, "Staging": Role.ADMIN}
    assert production_asks(request(projects=asked), state()) == (["Production"], ["viewer"])


@pytest.mark.parametrize(
    ("until", "problems"),
    [
        pytest.param(None, [], id="permanent"),
        pytest.param(date(2026, 11, 2), [], id="tomorrow"),
        pytest.param(
            date(2026, 11, 1), ["until 2026-11-01 is not after today (2026-11-01)"], id="today"
        ),
    ],
)
def test_until_problems(until: date | None, problems: list[str]) -> None:
    assert until_problems(request(until=until), T0) == problems


@pytest.mark.parametrize(
    ("req", "st", "fragments"),
    [
        pytest.param(request(), state(), [], id="none"),
        pytest.param(
            request(email="max@vendorco.com"),
            state(subject="max@vendorco.com"),
            ["naming convention"],
            id="personal-address-outside-the-org",
        ),
        pytest.param(
            request(email="jon.smith@acme.com", org_role=Role.ADMIN),
            state(subject="jon.smith@acme.com", others=["j0n.smith@acme.com"]),
            ["look-alike accounts exist: j0n.smith@acme.com", "org Admin requested"],
            id="look-alike-and-admin",
        ),
        pytest.param(
            request(temporary=True), state(), ["labelled temporary"], id="temporary-no-end"
        ),
    ],
)
def test_request_warnings(req: AccessRequest, st: OnboardState, fragments: list[str]) -> None:
    warnings = request_warnings(req, st)
    assert len(warnings) == len(fragments)
    assert all(f in w for f, w in zip(fragments, warnings, strict=True))


# --- an existing member --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("m", "diff"),
    [
        pytest.param(member(), [], id="same"),
        pytest.param(
            member(org_role=Role.VIEWER, projects=(), modules=()),
            ["org role viewer → member", "Staging: none → manager", "modules + govern"],
            id="everything-differs",
        ),
        pytest.param(member(org_role=None), [], id="org-role-unknown"),
    ],
)
def test_member_diff(m: Member, diff: list[str]) -> None:
    p = plan(modules=[Module.GOVERN]) if diff else plan()
    assert member_diff(p, m) == diff


@pytest.mark.parametrize(
    ("m", "outcome", "warned"),
    [
        pytest.param(member(), Outcome.NOTHING_TO_DO, False, id="nothing-to-do"),
        pytest.param(member(projects=()), Outcome.CHANGE_NEEDED, True, id="change-needed"),
    ],
)
def test_existing_member_plan(m: Member, outcome: Outcome, warned: bool) -> None:
    got = existing_member_plan(plan(), m, roles_known=True)
    assert got.outcome is outcome and not got.steps
    assert any("use change" in w for w in got.warnings) is warned


# --- the ways of provisioning --------------------------------------------------------------------
def invitation(st: str) -> Invitation:
    return Invitation(
        email=VENDOR, state=st, sent_at=T0, last_sent_at=T0, expires_at=T0 + timedelta(days=7)
    )


@pytest.mark.parametrize(
    ("m", "inv", "steps", "warned", "blocked"),
    [
        pytest.param(member("pending"), invitation("pending"), 1, False, False, id="resend"),
        pytest.param(
            member("pending", org_role=Role.ADMIN),
            invitation("pending"),
            1,
            True,
            False,
            id="resend-other-access-warned",
        ),
        pytest.param(member("pending"), invitation("expired"), 0, False, True, id="expired"),
    ],
)
def test_resend_path(m: Member, inv: Invitation, steps: int, warned: bool, blocked: bool) -> None:
    got = resend_path(plan(), m, state=state(member=m, invitation=inv))
    assert ids(got.steps) == [f"resend_invitation:{VENDOR}"] * steps
    assert bool(got.warnings) is warned and bool(got.blockers) is blocked


def test_wanted_groups_map_the_org_role_and_each_project_role() -> None:
    p = plan(projects={"Staging": Role.MANAGER, "Production": Role.VIEWER})
    assert [g for g, _ in wanted_groups(p)] == [
        "amplitude-org-members",
        "amplitude-project-managers-staging",
        "amplitude-project-viewers-production",
    ]


GROUPS = {"amplitude-org-members": "g2", "Amplitude-Project-Managers-Staging": "g4"}


@pytest.mark.parametrize(
    ("have", "known", "steps", "blockers"),
    [
        pytest.param(
            [],
            GROUPS,
            [
                "idp_add_group:amplitude-org-members",
                "idp_add_group:Amplitude-Project-Managers-Staging",
            ],
            0,
            id="both-by-the-idp-s-names",
        ),
        pytest.param(
            ["AMPLITUDE-ORG-MEMBERS"],
            GROUPS,
            ["idp_add_group:Amplitude-Project-Managers-Staging"],
            0,
            id="already-in-one",
        ),
        pytest.param(
            [],
            {"amplitude-org-members": "g2"},
            ["idp_add_group:amplitude-org-members"],
            1,
            id="missing",
        ),
    ],
)
def test_idp_group_steps(
    have: list[str], known: dict[str, str], steps: list[str], blockers: int
) -> None:
    got = idp_group_steps(plan(), state(idp_user_groups=have, idp_groups=known))
    assert ids(got.steps) == steps and len(got.blockers) == blockers
    assert got.steps[0].params["email"] == VENDOR


@pytest.mark.parametrize(
    ("user", "modules", "kinds", "blocked"),
    [
        pytest.param(
            None,
            [Module.GOVERN],
            ["idp_create_user", "idp_add_group", "idp_add_group", "grant_modules"],
            False,
            id="new-user-with-modules",
        ),
        pytest.param(
            IdpUser(id="u1", user_name=VENDOR),
            [],
            ["idp_add_group", "idp_add_group"],
            False,
            id="existing",
        ),
        pytest.param(
            IdpUser(id="u1", user_name=VENDOR, active=False), [], [], True, id="deactivated"
        ),
    ],
)
def test_idp_path(
    user: IdpUser | None, modules: list[Module], kinds: list[str], blocked: bool
) -> None:
    got = idp_path(plan(modules=modules), state(idp_user=user, idp_groups=GROUPS), ref=" (ACC-1)")
    assert [s.kind.value for s in got.steps] == kinds and bool(got.blockers) is blocked


def test_invite_step_grants_exactly_what_is_asked() -> None:
    p = plan(projects={"Staging": Role.MANAGER, "Production": Role.VIEWER}, modules=[Module.GOVERN])
    step = invite_step(p, request(until=date(2026, 12, 1)), ref=" (ACC-1)")
    assert step.id == f"invite:{VENDOR}"
    assert step.params == {
        "org_role": "member",
        "projects": {"Staging": "manager", "Production": "viewer"},
        "modules": ["govern"],
        "default_project": "Staging",
        "note": "ticket ACC-1; access until 2026-12-01",
    }
    assert invite_step(plan(projects={}), request(), ref="").params["default_project"] is None


@pytest.mark.parametrize(
    ("until", "grants"),
    [
        pytest.param(None, None, id="permanent"),
        pytest.param(
            date(2026, 12, 1),
            [{"project": "Staging", "role": "manager"}, {"module": "govern"}],
            id="temporary",
        ),
    ],
)
def test_record_grant_steps(until: date | None, grants: list[dict[str, str]] | None) -> None:
    steps = record_grant_steps(plan(modules=[Module.GOVERN]), request(until=until))
    if grants is None:
        assert steps == []
        return
    (step,) = steps
    assert step.params == {"until": "2026-12-01", "grants": grants, "sponsor": ""}


@pytest.mark.parametrize(
    ("st", "idp_managed", "kinds"),
    [
        pytest.param(state(), False, ["invite"], id="invite"),
        pytest.param(
            state(idp_groups=GROUPS),
            True,
            ["idp_create_user", "idp_add_group", "idp_add_group"],
            id="idp",
        ),
        pytest.param(
            state(member=member("pending"), invitation=invitation("pending")),
            False,
            ["resend_invitation"],
            id="pending-resend",
        ),
        pytest.param(
            state(member=member("pending"), invited_for_ticket=True),
            False,
            ["invite"],
            id="this-request-s-own-invite-again",
        ),
        pytest.param(
            state(
                member=member("pending", idp_managed=True),
                idp_user=IdpUser(id="u1", user_name=VENDOR),
                idp_groups=GROUPS,
                idp_user_groups=list(GROUPS),
            ),
            True,
            [],
            id="the-idp-s-pending-member",
        ),
    ],
)
def test_provisioning(st: OnboardState, idp_managed: bool, kinds: list[str]) -> None:
    got = provisioning(plan(), request(), state=st, idp_managed=idp_managed)
    assert [s.kind.value for s in got.steps] == kinds


# --- a SCIM-only org (real Amplitude): roles, projects and modules are the console's ------------
def scim(**kw: Any) -> OnboardState:
    return state(projects=[], roles_by_api=False, **kw)


def test_on_scim_the_projects_are_taken_as_asked_and_all_count_as_production() -> None:
    asked = {" Staging ": Role.MANAGER, "Nope": Role.VIEWER}
    assert canonical_projects(request(projects=asked), scim()) == (
        {"Staging": Role.MANAGER, "Nope": Role.VIEWER},
        [],
    )
    assert production_asks(request(projects=asked), scim()) == (
        ["Staging", "Nope"],
        ["manager", "viewer"],
    )
    [warning] = [w for w in request_warnings(request(), scim()) if "SCIM" in w]
    assert "counts as production" in warning and "a task" in warning


@pytest.mark.parametrize(
    "asked",
    [
        pytest.param({}, id="a-project-role"),
        pytest.param({"modules": (Module.EXPERIMENT,)}, id="and-modules"),
    ],
)
def test_on_scim_an_invitation_is_followed_by_a_console_task(asked: dict[str, Any]) -> None:
    from domain.onboard import make_onboarding_plan

    got = make_onboarding_plan(request(**asked), scim(), idp_managed=False, now=T0)
    assert got.outcome is Outcome.READY, got.blockers
    kinds = [s.kind.value for s in got.steps]
    # A request names at least one project: SCIM's bare Viewer is never all that was asked.
    assert kinds == ["invite", "human_task"]
    human = got.steps[1].params
    assert human.task.value == "set_access"
    text = human.instructions
    assert VENDOR in text and "Members & Groups" in text
    assert "Manager in project Staging" in text and "org role Member" in text
    assert "Can't do naming it" in text  # the project names are checked by the person
    if asked.get("modules"):
        assert "modules experiment" in text


def test_on_scim_the_idp_path_sets_modules_by_task_not_by_api() -> None:
    got = idp_path(
        plan(modules=[Module.EXPERIMENT]),
        scim(idp_groups={"amplitude-org-members": "g1"}),
        ref="",
    )
    assert [s.kind.value for s in got.steps][-1] == "human_task"
    assert "grant_modules" not in [s.kind.value for s in got.steps]


def test_on_scim_an_existing_account_claims_nothing_about_its_roles() -> None:
    got = existing_member_plan(plan(), member(status="unknown", projects=()), roles_known=False)
    assert got.outcome is Outcome.CHANGE_NEEDED
    assert got.change == [
        "already in the org; their roles cannot be read by API: compare in the console"
    ]


def test_on_scim_a_rerun_of_this_tickets_invite_plans_the_same_steps() -> None:
    from domain.onboard import make_onboarding_plan

    first = make_onboarding_plan(request(), scim(), idp_managed=False, now=T0)
    again = make_onboarding_plan(
        request(),
        scim(member=member(status="unknown", projects=(), org_role=None), invited_for_ticket=True),
        idp_managed=False,
        now=T0,
    )
    assert again.outcome is Outcome.READY and again.hash == first.hash
