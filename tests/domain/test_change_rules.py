"""The mover planners' rules (domain/change.py), each as its own small table of cases.

``test_change_plan.py`` checks whole plans; here each rule alone. Gina has Production (an
individual grant and two groups' grants) and Staging (from a group).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.change import (
    ChangePlan,
    ChangeRequest,
    ChangeStep,
    admins_of,
    align_new_address_steps,
    change_blockers,
    concerned_admins,
    email_change_blockers,
    group_union_findings,
    groups_to_leave,
    invite_new_address_step,
    join_group_steps,
    kept_by_individual_grant,
    leave_group_steps,
    module_steps,
    move_and_remove_steps,
    new_address_blockers,
    org_admin_warnings,
    org_role_steps,
    pending_warnings,
    production_projects,
    project_step,
    requested_project_steps,
    waiting_warnings,
)
from domain.models import Member, Module, PermissionGroup, Project, ProjectGrant, Role
from domain.steps import GrantModules, InviteMember, SetOrgRole, SetProjectRole

GINA = "gina@x.com"
NEW = "gina.new@x.com"
NOW = datetime(2025, 6, 1, tzinfo=UTC)
PROJECTS = [
    Project(id="1", name="Production", environment="Production", admins=("sofia@x.com", GINA)),
    Project(id="2", name="Staging", environment="staging", admins=("raj@x.com",)),
]
ANALYSTS = PermissionGroup(id="10", name="Analysts", projects={"Production": Role.MEMBER})
MANAGERS = PermissionGroup(
    id="11", name="Managers", projects={"Production": Role.MANAGER, "Staging": Role.MEMBER}
)


def grant(project: str, role: Role, *sources: str) -> ProjectGrant:
    return ProjectGrant(project=project, role=role, sources=sources or ("individual",))


def gina(**kw: Any) -> Member:
    base: dict[str, Any] = {
        "email": GINA,
        "org_role": Role.MEMBER,
        "modules": (Module.EXPERIMENT,),
        "projects": (
            grant("Production", Role.MANAGER, "individual", "group:Analysts", "group:Managers"),
            grant("Staging", Role.MEMBER, "group:Managers"),
        ),
        "groups": ("10", "11"),
        "last_login_at": NOW - timedelta(days=1),
    }
    return Member(**{**base, **kw})


def req(**kw: Any) -> ChangeRequest:
    return ChangeRequest(email=GINA, **kw)


def ids(steps: list[ChangeStep]) -> list[str]:
    return [s.id for s in steps]


# --- change of access ----------------------------------------------------------------------------
def test_production_projects() -> None:
    assert production_projects(PROJECTS) == ["Production"]


@pytest.mark.parametrize(
    ("member", "request_", "blockers"),
    [
        pytest.param(gina(), req(projects={"Staging": None}), [], id="none"),
        pytest.param(
            None,
            req(projects={"Nope": Role.VIEWER, "Gone": None}),
            ["unknown project(s): Gone, Nope", f"{GINA} is not a member of the org"],
            id="unknown-project-and-not-a-member",
        ),
    ],
)
def test_change_blockers(
    member: Member | None, request_: ChangeRequest, blockers: list[str]
) -> None:
    assert change_blockers(member, request_, projects=PROJECTS) == blockers


@pytest.mark.parametrize(
    ("status", "warned"), [pytest.param("joined", False), pytest.param("pending", True)]
)
def test_pending_warnings(status: str, warned: bool) -> None:
    assert bool(pending_warnings(gina(status=status))) is warned


@pytest.mark.parametrize(
    ("target", "leaving"),
    [
        pytest.param({"Production": Role.MANAGER}, [], id="nothing-grants-more"),
        pytest.param({"Production": Role.MEMBER}, ["11"], id="the-group-above-the-target"),
        pytest.param({"Production": Role.VIEWER}, ["10", "11"], id="both"),
        pytest.param({"Staging": None}, ["11"], id="no-access-leaves-any-granting-group"),
    ],
)
def test_groups_to_leave(target: dict[str, Role | None], leaving: list[str]) -> None:
    assert list(groups_to_leave([ANALYSTS, MANAGERS], req(projects=target))) == leaving


@pytest.mark.parametrize(
    ("group", "blocked"),
    [
        pytest.param(MANAGERS, False, id="org-side"),
        pytest.param(MANAGERS.model_copy(update={"idp_managed": True}), True, id="idp-managed"),
    ],
)
def test_group_union_findings(group: PermissionGroup, blocked: bool) -> None:
    warnings, blockers = group_union_findings(
        gina(), req(projects={"Production": Role.MEMBER}), leaving={group.id: group}
    )
    assert warnings == [
        "permission group 'Managers' grants Production=manager, Staging=member: the effective "
        "role is the highest of the individual and group grants, so changing the individual "
        "grant alone would leave Production (manager > member) — the plan removes "
        f"{GINA} from the group"
    ]
    assert bool(blockers) is blocked


@pytest.mark.parametrize(
    ("role", "cur", "trapped", "expected", "widening"),
    [
        pytest.param(Role.MANAGER, grant("W", Role.VIEWER), False, "set_project_role:W", True),
        pytest.param(Role.VIEWER, grant("W", Role.MEMBER), False, "set_project_role:W", False),
        pytest.param(Role.MEMBER, grant("W", Role.MEMBER), False, None, False, id="same"),
        pytest.param(
            Role.MEMBER, grant("W", Role.MEMBER), True, "set_project_role:W", False, id="trapped"
        ),
        pytest.param(None, grant("W", Role.MEMBER), False, "remove_project_role:W", False),
        pytest.param(None, grant("W", Role.MEMBER, "group:g"), False, None, False, id="no-own"),
        pytest.param(Role.VIEWER, None, False, "set_project_role:W", True, id="no-access"),
    ],
)
def test_project_step(
    role: Role | None,
    cur: ProjectGrant | None,
    trapped: bool,
    expected: str | None,
    widening: bool,
) -> None:
    step = project_step("W", role, cur=cur, trapped=trapped)
    assert (step.id if step else None) == expected
    assert (step.widening if step else False) is widening


def test_requested_project_steps_by_project() -> None:
    steps = requested_project_steps(
        gina(), req(projects={"Staging": Role.VIEWER, "Production": Role.MEMBER}), leaving={}
    )
    assert ids(steps) == ["set_project_role:Production", "set_project_role:Staging"]
    assert steps[0].params == {"project": "Production", "role": "member"}


@pytest.mark.parametrize(
    ("member", "leaving", "kept"),
    [
        pytest.param(gina(), {"11": MANAGERS}, ["set_project_role:Staging"], id="group-gave-it"),
        pytest.param(
            gina(projects=(grant("Staging", Role.MEMBER, "individual", "group:Managers"),)),
            {"11": MANAGERS},
            ["set_project_role:Staging"],
            id="individual-hidden-by-the-group",
        ),
        pytest.param(
            gina(projects=(grant("Staging", Role.MANAGER, "individual", "group:Managers"),)),
            {"11": MANAGERS},
            [],
            id="individual-grant-above-keeps-it",
        ),
        pytest.param(gina(), {}, [], id="no-group-left"),
    ],
)
def test_kept_by_individual_grant(
    member: Member, leaving: dict[str, PermissionGroup], kept: list[str]
) -> None:
    steps, warnings = kept_by_individual_grant(
        member,
        req(projects={"Production": Role.MEMBER}),
        mine=[ANALYSTS, MANAGERS],
        leaving=leaving,
    )
    assert ids(steps) == kept and len(warnings) == len(kept)


def test_leave_group_steps_in_the_order_found() -> None:
    steps = leave_group_steps({"11": MANAGERS, "10": ANALYSTS})
    assert ids(steps) == ["remove_group_membership:11", "remove_group_membership:10"]
    assert steps[0].params == {"group": "Managers"}


@pytest.mark.parametrize(
    ("have", "want", "expected", "widening"),
    [
        pytest.param(Role.MEMBER, Role.ADMIN, [f"set_org_role:{GINA}"], True, id="widen"),
        pytest.param(Role.MEMBER, Role.VIEWER, [f"set_org_role:{GINA}"], False, id="narrow"),
        pytest.param(Role.MEMBER, Role.MEMBER, [], False, id="same"),
        pytest.param(None, Role.VIEWER, [f"set_org_role:{GINA}"], True, id="unknown-before"),
        pytest.param(Role.MEMBER, None, [], False, id="not-asked"),
    ],
)
def test_org_role_steps(
    have: Role | None, want: Role | None, expected: list[str], widening: bool
) -> None:
    steps = org_role_steps(gina(org_role=have), req(org_role=want, modules_add=(Module.GOVERN,)))
    assert ids(steps) == expected
    assert all(s.widening is widening for s in steps)


@pytest.mark.parametrize(
    ("org_role", "projects", "warned"),
    [
        pytest.param(Role.ADMIN, {"Staging": Role.VIEWER}, True, id="admin-with-a-lower-role"),
        pytest.param(Role.ADMIN, {"Staging": None}, False, id="admin-removing"),
        pytest.param(None, {"Staging": Role.VIEWER}, False, id="member"),
    ],
)
def test_org_admin_warnings(
    org_role: Role | None, projects: dict[str, Role | None], warned: bool
) -> None:
    assert bool(org_admin_warnings(gina(), req(org_role=org_role, projects=projects))) is warned


@pytest.mark.parametrize(
    ("add", "remove", "expected"),
    [
        pytest.param(
            (Module.GOVERN, Module.AUDIENCES, Module.EXPERIMENT),
            (),
            {"grant_modules": ["audiences", "govern"]},
            id="only-what-is-missing-sorted",
        ),
        pytest.param(
            (), (Module.EXPERIMENT, Module.GOVERN), {"revoke_modules": ["experiment"]}, id="revoke"
        ),
    ],
)
def test_module_steps(
    add: tuple[Module, ...], remove: tuple[Module, ...], expected: dict[str, list[str]]
) -> None:
    steps = module_steps(gina(), req(modules_add=add, modules_remove=remove))
    assert {s.kind.value: s.params["modules"] for s in steps} == expected
    assert all(s.widening is (s.kind.value == "grant_modules") for s in steps)


def test_concerned_admins_are_those_of_the_projects_touched_but_the_member() -> None:
    steps = requested_project_steps(gina(), req(projects={"Production": Role.MEMBER}), leaving={})
    assert concerned_admins(gina(), steps, leaving={}, projects=PROJECTS) == ["sofia@x.com"]
    assert concerned_admins(gina(), [], leaving={"11": MANAGERS}, projects=PROJECTS) == [
        "raj@x.com",
        "sofia@x.com",
    ]


def approval_plan(*steps: ChangeStep) -> ChangePlan:
    return ChangePlan(subject=GINA, production_projects=["Production"], steps=list(steps))


@pytest.mark.parametrize(
    ("steps", "facts"),
    [
        pytest.param(
            [
                ChangeStep.of(
                    SetProjectRole(project="Production", role=Role.ADMIN),
                    "P",
                    reason="",
                    widening=True,
                ),
                ChangeStep.of(
                    SetProjectRole(project="Production", role=Role.VIEWER), "Q", reason=""
                ),
                ChangeStep.of(
                    SetProjectRole(project="Staging", role=Role.ADMIN),
                    "S",
                    reason="",
                    widening=True,
                ),
            ],
            {"production_roles": ("admin",), "org_role": None, "modules": ()},
            id="only-production-widened",
        ),
        pytest.param(
            [
                ChangeStep.of(SetOrgRole(role=Role.ADMIN), GINA, reason="", widening=True),
                ChangeStep.of(
                    GrantModules(modules=[Module.GOVERN]), GINA, reason="", widening=True
                ),
            ],
            {"production_roles": (), "org_role": "admin", "modules": ("govern",)},
            id="org-role-and-modules",
        ),
        pytest.param(
            [
                ChangeStep.of(
                    InviteMember(
                        role=Role.MEMBER,
                        projects={"Production": Role.VIEWER, "Staging": Role.ADMIN},
                        modules=[Module.EXPERIMENT],
                    ),
                    NEW,
                    reason="",
                    widening=True,
                )
            ],
            {"production_roles": ("viewer",), "org_role": "member", "modules": ("experiment",)},
            id="an-invite",
        ),
        pytest.param(
            [ChangeStep.of(SetOrgRole(role=Role.VIEWER), GINA, reason="")],
            {"production_roles": (), "org_role": None, "modules": ()},
            id="narrowing-only",
        ),
    ],
)
def test_approval_facts(steps: list[ChangeStep], facts: dict[str, Any]) -> None:
    assert approval_plan(*steps).approval_facts() == facts


# --- change of email -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("old", "new", "new_email", "blockers"),
    [
        pytest.param(gina(), None, NEW, [], id="go"),
        pytest.param(gina(), None, GINA, ["the new address is the old one"], id="same"),
        pytest.param(None, None, NEW, [f"{GINA} is not a member of the org"], id="nobody"),
        pytest.param(None, gina(email=NEW), NEW, [], id="done"),
        pytest.param(
            gina(status="pending"),
            None,
            NEW,
            [f"{GINA} has not joined the org (a pending invite): revoke it"],
            id="old-pending",
        ),
    ],
)
def test_email_change_blockers(
    old: Member | None, new: Member | None, new_email: str, blockers: list[str]
) -> None:
    assert email_change_blockers(old, new, old_email=GINA, new_email=new_email) == blockers


def test_invite_new_address_step() -> None:
    step = invite_new_address_step(
        gina(org_role=None), {"Staging": Role.MEMBER}, old_email=GINA, new_email=NEW
    )
    assert step.id == f"invite_member:{NEW}" and step.widening
    assert step.params == {
        "role": "viewer",
        "projects": {"Staging": "member"},
        "modules": ["experiment"],
    }


@pytest.mark.parametrize(
    ("new", "expected"),
    [
        pytest.param(
            Member(email=NEW, org_role=Role.VIEWER),
            [
                f"set_org_role:{NEW}",
                f"set_project_role:{NEW} in Production",
                f"grant_modules:{NEW}",
            ],
            id="everything-missing",
        ),
        pytest.param(
            Member(
                email=NEW,
                org_role=Role.MEMBER,
                modules=(Module.EXPERIMENT,),
                projects=(grant("Production", Role.VIEWER, "individual"),),
            ),
            [],
            id="aligned",
        ),
        pytest.param(
            Member(
                email=NEW,
                org_role=None,
                modules=(Module.EXPERIMENT,),
                projects=(grant("Production", Role.VIEWER, "group:Managers"),),
            ),
            [f"set_project_role:{NEW} in Production"],
            id="a-group-grant-is-not-the-individual-one",
        ),
    ],
)
def test_align_new_address_steps(new: Member, expected: list[str]) -> None:
    steps = align_new_address_steps(
        gina(), new, individual={"Production": Role.VIEWER}, old_email=GINA, new_email=NEW
    )
    assert ids(steps) == expected
    roles = [s for s in steps if s.kind.value == "set_project_role"]
    assert all(s.params["email"] == NEW for s in roles)


@pytest.mark.parametrize(
    ("new", "joined", "warned"),
    [
        pytest.param(None, ["10", "11"], False, id="invited"),
        pytest.param(Member(email=NEW, groups=("10",)), ["11"], False, id="in-one-already"),
        pytest.param(None, ["10", "11"], True, id="idp-managed-group"),
    ],
)
def test_join_group_steps(new: Member | None, joined: list[str], warned: bool) -> None:
    groups = [ANALYSTS, MANAGERS.model_copy(update={"idp_managed": warned})]
    steps, warnings = join_group_steps(gina(), new, groups=groups, old_email=GINA, new_email=NEW)
    assert [s.target for s in steps] == joined
    assert steps[0].params["email"] == NEW
    assert bool(warnings) is warned


def test_admins_of_the_projects_named_but_one() -> None:
    assert admins_of(["Production", "Staging", "Nope"], PROJECTS, besides=GINA) == [
        "raj@x.com",
        "sofia@x.com",
    ]


def test_waiting_warnings() -> None:
    (warning,) = waiting_warnings(old_email=GINA, new_email=NEW)
    assert warning.startswith(f"{NEW} has not accepted the invitation yet")


def test_move_and_remove_steps() -> None:
    steps = move_and_remove_steps(GINA, NEW, owned_assets=3)
    assert ids(steps) == [f"transfer_content:{GINA}", f"remove_member:{GINA}"]
    assert steps[0].params == {"to": NEW}
    assert "(3 asset(s))" in steps[0].reason


@pytest.mark.parametrize(
    ("new", "blocked"),
    [
        pytest.param(None, False, id="not-there-yet"),
        pytest.param(gina(email=NEW), False, id="signed-in"),
        pytest.param(gina(email=NEW, last_login_at=NOW - timedelta(days=40)), True, id="stale"),
    ],
)
def test_new_address_blockers(new: Member | None, blocked: bool) -> None:
    assert bool(new_address_blockers(new, NOW, new_email=NEW)) is blocked
