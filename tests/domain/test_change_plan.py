"""The mover planner as a table (pure: no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from domain.change import (
    ChangeKind,
    ChangeRequest,
    expected_access,
    make_change_plan,
    make_email_change_plan,
)
from domain.models import IdpGroup, Member, Module, PermissionGroup, Project, ProjectGrant, Role

GINA = "gina.groups@acme.com"
NOW = datetime(2025, 6, 1, tzinfo=UTC)
PROJECTS = [
    Project(id="1", name="Production", environment="production", admins=("sofia.lead@acme.com",)),
    Project(id="2", name="Staging", environment="staging", admins=("raj.admin@acme.com",)),
]
ANALYSTS = PermissionGroup(
    id="10", name="Analysts Production", projects={"Production": Role.MEMBER}
)
MANAGERS = PermissionGroup(
    id="11", name="Prod Managers", projects={"Production": Role.MANAGER, "Staging": Role.MEMBER}
)


def gina(**kw: object) -> Member:
    base: dict[str, object] = {
        "email": GINA,
        "org_role": Role.MEMBER,
        "modules": (Module.EXPERIMENT,),
        "projects": (
            ProjectGrant(
                project="Production",
                role=Role.MANAGER,
                sources=("individual", "group:Analysts Production", "group:Prod Managers"),
            ),
            ProjectGrant(project="Staging", role=Role.MEMBER, sources=("group:Prod Managers",)),
        ),
        "groups": ("10", "11"),
        "last_login_at": NOW - timedelta(days=1),
    }
    base.update(kw)
    return Member(**base)  # type: ignore[arg-type]


def plain(role: Role = Role.VIEWER) -> Member:
    return Member(
        email=GINA,
        org_role=Role.MEMBER,
        projects=(ProjectGrant(project="Production", role=role, sources=("individual",)),),
    )


def kinds(plan: object) -> list[tuple[str, str]]:
    return [(s.kind.value, s.target) for s in plan.steps]  # type: ignore[attr-defined]


def req(**kw: object) -> ChangeRequest:
    return ChangeRequest(email=GINA, **kw)  # type: ignore[arg-type]


CASES = [
    # (name, member, groups, request, expected steps, widening, production roles for the policy)
    (
        "narrow",
        plain(Role.MANAGER),
        [],
        req(projects={"Production": Role.VIEWER}),
        [("set_project_role", "Production")],
        False,
        (),
    ),
    (
        "widen",
        plain(Role.VIEWER),
        [],
        req(projects={"Production": Role.MANAGER}),
        [("set_project_role", "Production")],
        True,
        ("manager",),
    ),
    (
        "widen outside production",
        plain(Role.VIEWER),
        [],
        req(projects={"Staging": Role.MANAGER}),
        [("set_project_role", "Staging")],
        True,
        (),
    ),
    (
        "none",
        plain(Role.MEMBER),
        [],
        req(projects={"Production": None}),
        [("remove_project_role", "Production")],
        False,
        (),
    ),
    (
        "org downgrade",
        plain(),
        [],
        req(org_role=Role.VIEWER),
        [("set_org_role", GINA)],
        False,
        (),
    ),
    (
        "modules",
        gina(),
        [ANALYSTS, MANAGERS],
        req(modules_add=(Module.GOVERN,), modules_remove=(Module.EXPERIMENT,)),
        [("grant_modules", GINA), ("revoke_modules", GINA)],
        True,
        (),
    ),
    (
        "no-op",
        plain(Role.VIEWER),
        [],
        req(projects={"Production": Role.VIEWER}, org_role=Role.MEMBER),
        [],
        False,
        (),
    ),
]


@pytest.mark.parametrize(
    ("member", "groups", "request_", "steps", "widening", "prod"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_change_table(
    member: Member,
    groups: list[PermissionGroup],
    request_: ChangeRequest,
    steps: list[tuple[str, str]],
    widening: bool,
    prod: tuple[str, ...],
) -> None:
    plan = make_change_plan(member, groups, PROJECTS, request_)
    assert kinds(plan) == steps
    assert plan.widening is widening
    assert plan.approval_facts()["production_roles"] == prod
    assert not plan.blockers
    assert plan.is_noop is (not steps)


def test_group_union_trap_proposes_leaving_the_group() -> None:
    """Individual viewer, groups member and manager: a narrowing to member leaves only the
    group that grants more, keeps Staging (which that group gave) by an individual grant."""
    plan = make_change_plan(
        gina(), [ANALYSTS, MANAGERS], PROJECTS, req(projects={"Production": Role.MEMBER})
    )
    assert kinds(plan) == [
        ("set_project_role", "Production"),
        ("set_project_role", "Staging"),
        ("remove_group_membership", "11"),
    ]
    assert any("Prod Managers" in w and "highest" in w for w in plan.warnings)
    assert plan.steps[1].params == {"project": "Staging", "role": "member"}
    assert not plan.widening and plan.approval_facts()["production_roles"] == ()
    # To viewer: both groups grant more.
    plan = make_change_plan(
        gina(), [ANALYSTS, MANAGERS], PROJECTS, req(projects={"Production": Role.VIEWER})
    )
    assert [t for k, t in kinds(plan) if k == "remove_group_membership"] == ["10", "11"]
    # None: every group granting Production goes, and the individual grant.
    plan = make_change_plan(
        gina(), [ANALYSTS, MANAGERS], PROJECTS, req(projects={"Production": None})
    )
    assert ("remove_project_role", "Production") in kinds(plan)
    assert {t for k, t in kinds(plan) if k == "remove_group_membership"} == {"10", "11"}


def test_after_the_change_the_replan_is_a_noop() -> None:
    after = Member(
        email=GINA,
        org_role=Role.MEMBER,
        projects=(
            ProjectGrant(
                project="Production",
                role=Role.MEMBER,
                sources=("individual", "group:Analysts Production"),
            ),
        ),
        groups=("10",),
    )
    plan = make_change_plan(
        after, [ANALYSTS, MANAGERS], PROJECTS, req(projects={"Production": Role.MEMBER})
    )
    assert plan.is_noop


def test_hash_is_stable_and_follows_what_is_done() -> None:
    a = make_change_plan(
        gina(), [MANAGERS, ANALYSTS], PROJECTS, req(projects={"Production": Role.VIEWER})
    )
    b = make_change_plan(
        gina(), [ANALYSTS, MANAGERS], PROJECTS, req(projects={"Production": Role.VIEWER})
    )
    c = make_change_plan(
        gina(), [ANALYSTS, MANAGERS], PROJECTS, req(projects={"Production": Role.MEMBER})
    )
    assert a.hash == b.hash != c.hash


def test_idp_managed_group_blocks() -> None:
    idp = MANAGERS.model_copy(update={"idp_managed": True})
    plan = make_change_plan(
        gina(), [ANALYSTS, idp], PROJECTS, req(projects={"Production": Role.MEMBER})
    )
    assert any("IdP" in b for b in plan.blockers)


def test_org_admin_widening_and_unknown_inputs() -> None:
    plan = make_change_plan(plain(), [], PROJECTS, req(org_role=Role.ADMIN))
    assert plan.approval_facts()["org_role"] == "admin"
    assert make_change_plan(None, [], PROJECTS, req(org_role=Role.ADMIN)).blockers
    assert make_change_plan(plain(), [], PROJECTS, req(projects={"Nope": Role.VIEWER})).blockers
    with pytest.raises(ValidationError):
        req()
    with pytest.raises(ValidationError):
        req(modules_add=(Module.GOVERN,), modules_remove=(Module.GOVERN,))


def test_email_change_phases() -> None:
    old = gina()
    new = "gina.g@acme.com"
    common = {"old_email": GINA, "new_email": new, "now": NOW}
    first = make_email_change_plan(old, None, [ANALYSTS, MANAGERS], PROJECTS, **common)
    assert [k for k, _ in kinds(first)] == [
        "invite_member",
        "add_group_membership",
        "add_group_membership",
        "transfer_content",
        "remove_member",
    ]
    invite = first.steps[0].params
    # The individual grant hidden by a group's higher one: Viewer (the groups give the rest).
    assert invite == {
        "role": "member",
        "projects": {"Production": "viewer"},
        "modules": ["experiment"],
    }
    assert expected_access(old, [ANALYSTS, MANAGERS]) == {"Production": Role.VIEWER}
    pending = Member(email=new, org_role=Role.MEMBER, status="pending")
    waiting = make_email_change_plan(old, pending, [ANALYSTS, MANAGERS], PROJECTS, **common)
    assert waiting.waiting_for_acceptance and not waiting.steps
    joined = pending.model_copy(
        update={
            "status": "joined",
            "last_login_at": NOW,
            "modules": (Module.EXPERIMENT,),
            "projects": (
                ProjectGrant(project="Production", role=Role.VIEWER, sources=("individual",)),
            ),
        }
    )
    second = make_email_change_plan(old, joined, [ANALYSTS, MANAGERS], PROJECTS, **common)
    assert {s.id for s in second.steps} <= {s.id for s in first.steps}
    assert not second.blockers
    stale = joined.model_copy(update={"last_login_at": NOW - timedelta(days=40)})
    assert make_email_change_plan(old, stale, [], PROJECTS, **common).blockers
    done = make_email_change_plan(None, joined, [], PROJECTS, **common)
    assert done.is_noop
    assert make_email_change_plan(None, None, [], PROJECTS, **common).blockers
    assert first.steps[0].kind is ChangeKind.INVITE_MEMBER


def test_email_change_takes_the_old_address_out_of_its_idp_groups_before_removing_it() -> None:
    """IdP first (seed 003): the old address leaves the mapped IdP groups that provision it
    after the transfer and before the org removal; unmapped groups are not ours to change."""
    new = "gina.g@acme.com"
    groups = [
        IdpGroup(id="g2", name="amplitude-project-viewers-production"),
        IdpGroup(id="g1", name="amplitude-org-members"),
        IdpGroup(id="g3", name="okta-everyone"),
    ]
    plan = make_email_change_plan(
        gina(),
        None,
        [ANALYSTS, MANAGERS],
        PROJECTS,
        old_email=GINA,
        new_email=new,
        now=NOW,
        old_idp=("u-7", groups),
    )
    assert [(s.kind.value, s.target) for s in plan.steps[-4:]] == [
        ("transfer_content", GINA),
        ("remove_idp_group", "g1"),
        ("remove_idp_group", "g2"),
        ("remove_member", GINA),
    ]
    assert plan.steps[-2].params == {
        "group": "amplitude-project-viewers-production",
        "user_id": "u-7",
    }
    # No IdP user for the old address: nothing to take out.
    bare = make_email_change_plan(
        gina(), None, [], PROJECTS, old_email=GINA, new_email=new, now=NOW, old_idp=("", groups)
    )
    assert "remove_idp_group" not in [s.kind.value for s in bare.steps]


def test_a_change_where_roles_cannot_be_read_is_one_task_approved_as_production() -> None:
    """SCIM only: one human task with the target; every role asked counts as a production
    grant and the org role asked as widened (the safe side), the project admins unknown."""
    from domain.change import make_console_change_plan

    req = ChangeRequest(
        email=GINA,
        projects={"Staging": Role.VIEWER, "Development": None},
        org_role=Role.MEMBER,
        modules_add=(Module.EXPERIMENT,),
    )
    plan = make_console_change_plan(gina(), req)
    (step,) = plan.steps
    assert step.kind is ChangeKind.HUMAN_TASK and step.widening
    text = step.params.instructions  # type: ignore[union-attr]
    for asked in (
        "org role Member",
        "Viewer in project Staging",
        "no access to project Development",
        "add modules experiment",
    ):
        assert asked in text, text
    assert plan.approval_facts() == {
        "production_roles": ("viewer",),
        "org_role": "member",
        "modules": ("experiment",),
    }
    assert make_console_change_plan(None, req).blockers == [f"{GINA} is not a member of the org"]


def test_an_idp_managed_members_roles_change_in_the_idp() -> None:
    """Seed 003, the IdP wins role conflicts: an IdP-managed member's org role moves between
    the IdP's org groups (the new one first: never in none), and a group the IdP pushes is
    left in the IdP; without an IdP user the pushed group still blocks."""
    from domain.change import IdpView

    pushed = MANAGERS.model_copy(update={"idp_managed": True})
    member = gina(idp_managed=True)
    view = IdpView(
        user_id="u-1",
        groups={"amplitude-org-members": "g-m", "Prod Managers": "g-pm", "okta-everyone": "g-e"},
        mapped={"amplitude-org-members": "g-m", "amplitude-org-viewers": "g-v"},
    )
    request = req(projects={"Production": Role.MEMBER}, org_role=Role.VIEWER)
    plan = make_change_plan(member, [ANALYSTS, pushed], PROJECTS, request, idp=view)
    assert not plan.blockers, plan.blockers
    rows = [(s.kind.value, s.target) for s in plan.steps]
    assert ("remove_idp_group", "g-pm") in rows  # the pushed group, left in the IdP
    assert ("remove_group_membership", "11") not in rows
    org = [r for r in rows if r[1] in ("amplitude-org-viewers", "g-m")]
    assert org == [("idp_add_group", "amplitude-org-viewers"), ("remove_idp_group", "g-m")]
    assert "set_org_role" not in [k for k, _ in rows]
    # Widening the org role through the IdP is what the policy sees.
    up = make_change_plan(member, [], PROJECTS, req(org_role=Role.ADMIN), idp=view)
    assert up.blockers == [
        "the IdP has no group amplitude-org-admins (maps to org role admin): create it"
    ]
    view_admins = view.model_copy(update={"mapped": {**view.mapped, "amplitude-org-admins": "a"}})
    up = make_change_plan(member, [], PROJECTS, req(org_role=Role.ADMIN), idp=view_admins)
    assert up.approval_facts()["org_role"] == "admin"
    # Not IdP-managed in the org: the IdP view is not used.
    plain_plan = make_change_plan(gina(), [ANALYSTS], PROJECTS, request, idp=view)
    assert "set_org_role" in [s.kind.value for s in plain_plan.steps]
