"""The offboarding planner as a table of cases (STYLE.md point 13): pure, no servers, no clock.

One small world (:func:`world`) where Dana leaves: she has assets in Web and Mobile, Sofia is
her manager on the roster, Alice administers Web and Raj administers Mobile. Each case changes
a piece of that world or of the options and checks the plan: who receives what, the steps and
their order, the warnings, the blockers and the hash.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from domain.models import (
    ApiKey,
    Asset,
    AssetKind,
    IdpGroup,
    IdpUser,
    Member,
    Module,
    OrgEvent,
    Project,
    ProjectGrant,
    Role,
    RosterEntry,
    RosterStatus,
)
from domain.plan import (
    Inventory,
    Options,
    Plan,
    Reason,
    Step,
    eligible,
    find_lookalikes,
    is_mapped_idp_group,
    make_offboarding_plan,
)
from domain.plan import StepKind as K

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
DANA = "dana.leaver@acme.com"  # the person leaving
SOFIA = "sofia.lead@acme.com"  # Dana's manager on the roster; has Web, not Mobile
ALICE = "alice.admin@acme.com"  # Web's admin
RAJ = "raj.admin@acme.com"  # Mobile's admin
RITA = "rita.receiver@acme.com"  # an explicit --receiver; has Web (viewer)
BOB = "bob.peer@acme.com"  # co-manages one of Dana's keys
AMY = "amy.analyst@acme.com"
ZED = "zed.analyst@acme.com"
ALL = ["1", "2", "3"]  # Dana's assets: 1 in Web, 2 and 3 in Mobile


# --- building a world ----------------------------------------------------------------------------
def grant(project: str, role: str = "member", *sources: str) -> ProjectGrant:
    return ProjectGrant(project=project, role=Role(role), sources=sources or ("individual",))


def person(
    email: str,
    *grants: ProjectGrant,
    days: int | None = 1,
    status: str = "joined",
    org_role: Role = Role.MEMBER,
    **kw: Any,
) -> Member:
    """A member who last logged in ``days`` ago (None: never)."""
    login = None if days is None else T0 - timedelta(days=days)
    return Member(
        email=email,
        org_role=org_role,
        status=status,
        last_login_at=login,
        projects=grants,
        **kw,
    )


def dana(*grants: ProjectGrant, **kw: Any) -> Member:
    return person(DANA, *(grants or (grant("Web"), grant("Mobile", "viewer"))), **kw)


def people(*changed: Member, without: tuple[str, ...] = ()) -> dict[str, Member]:
    """The possible receivers, with ``changed`` members replacing (or joining) the usual ones."""
    base = [
        person(SOFIA, grant("Web")),
        person(ALICE, grant("Web", "admin")),
        person(RAJ, grant("Mobile", "admin")),
        person(RITA, grant("Web", "viewer")),
        person(BOB, grant("Web")),
    ]
    out = {m.email: m for m in [*base, *changed]}
    return {e: m for e, m in out.items() if e not in without}


def asset(id_: str, project: str, kind: AssetKind = AssetKind.DASHBOARD) -> Asset:
    return Asset(id=id_, kind=kind, name=f"{kind.value} {id_}", project=project, owner=DANA)


def key(id_: str, *managers: str, status: str = "active") -> ApiKey:
    return ApiKey(
        id=id_, name=f"key {id_}", kind="ingestion", project="Web", managers=managers, status=status
    )


def roster(
    status: RosterStatus = RosterStatus.TERMINATED, manager: str | None = SOFIA
) -> RosterEntry:
    return RosterEntry(email=DANA, name="Dana Leaver", status=status, manager=manager)


def idp(*groups: tuple[str, str], active: bool = True) -> dict[str, Any]:
    """World changes for an IdP user ``u-dana`` in ``groups`` (id, name)."""
    return {
        "idp_user": IdpUser(id="u-dana", user_name=DANA, email=DANA, active=active),
        "idp_groups": [IdpGroup(id=i, name=n, members=("u-dana",)) for i, n in groups],
    }


SOLE = {  # Dana is the only admin of Payments, where she owns asset 4
    "member": dana(grant("Web"), grant("Mobile", "viewer"), grant("Payments", "admin")),
    "projects": [
        Project(id="p1", name="Web", admins=(ALICE,)),
        Project(id="p2", name="Mobile", admins=(RAJ,)),
        Project(id="p3", name="Payments", admins=(DANA,)),
    ],
    "assets": [
        asset("1", "Web"),
        asset("2", "Mobile"),
        asset("3", "Mobile"),
        asset("4", "Payments"),
    ],
}
IDP = idp(("g-web", "amplitude-project-viewers-Web"), ("g-org", "amplitude-org-members"))
KEYS = {"api_keys": [key("k1", DANA, BOB), key("k2", DANA, status="revoked")]}


def world(**changes: Any) -> Inventory:
    base: dict[str, Any] = {
        "subject": DANA,
        "member": dana(),
        "projects": [
            Project(id="p1", name="Web", admins=(ALICE,)),
            Project(id="p2", name="Mobile", admins=(RAJ,)),
        ],
        "assets": [
            asset("1", "Web"),
            asset("2", "Mobile", AssetKind.NOTEBOOK),
            asset("3", "Mobile", AssetKind.COHORT),
        ],
        "people": people(),
        "roster": roster(),
        "taken_at": T0,
    }
    return Inventory(**{**base, **changes})


def plan_for(
    inv: Inventory | None = None, reason: Reason = Reason.TERMINATION, **opts: Any
) -> Plan:
    return make_offboarding_plan(inv or world(), Options(reason=reason, **opts))


def emergency(inv: Inventory | None = None) -> Plan:
    return plan_for(inv, Reason.SECURITY_INCIDENT, emergency=True)


# --- reading a plan ------------------------------------------------------------------------------
def ids(plan: Plan) -> list[str]:
    return [s.id for s in plan.steps]


def kinds(plan: Plan) -> list[str]:
    return [s.kind.value for s in plan.steps]


def phases(plan: Plan) -> list[str]:
    """The kinds in order, runs of the same kind collapsed."""
    out: list[str] = []
    for k in kinds(plan):
        if not out or out[-1] != k:
            out.append(k)
    return out


def of(plan: Plan, kind: K) -> list[Step]:
    return [s for s in plan.steps if s.kind is kind]


def step(plan: Plan, step_id: str) -> Step:
    (found,) = [s for s in plan.steps if s.id == step_id]
    return found


def at(plan: Plan, step_id: str) -> int:
    return ids(plan).index(step_id)


def grants(plan: Plan) -> list[str]:
    return [s.target for s in of(plan, K.GRANT_PROJECT_ACCESS)]


def has_text(texts: list[str], fragment: str | None) -> bool:
    return not texts if fragment is None else any(fragment in t for t in texts)


# --- who receives each asset ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "opts", "receivers", "granted", "blocker", "warning"),
    [
        pytest.param({}, {}, {SOFIA: ALL}, [f"{SOFIA}:Mobile"], None, None, id="active-manager"),
        pytest.param(
            {}, {"receiver": RITA}, {RITA: ALL}, [f"{RITA}:Mobile"], None, None, id="receiver-wins"
        ),
        pytest.param(
            {"people": people(person(RITA, org_role=Role.ADMIN))},
            {"receiver": RITA},
            {RITA: ALL},
            [],
            None,
            None,
            id="org-admin-receiver-needs-no-grant",
        ),
        pytest.param(
            {"people": people(person(SOFIA, grant("Web"), days=45))},
            {},
            {ALICE: ["1"], RAJ: ["2", "3"]},
            [],
            None,
            f"manager {SOFIA} cannot receive content (not logged in within 30 days "
            "(last 2026-09-17)): falling back to each project's admin",
            id="manager-inactive-45-days",
        ),
        pytest.param(
            {"people": people(person(SOFIA, grant("Web"), days=30))},
            {},
            {SOFIA: ALL},
            [f"{SOFIA}:Mobile"],
            None,
            None,
            id="manager-30-days-is-still-active",
        ),
        pytest.param(
            {"people": people(person(SOFIA, status="pending", days=None))},
            {},
            {ALICE: ["1"], RAJ: ["2", "3"]},
            [],
            None,
            "has not joined",
            id="manager-pending",
        ),
        pytest.param(
            {"people": people(without=(SOFIA,))},
            {},
            {ALICE: ["1"], RAJ: ["2", "3"]},
            [],
            None,
            f"manager {SOFIA} cannot receive content (not a member)",
            id="manager-not-in-the-org",
        ),
        pytest.param(
            {"roster": None},
            {},
            {ALICE: ["1"], RAJ: ["2", "3"]},
            [],
            None,
            None,
            id="no-roster-entry",
        ),
        pytest.param(
            {
                "people": people(
                    person(SOFIA, days=45), person(RAJ, grant("Mobile", "admin"), days=60)
                )
            },
            {},
            {ALICE: ["1"]},
            [],
            "nobody qualifies to receive 2 asset(s) in Mobile: choose a receiver (--receiver)",
            "cannot receive content",
            id="nobody-qualifies-in-mobile",
        ),
        pytest.param(
            {"assets": [asset("9", "Legacy")], "roster": None},
            {},
            {},
            [],
            "nobody qualifies to receive 1 asset(s) in Legacy: choose a receiver",
            None,
            id="project-nobody-administers",
        ),
        pytest.param(
            {"people": people(person(RITA, days=90))},
            {"receiver": RITA},
            {ALICE: ["1"], RAJ: ["2", "3"]},
            [],
            f"the receiver {RITA} cannot receive content: not logged in within 30 days",
            None,
            id="receiver-inactive",
        ),
        pytest.param(
            {},
            {"receiver": "nobody@acme.com"},
            {ALICE: ["1"], RAJ: ["2", "3"]},
            [],
            "the receiver nobody@acme.com cannot receive content: not a member",
            None,
            id="receiver-unknown",
        ),
        pytest.param(
            {},  # as take_inventory gives it: the subject is not among the receivers
            {"receiver": DANA},
            {ALICE: ["1"], RAJ: ["2", "3"]},
            [],
            f"the receiver {DANA} cannot receive content: is the person leaving",
            None,
            id="receiver-is-the-subject",
        ),
    ],
)
def test_receiver_of_each_asset(
    changes: dict[str, Any],
    opts: dict[str, Any],
    receivers: dict[str, list[str]],
    granted: list[str],
    blocker: str | None,
    warning: str | None,
) -> None:
    plan = plan_for(world(**changes), **opts)
    assert plan.receivers == receivers
    assert [s.target for s in of(plan, K.TRANSFER_ASSETS)] == sorted(receivers)
    for s in of(plan, K.TRANSFER_ASSETS):
        assert s.params == {"asset_ids": receivers[s.target], "from_email": DANA}
    assert grants(plan) == granted
    assert has_text(plan.blockers, blocker), plan.blockers
    assert has_text(plan.warnings, warning), plan.warnings


def test_grant_is_a_viewer_grant_once_per_project_before_the_transfer() -> None:
    plan = plan_for()
    g = step(plan, f"grant_project_access:{SOFIA}:Mobile")
    assert g.params == {"email": SOFIA, "project": "Mobile", "role": "viewer"}
    assert at(plan, g.id) < at(plan, f"transfer_assets:{SOFIA}") < at(plan, f"remove_member:{DANA}")


def test_a_project_admin_is_never_granted_viewer_even_without_a_listed_grant() -> None:
    # Raj is Mobile's admin by the project's list, though his member record shows no grant:
    # a Viewer grant would demote him.
    inv = world(people=people(person(SOFIA, days=45), person(RAJ)))
    plan = plan_for(inv)
    assert plan.receivers == {ALICE: ["1"], RAJ: ["2", "3"]}
    assert grants(plan) == []


# --- sole-admin projects -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "opts", "promoted", "blocker"),
    [
        pytest.param({}, {}, SOFIA, None, id="manager"),
        pytest.param({}, {"receiver": RITA}, RITA, None, id="receiver-first"),
        pytest.param(
            {
                "people": people(
                    person(SOFIA, days=45),
                    person(ZED, grant("Payments", "viewer")),
                    person(AMY, grant("Payments")),
                )
            },
            {},
            AMY,
            None,
            id="inactive-manager-then-someone-with-access",
        ),
        pytest.param(
            {"people": people(person(SOFIA, days=45), person(AMY, grant("Payments"), days=31))},
            {},
            None,
            f"{DANA} is the sole Admin of Payments and nobody qualifies to replace them",
            id="nobody-qualifies",
        ),
        pytest.param(
            {"roster": None},
            {},
            None,
            "sole Admin of Payments",
            id="no-manager-nobody-with-access",
        ),
    ],
)
def test_sole_admin_replacement(
    changes: dict[str, Any], opts: dict[str, Any], promoted: str | None, blocker: str | None
) -> None:
    plan = plan_for(world(**{**SOLE, **changes}), **opts)
    promotions = [(s.target, s.params["email"]) for s in of(plan, K.PROMOTE_ADMIN)]
    assert promotions == ([("Payments", promoted)] if promoted else [])
    assert has_text(plan.blockers, blocker), plan.blockers
    if promoted:  # the new admin of Payments is also someone who may receive its content
        assert "4" in plan.receivers[promoted]
        assert f"{promoted}:Payments" not in grants(plan)


def test_replacement_is_promoted_before_transfer_and_removal_and_never_demoted() -> None:
    plan = plan_for(world(**SOLE))
    promote = step(plan, "promote_admin:Payments")
    assert promote.params == {"email": SOFIA}
    assert at(plan, promote.id) < at(plan, f"transfer_assets:{SOFIA}")
    assert at(plan, promote.id) < at(plan, f"remove_member:{DANA}")
    assert plan.receivers == {SOFIA: ["1", "2", "3", "4"]}
    # Sofia gets Mobile, but not a Viewer grant in Payments, where she was just made Admin.
    assert grants(plan) == [f"{SOFIA}:Mobile"]


@pytest.mark.parametrize(
    ("admins", "reason", "keep"),
    [
        pytest.param((DANA, ALICE), Reason.TERMINATION, (), id="co-admin"),
        pytest.param((DANA,), Reason.ROLE_CHANGE, ("Payments",), id="kept-project"),
    ],
)
def test_no_promotion_needed(
    admins: tuple[str, ...], reason: Reason, keep: tuple[str, ...]
) -> None:
    projects = [*SOLE["projects"][:2], Project(id="p3", name="Payments", admins=admins)]
    plan = plan_for(world(**{**SOLE, "projects": projects}), reason, keep_projects=keep)
    assert of(plan, K.PROMOTE_ADMIN) == []
    assert not has_text(plan.blockers, "sole Admin")


# --- the IdP -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "removed", "deactivated"),
    [
        pytest.param(
            idp(
                ("g1", "amplitude-project-viewers-Web"),
                ("g2", "Amplitude-Org-Members"),
                ("g3", "everyone"),
                ("g4", "slack-amplitude-fans"),
            ),
            {"g1", "g2"},
            True,
            id="only-mapped-groups",
        ),
        pytest.param(
            idp(("g1", "amplitude-org-members"), active=False), {"g1"}, False, id="inactive"
        ),
        pytest.param(idp(), set(), True, id="in-no-group"),
        pytest.param({}, set(), False, id="no-idp-user"),
    ],
)
def test_idp_steps_come_before_the_org_removal(
    changes: dict[str, Any], removed: set[str], deactivated: bool
) -> None:
    plan = plan_for(world(**changes))
    groups = of(plan, K.REMOVE_IDP_GROUP)
    assert {s.target for s in groups} == removed
    assert all(s.params["user_id"] == "u-dana" for s in groups)
    assert [s.target for s in of(plan, K.DEACTIVATE_IDP_USER)] == (
        ["u-dana"] if deactivated else []
    )
    removal = at(plan, f"remove_member:{DANA}")
    idp_steps = [
        i for i, s in enumerate(plan.steps) if s.kind.value.endswith(("_idp_group", "_idp_user"))
    ]
    assert all(i < removal for i in idp_steps)
    if removed and deactivated:  # out of the groups, then deactivated
        assert max(at(plan, f"remove_idp_group:{g}") for g in removed) < at(
            plan, "deactivate_idp_user:u-dana"
        )


@pytest.mark.parametrize(
    ("name", "mapped"),
    [
        ("amplitude-org-admins", True),
        ("Amplitude-Project-Viewers-Web", True),
        ("amplitude", False),
        ("team-amplitude-users", False),
    ],
)
def test_is_mapped_idp_group(name: str, mapped: bool) -> None:
    assert is_mapped_idp_group(name) is mapped


# --- API keys ------------------------------------------------------------------------------------
def test_keys_rotated_after_removal_and_the_secret_goes_to_the_other_managers() -> None:
    inv = world(api_keys=[key("k1", DANA, SOFIA, BOB), key("k2", BOB, DANA, status="revoked")])
    plan = plan_for(inv)
    (rotate,) = of(plan, K.ROTATE_KEY)
    assert rotate.id == "rotate_key:k1"
    assert rotate.params == {"name": "key k1", "notify": [BOB, SOFIA]}
    assert at(plan, f"remove_member:{DANA}") < at(plan, rotate.id)
    assert of(plan, K.REVOKE_KEY) == []
    assert not has_text(plan.warnings, "no other manager")


def test_a_key_nobody_else_manages_is_rotated_with_a_warning() -> None:
    plan = plan_for(world(api_keys=[key("k9", DANA)]))
    assert step(plan, "rotate_key:k9").params["notify"] == []
    assert has_text(plan.warnings, "key 'key k9' (k9) has no other manager")


def test_emergency_revokes_keys_instead_of_rotating() -> None:
    plan = emergency(world(**KEYS))
    assert [s.id for s in of(plan, K.REVOKE_KEY)] == ["revoke_key:k1"]
    assert of(plan, K.ROTATE_KEY) == []
    assert "revoked at once" in step(plan, "revoke_key:k1").reason


# --- order ---------------------------------------------------------------------------------------
def test_normal_order() -> None:
    plan = plan_for(world(**SOLE, **IDP, **KEYS))
    assert phases(plan) == [
        "promote_admin",
        "grant_project_access",
        "transfer_assets",
        "remove_idp_group",
        "deactivate_idp_user",
        "remove_member",
        "rotate_key",
    ]


def test_emergency_locks_out_first_and_collects_activity_last() -> None:
    plan = emergency(world(**SOLE, **IDP, **KEYS))
    assert phases(plan) == [
        "deactivate_idp_user",  # no new sign-in, then out of the groups that provision
        "remove_idp_group",
        "revoke_key",
        "promote_admin",  # the org refuses to remove a sole admin
        "remove_member",
        "grant_project_access",
        "transfer_assets",
        "collect_activity",
    ]
    assert step(plan, f"collect_activity:{DANA}").params == {"days": 30}
    assert plan.emergency and plan.reason is Reason.SECURITY_INCIDENT


@pytest.mark.parametrize("urgent", [False, True], ids=["normal", "emergency"])
def test_pending_invitee_has_the_invitation_revoked(urgent: bool) -> None:
    inv = world(member=dana(status="pending", days=None), assets=[])
    plan = emergency(inv) if urgent else plan_for(inv)
    assert f"revoke_invitation:{DANA}" in ids(plan)
    assert of(plan, K.REMOVE_MEMBER) == []


@pytest.mark.parametrize(
    ("changes", "noop"),
    [
        pytest.param({"member": None, "assets": [], "roster": None}, True, id="nobody-anywhere"),
        pytest.param(
            {"member": None, "assets": [], "lookalikes": ["dana.leaver@gmail.com"]},
            True,
            id="only-a-look-alike",
        ),
        pytest.param({"member": None, **idp()}, False, id="idp-user-and-unassigned-assets"),
        pytest.param({"member": None, "assets": [], **KEYS}, False, id="keys-only"),
        pytest.param({"assets": []}, False, id="member-only"),
    ],
)
def test_noop(changes: dict[str, Any], noop: bool) -> None:
    plan = plan_for(world(**changes))
    assert plan.is_noop is noop
    assert (plan.steps == []) is noop


# --- role change: narrow, do not remove ----------------------------------------------------------
NARROW = {
    "member": dana(
        grant("Web", "manager", "individual", "group:web-team"),
        grant("Mobile", "viewer", "individual", "group:amplitude-project-viewers-Mobile"),
        grant("Growth", "member", "group:analysts"),
        modules=(Module.GOVERN, Module.EXPERIMENT),
        groups=("og-analysts", "og-web", "og-news", "og-mobile"),
    ),
    "org_groups": [
        ("og-web", "web-team"),
        ("og-analysts", "analysts"),
        ("og-news", "newsletter"),
        ("og-mobile", "amplitude-project-viewers-Mobile"),
    ],
    "projects": [
        Project(id="p1", name="Web", admins=(ALICE,)),
        Project(id="p2", name="Mobile", admins=(RAJ,)),
        Project(id="p4", name="Growth", admins=(ALICE,)),
    ],
    "assets": [asset("1", "Web"), asset("2", "Mobile"), asset("5", "Growth")],
    **idp(
        ("i-mobile", "amplitude-project-viewers-Mobile"),
        ("i-org", "amplitude-org-members"),
        ("i-all", "everyone"),
    ),
    **KEYS,
}


def narrowed(**changes: Any) -> Plan:
    return plan_for(world(**{**NARROW, **changes}), Reason.ROLE_CHANGE, keep_projects=("Web",))


def test_role_change_narrows_instead_of_removing() -> None:
    plan = narrowed()
    assert plan.keep_projects == ["Web"]
    for gone in (K.REMOVE_MEMBER, K.REVOKE_INVITATION, K.DEACTIVATE_IDP_USER, K.ROTATE_KEY):
        assert of(plan, gone) == [], gone
    # Individual grants outside Web go; Growth comes only from a group, which goes instead.
    assert [s.target for s in of(plan, K.REMOVE_PROJECT_ROLE)] == ["Mobile"]
    assert [s.target for s in of(plan, K.REMOVE_GROUP_MEMBERSHIP)] == ["og-analysts", "og-mobile"]
    assert step(plan, "remove_group_membership:og-analysts").params == {
        "email": DANA,
        "group": "analysts",
    }
    # The IdP group behind Mobile goes (or the sync adds it back); the org-role group stays,
    # so the next sync does not deprovision her.
    assert [s.target for s in of(plan, K.REMOVE_IDP_GROUP)] == ["i-mobile"]
    assert step(plan, f"revoke_modules:{DANA}").params == {"modules": ["experiment", "govern"]}
    # Only what lies outside the kept project moves.
    assert plan.receivers == {SOFIA: ["2", "5"]}
    assert plan.blockers == []


def test_role_change_keeps_what_a_leaving_group_gave_in_a_kept_project() -> None:
    member = dana(
        grant("Web", "manager", "group:analysts"),
        grant("Growth", "member", "group:analysts"),
    )
    plan = narrowed(member=member, org_groups=[("og-analysts", "analysts")], idp_groups=[])
    keep = step(plan, f"grant_project_access:{DANA}:Web")
    assert keep.params == {"email": DANA, "project": "Web", "role": "manager"}
    assert at(plan, keep.id) < at(plan, "remove_group_membership:og-analysts")


def test_role_change_that_would_leave_no_mapped_idp_group_is_blocked() -> None:
    member = dana(
        grant("Web", "manager", "individual"),
        grant("Mobile", "viewer", "group:amplitude-project-viewers-Mobile"),
        idp_managed=True,
    )
    plan = narrowed(member=member, **idp(("i-mobile", "amplitude-project-viewers-Mobile")))
    assert has_text(plan.blockers, "the next IdP sync would remove them from the org")


def test_role_change_without_projects_to_keep_is_a_full_offboarding() -> None:
    plan = plan_for(world(**NARROW), Reason.ROLE_CHANGE)
    assert f"remove_member:{DANA}" in ids(plan)
    assert {"deactivate_idp_user", "rotate_key"} <= set(kinds(plan))
    assert of(plan, K.REMOVE_PROJECT_ROLE) == []


# --- warnings ------------------------------------------------------------------------------------
def export(days_ago: int, action: str = "export") -> OrgEvent:
    return OrgEvent(at=T0 - timedelta(days=days_ago), actor=DANA, action=action, target="Web")


@pytest.mark.parametrize(
    ("changes", "reason", "warning"),
    [
        pytest.param(
            {"lookalikes": ["dana.leaver@gmail.com", "d\u0430na.leaver@acme.com"]},
            Reason.TERMINATION,
            "look-alike accounts exist (not touched): dana.leaver@gmail.com, "
            "d\u0430na.leaver@acme.com",
            id="look-alikes",
        ),
        pytest.param(
            {"activity": [export(3), export(10), export(2, "chart.updated"), export(45)]},
            Reason.TERMINATION,
            f"2 data export(s) by {DANA} in the last 30 days",
            id="recent-exports",
        ),
        pytest.param(
            {"activity": [export(2, "chart.updated"), export(31)]},
            Reason.TERMINATION,
            None,
            id="no-recent-export",
        ),
        pytest.param(
            {"roster": roster(RosterStatus.ACTIVE)},
            Reason.TERMINATION,
            f"the HR roster still lists {DANA} as active",
            id="roster-active-on-termination",
        ),
        pytest.param(
            {"roster": roster(RosterStatus.ACTIVE)},
            Reason.CONTRACT_END,
            "still lists",
            id="roster-active-on-contract-end",
        ),
        pytest.param(
            {"roster": roster(RosterStatus.ACTIVE)}, Reason.ROLE_CHANGE, None, id="role-change"
        ),
        pytest.param({}, Reason.TERMINATION, None, id="terminated-on-the-roster"),
    ],
)
def test_warnings(changes: dict[str, Any], reason: Reason, warning: str | None) -> None:
    plan = plan_for(world(**changes), reason)
    assert has_text(plan.warnings, warning), plan.warnings


# --- the hash and the step ids -------------------------------------------------------------------
def full_world(reverse: bool = False) -> Inventory:
    """Every kind of step, with every list (and dict) built in the order given."""

    def o(xs: list[Any]) -> list[Any]:
        return xs[::-1] if reverse else xs

    changes = {**SOLE, **IDP}
    member = dana(*o([grant("Web"), grant("Mobile", "viewer"), grant("Payments", "admin")]))
    return world(
        **{
            **changes,
            "member": member,
            "projects": o(list(changes["projects"])),
            "assets": o(list(changes["assets"])),
            "idp_groups": o(list(changes["idp_groups"])),
            "people": dict(o(list(people().items()))),
            "api_keys": o([key("k1", *o([DANA, BOB, SOFIA])), key("k3", DANA, ALICE)]),
        }
    )


def test_step_ids_are_kind_and_target() -> None:
    plan = plan_for(full_world())
    assert all(s.id == f"{s.kind.value}:{s.target}" for s in plan.steps)
    assert len(set(ids(plan))) == len(plan.steps)
    assert ids(plan) == [
        "promote_admin:Payments",
        f"grant_project_access:{SOFIA}:Mobile",
        f"transfer_assets:{SOFIA}",
        "remove_idp_group:g-org",
        "remove_idp_group:g-web",
        "deactivate_idp_user:u-dana",
        f"remove_member:{DANA}",
        "rotate_key:k1",
        "rotate_key:k3",
    ]


def test_plan_hash_is_stable_for_the_same_world() -> None:
    first = plan_for(full_world())
    again = plan_for(full_world())
    assert first.hash == again.hash
    assert len(first.hash) == 64 and int(first.hash, 16) >= 0


@pytest.mark.parametrize("urgent", [False, True], ids=["normal", "emergency"])
def test_plan_does_not_depend_on_the_order_the_inventory_lists_things(urgent: bool) -> None:
    make = emergency if urgent else plan_for
    a, b = make(full_world()), make(full_world(reverse=True))
    assert a.steps == b.steps
    assert a.hash == b.hash


def test_plan_hash_ignores_wording() -> None:
    plain = plan_for(full_world())
    noisy = plan_for(
        full_world().model_copy(
            update={"lookalikes": ["dana.leaver@gmail.com"], "activity": [export(1)]}
        )
    )
    assert noisy.warnings != plain.warnings
    assert noisy.hash == plain.hash
    reworded = plain.model_copy(
        update={
            "steps": [s.model_copy(update={"reason": "said otherwise"}) for s in plain.steps],
            "warnings": ["another wording"],
        }
    )
    assert reworded.hash == plain.hash


@pytest.mark.parametrize(
    ("changes", "opts"),
    [
        pytest.param({}, {"receiver": RITA}, id="another-receiver"),
        pytest.param({"assets": SOLE["assets"][:3]}, {}, id="one-asset-less"),
        pytest.param({"api_keys": [key("k1", DANA, BOB)]}, {}, id="notify-changes"),
        pytest.param({"idp_groups": []}, {}, id="no-idp-group"),
        pytest.param({}, {"reason": Reason.CONTRACT_END}, id="reason"),
        pytest.param({}, {"reason": Reason.SECURITY_INCIDENT, "emergency": True}, id="emergency"),
    ],
)
def test_plan_hash_changes_with_what_the_plan_does(
    changes: dict[str, Any], opts: dict[str, Any]
) -> None:
    base = plan_for(full_world())
    other = plan_for(full_world().model_copy(update=changes), **opts)
    assert other.hash != base.hash


# --- look-alikes and eligibility -----------------------------------------------------------------
JON = "jon.smith@acme.com"


@pytest.mark.parametrize(
    ("other", "alike"),
    [
        pytest.param("j\u043en.smith@acme.com", True, id="cyrillic-o"),
        pytest.param("jon.smith@acme-corp.io", True, id="same-name-other-domain"),
        pytest.param("jonsmith@acme.com", True, id="no-dot"),
        pytest.param("j0n.smith@acme.com", True, id="zero-for-o"),
        pytest.param("jon.srnith@acme.com", True, id="rn-for-m"),
        pytest.param("\uff4a\uff4f\uff4e.smith@acme.com", True, id="fullwidth"),
        pytest.param("jane.smith@acme.com", False, id="different-name"),
        pytest.param("jon.smithers@acme.com", False, id="longer-name"),
        pytest.param("jon.smith2@acme.com", False, id="another-digit"),
        pytest.param(JON, False, id="itself"),
        pytest.param("Jon.Smith@acme.com", False, id="itself-in-capitals"),
    ],
)
def test_find_lookalikes(other: str, alike: bool) -> None:
    assert find_lookalikes(JON, [other]) == ([other] if alike else [])


def test_numbered_accounts_are_not_lookalikes_of_each_other() -> None:
    assert find_lookalikes("user000020@x.com", ["user000040@x.com", "user000o2o@x.com"]) == [
        "user000o2o@x.com"
    ]


def test_find_lookalikes_lists_them_sorted() -> None:
    others = ["jon.smith@z.com", JON, "amy@acme.com", "jon.smith@b.com"]
    assert find_lookalikes(JON, others) == ["jon.smith@b.com", "jon.smith@z.com"]


@pytest.mark.parametrize(
    ("member", "why"),
    [
        pytest.param(None, "not a member", id="nobody"),
        pytest.param(person(AMY, days=1), None, id="active"),
        pytest.param(person(AMY, days=30), None, id="thirty-days"),
        pytest.param(
            person(AMY, days=31),
            "not logged in within 30 days (last 2026-10-01)",
            id="thirty-one-days",
        ),
        pytest.param(
            person(AMY, days=None), "not logged in within 30 days (last never)", id="never"
        ),
        pytest.param(person(AMY, status="pending", days=None), "has not joined", id="pending"),
    ],
)
def test_eligible(member: Member | None, why: str | None) -> None:
    assert eligible(member, T0) == why


# --- sessions at the IdP ------------------------------------------------------------------------
def test_sessions_end_after_the_deactivation_where_the_idp_can() -> None:
    plan = plan_for(world(**IDP, idp_ends_sessions=True))
    order = phases(plan)
    assert order.index("deactivate_idp_user") + 1 == order.index("end_idp_sessions")
    assert order.index("end_idp_sessions") < order.index("remove_member")
    assert step(plan, "end_idp_sessions:u-dana").params == {"email": DANA}
    assert not has_text(plan.warnings, "no API to end sessions")


def test_an_emergency_ends_sessions_before_anything_but_the_deactivation() -> None:
    plan = emergency(world(**SOLE, **IDP, **KEYS, idp_ends_sessions=True))
    assert phases(plan)[:3] == ["deactivate_idp_user", "end_idp_sessions", "remove_idp_group"]


def test_sessions_of_someone_deactivated_but_still_in_the_org_are_ended() -> None:
    inv = world(**IDP, idp_ends_sessions=True)
    inv.idp_user = inv.idp_user.model_copy(update={"active": False}) if inv.idp_user else None
    plan = plan_for(inv)
    assert "deactivate_idp_user" not in kinds(plan)
    assert "end_idp_sessions" in kinds(plan)


def test_an_idp_without_a_sessions_api_is_said_in_the_plan() -> None:
    plan = plan_for(world(**IDP))
    assert "end_idp_sessions" not in kinds(plan)
    assert has_text(plan.warnings, f"no API to end sessions: {DANA}'s live sign-in sessions")


def test_a_narrowing_ends_no_session() -> None:
    plan = plan_for(
        world(**IDP, idp_ends_sessions=True), Reason.ROLE_CHANGE, keep_projects=("Web",)
    )
    assert "end_idp_sessions" not in kinds(plan)
    assert not has_text(plan.warnings, "sessions")
