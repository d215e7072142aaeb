"""The offboarding planner's rules (domain/plan.py), each as its own small table of cases.

``test_plan.py`` checks whole plans; here each rule is checked alone, in a world as small as
the rule needs: Dana leaves, Sofia is her manager, Alice and Raj administer projects.
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
    Phases,
    Placement,
    Reason,
    Step,
    StepKind,
    admins_after_promotion,
    choose_replacements,
    default_receiver,
    emergency_order,
    export_warnings,
    grants_to_keep,
    groups_to_leave,
    idp_groups_to_leave,
    idp_steps,
    idp_sync_blockers,
    is_narrowing,
    keep_access_steps,
    key_steps,
    lookalike_warnings,
    make_offboarding_plan,
    manager_warnings,
    moving_assets,
    narrowing_steps,
    needs_access,
    normal_order,
    org_removal_steps,
    place_assets,
    promote_steps,
    receiver_blockers,
    receiver_of,
    replacement_for,
    roster_warnings,
    sole_admin_projects,
    sole_org_admin_blockers,
    transfer_steps,
    unplaced_blockers,
)
from domain.steps import RemoveMember

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)
DANA = "dana@x.com"  # leaving
SOFIA = "sofia@x.com"  # her manager
ALICE = "alice@x.com"  # admin of Web
RAJ = "raj@x.com"  # admin of Mobile
RITA = "rita@x.com"


def grant(project: str, role: Role = Role.MEMBER, *sources: str) -> ProjectGrant:
    return ProjectGrant(project=project, role=role, sources=sources or ("individual",))


def person(email: str, *grants: ProjectGrant, days: int | None = 1, **kw: Any) -> Member:
    login = None if days is None else T0 - timedelta(days=days)
    return Member(
        **{"email": email, "org_role": Role.MEMBER, "last_login_at": login, **kw}, projects=grants
    )


def asset(id_: str, project: str) -> Asset:
    return Asset(id=id_, kind=AssetKind.CHART, name=id_, project=project, owner=DANA)


def world(**kw: Any) -> Inventory:
    base: dict[str, Any] = {
        "subject": DANA,
        "member": person(DANA, grant("Web")),
        "projects": [
            Project(id="1", name="Web", admins=(ALICE,)),
            Project(id="2", name="Mobile", admins=(RAJ,)),
        ],
        "people": {e: person(e) for e in (SOFIA, ALICE, RAJ, RITA)},
        "roster": RosterEntry(
            email=DANA, name="Dana", status=RosterStatus.TERMINATED, manager=SOFIA
        ),
        "taken_at": T0,
    }
    return Inventory(**{**base, **kw})


def opts(reason: Reason = Reason.TERMINATION, **kw: Any) -> Options:
    return Options(reason=reason, **kw)


NARROW = opts(Reason.ROLE_CHANGE, keep_projects=("Web",))


def ids(steps: list[Step]) -> list[str]:
    return [s.id for s in steps]


# --- narrowing or not ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("o", "narrowing"),
    [
        pytest.param(NARROW, True, id="role-change-keeping-projects"),
        pytest.param(opts(Reason.ROLE_CHANGE), False, id="role-change-keeping-nothing"),
        pytest.param(opts(keep_projects=("Web",)), False, id="termination"),
    ],
)
def test_is_narrowing(o: Options, narrowing: bool) -> None:
    assert is_narrowing(o) is narrowing


# --- sole-admin replacement ----------------------------------------------------------------------
SOLE = [
    Project(id="3", name="Pay", admins=(DANA,)),
    Project(id="4", name="Ads", admins=(DANA, ALICE)),
    Project(id="5", name="Apps", admins=(DANA,)),
]


@pytest.mark.parametrize(
    ("o", "sole"),
    [
        pytest.param(opts(), ["Apps", "Pay"], id="by-name-co-admin-aside"),
        pytest.param(opts(Reason.ROLE_CHANGE, keep_projects=("Pay",)), ["Apps"], id="kept"),
    ],
)
def test_sole_admin_projects(o: Options, sole: list[str]) -> None:
    assert [p.name for p in sole_admin_projects(world(projects=SOLE), o)] == sole


PAY = SOLE[0]


@pytest.mark.parametrize(
    ("changes", "o", "who"),
    [
        pytest.param({}, opts(receiver=RITA), RITA, id="receiver-first"),
        pytest.param({}, opts(), SOFIA, id="then-the-manager"),
        pytest.param(
            {
                "people": {
                    SOFIA: person(SOFIA, days=45),
                    RITA: person(RITA, grant("Pay")),
                    ALICE: person(ALICE),
                }
            },
            opts(),
            RITA,
            id="then-someone-with-access",
        ),
        pytest.param({"roster": None, "people": {RITA: person(RITA)}}, opts(), None, id="nobody"),
        pytest.param({}, opts(receiver=DANA), SOFIA, id="never-the-leaver"),
    ],
)
def test_replacement_for(changes: dict[str, Any], o: Options, who: str | None) -> None:
    assert replacement_for(world(**changes), o, project=PAY) == who


def test_choose_replacements_promotes_or_blocks_per_project() -> None:
    inv = world(projects=SOLE, people={RITA: person(RITA, grant("Pay"))}, roster=None)
    promotions, blockers = choose_replacements(inv, opts())
    assert promotions == [(RITA, "Pay")]
    assert blockers == [
        f"{DANA} is the sole Admin of Apps and nobody qualifies to replace them: "
        "choose one (--receiver)"
    ]


# --- who receives what ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "o", "default", "blocker", "warning"),
    [
        pytest.param({}, opts(), SOFIA, None, None, id="manager"),
        pytest.param({}, opts(receiver=RITA), RITA, None, None, id="receiver"),
        pytest.param(
            {},
            opts(receiver="nobody@x.com"),
            None,
            "the receiver nobody@x.com cannot receive content: not a member",
            None,
            id="receiver-not-a-member",
        ),
        pytest.param(
            {},
            opts(receiver=DANA),
            None,
            f"the receiver {DANA} cannot receive content: is the person leaving",
            None,
            id="receiver-is-the-leaver",
        ),
        pytest.param(
            {"departed": [SOFIA]},
            opts(),
            None,
            None,
            f"manager {SOFIA} cannot receive content (terminated per the HR roster): "
            "falling back to each project's admin",
            id="manager-departed",
        ),
        pytest.param({"roster": None}, opts(), None, None, None, id="no-manager"),
    ],
)
def test_default_receiver_and_what_it_raises(
    changes: dict[str, Any],
    o: Options,
    default: str | None,
    blocker: str | None,
    warning: str | None,
) -> None:
    inv = world(**changes)
    assert default_receiver(inv, o) == default
    assert receiver_blockers(inv, o) == ([blocker] if blocker else [])
    assert manager_warnings(inv, o) == ([warning] if warning else [])


def test_admins_after_promotion_counts_the_replacement() -> None:
    admins = admins_after_promotion(world(projects=SOLE), [(RITA, "Pay"), (SOFIA, "New")])
    assert admins["Pay"] == (DANA, RITA)
    assert admins["Ads"] == (DANA, ALICE)
    assert admins["New"] == (SOFIA,)


@pytest.mark.parametrize(
    ("o", "moving"),
    [
        pytest.param(opts(), ["1", "2", "3"], id="everything"),
        pytest.param(NARROW, ["2", "3"], id="narrowing-keeps-web"),
    ],
)
def test_moving_assets(o: Options, moving: list[str]) -> None:
    inv = world(assets=[asset("1", "Web"), asset("2", "Mobile"), asset("3", "Growth")])
    assert [a.id for a in moving_assets(inv, o)] == moving


@pytest.mark.parametrize(
    ("changes", "default", "admins", "who"),
    [
        pytest.param({}, RITA, (ALICE,), RITA, id="default-wins"),
        pytest.param({}, None, (RAJ, ALICE), ALICE, id="first-admin-by-email"),
        pytest.param(
            {"people": {ALICE: person(ALICE, days=31), RAJ: person(RAJ)}},
            None,
            (ALICE, RAJ),
            RAJ,
            id="inactive-admin-skipped",
        ),
        pytest.param({}, None, (DANA,), None, id="only-the-leaver"),
        pytest.param({}, None, (), None, id="no-admin"),
    ],
)
def test_receiver_of(
    changes: dict[str, Any], default: str | None, admins: tuple[str, ...], who: str | None
) -> None:
    assert receiver_of(world(**changes), default, admins=admins) == who


@pytest.mark.parametrize(
    ("receiver", "admins", "needs"),
    [
        pytest.param(person(RITA), (), True, id="no-grant"),
        pytest.param(person(RITA, grant("Mobile", Role.VIEWER)), (), False, id="has-a-grant"),
        pytest.param(person(RITA, org_role=Role.ADMIN), (), False, id="org-admin"),
        pytest.param(person(RITA), (RITA,), False, id="listed-admin"),
        pytest.param(None, (), False, id="unknown-person"),
    ],
)
def test_needs_access(receiver: Member | None, admins: tuple[str, ...], needs: bool) -> None:
    inv = world(people={RITA: receiver} if receiver else {})
    assert needs_access(inv, RITA, project="Mobile", admins=admins) is needs


ASSETS = [asset("10", "Mobile"), asset("9", "Mobile"), asset("2", "Web"), asset("7", "Old")]


@pytest.mark.parametrize(
    ("changes", "promotions", "receivers", "grants", "unplaced"),
    [
        pytest.param(
            {},
            [],
            {SOFIA: ["2", "7", "9", "10"]},  # numeric ids in number order
            [(SOFIA, "Mobile"), (SOFIA, "Old")],  # once per project, where she has no access
            {},
            id="manager-receives-everything",
        ),
        pytest.param(
            {"roster": None},
            [],
            {ALICE: ["2"], RAJ: ["9", "10"]},
            [],
            {"Old": ["7"]},
            id="each-project-admin-and-nobody-for-old",
        ),
        pytest.param(
            {"roster": None},
            [(RITA, "Old")],
            {ALICE: ["2"], RAJ: ["9", "10"], RITA: ["7"]},
            [],  # Rita is Old's admin once promoted: no Viewer grant
            {},
            id="a-replacement-receives-as-admin",
        ),
    ],
)
def test_place_assets(
    changes: dict[str, Any],
    promotions: list[tuple[str, str]],
    receivers: dict[str, list[str]],
    grants: list[tuple[str, str]],
    unplaced: dict[str, list[str]],
) -> None:
    people = {e: person(e) for e in (ALICE, RAJ, RITA)} | {SOFIA: person(SOFIA, grant("Web"))}
    inv = world(assets=ASSETS, people=people, **changes)
    placed = place_assets(inv, opts(), promotions=promotions)
    assert placed.receivers == receivers
    assert list(placed.receivers) == sorted(receivers)
    assert placed.grants == grants
    assert placed.unplaced == unplaced


@pytest.mark.parametrize(
    ("unplaced", "blockers"),
    [
        pytest.param({}, [], id="none"),
        pytest.param(
            {"Web": ["1"], "Ads": ["2", "3"]},
            [
                "nobody qualifies to receive 2 asset(s) in Ads: choose a receiver (--receiver)",
                "nobody qualifies to receive 1 asset(s) in Web: choose a receiver (--receiver)",
            ],
            id="per-project-by-name",
        ),
    ],
)
def test_unplaced_blockers(unplaced: dict[str, list[str]], blockers: list[str]) -> None:
    assert unplaced_blockers(Placement(unplaced=unplaced)) == blockers


# --- narrowing -----------------------------------------------------------------------------------
NARROWED = person(
    DANA,
    grant("Web", Role.MANAGER, "individual", "group:web"),
    grant("Web2", Role.VIEWER, "group:analysts"),
    grant("Mobile", Role.VIEWER, "individual", "group:amplitude-project-viewers-mobile"),
    grant("Growth", Role.MEMBER, "group:analysts"),
    modules=(Module.GOVERN, Module.EXPERIMENT),
    idp_managed=True,
)


@pytest.mark.parametrize(
    ("o", "keep", "leaving", "kept"),
    [
        pytest.param(
            NARROW, ("Web",), {"analysts", "amplitude-project-viewers-mobile"}, [], id="web"
        ),
        pytest.param(
            opts(Reason.ROLE_CHANGE, keep_projects=("Web", "Web2")),
            ("Web", "Web2"),
            {"analysts", "amplitude-project-viewers-mobile"},
            ["Web2"],
            id="a-kept-project-a-leaving-group-grants",
        ),
        pytest.param(opts(), (), set(), [], id="not-narrowing"),
    ],
)
def test_groups_to_leave_and_grants_to_keep(
    o: Options, keep: tuple[str, ...], leaving: set[str], kept: list[str]
) -> None:
    inv = world(member=NARROWED)
    assert groups_to_leave(inv, o) == leaving
    assert [g.project for g in grants_to_keep(inv, o, leaving=leaving)] == kept


IDP_GROUPS = [
    IdpGroup(id="i3", name="amplitude-project-viewers-mobile"),
    IdpGroup(id="i1", name="amplitude-org-members"),
    IdpGroup(id="i2", name="everyone"),
]


@pytest.mark.parametrize(
    ("groups", "o", "leaving", "left", "blocked"),
    [
        pytest.param(IDP_GROUPS, opts(), set(), ["i1", "i3"], False, id="all-mapped-by-name"),
        pytest.param(
            IDP_GROUPS,
            NARROW,
            {"amplitude-project-viewers-mobile"},
            ["i3"],
            False,
            id="narrowing-keeps-the-org-group",
        ),
        pytest.param(
            IDP_GROUPS[:1],
            NARROW,
            {"amplitude-project-viewers-mobile"},
            ["i3"],
            True,
            id="narrowing-out-of-every-mapped-group",
        ),
    ],
)
def test_idp_groups_to_leave_and_the_sync_blocker(
    groups: list[IdpGroup], o: Options, leaving: set[str], left: list[str], blocked: bool
) -> None:
    inv = world(member=NARROWED, idp_groups=groups)
    assert [g.id for g in idp_groups_to_leave(inv, o, leaving=leaving)] == left
    blockers = idp_sync_blockers(inv, o, leaving=leaving)
    assert bool(blockers) is blocked
    if blocked:
        assert "the next IdP sync would remove them from the org" in blockers[0]


# --- the steps of each phase ---------------------------------------------------------------------
def test_promote_steps() -> None:
    (step,) = promote_steps(world(), [(SOFIA, "Pay")])
    assert (step.id, step.params) == ("promote_admin:Pay", {"email": SOFIA})
    assert step.reason == f"{DANA} is the sole Admin of Pay: promote {SOFIA} first"


@pytest.mark.parametrize(
    ("promotions", "expected"),
    [
        pytest.param(
            [],
            [f"grant_project_access:{SOFIA}:Mobile", f"grant_project_access:{SOFIA}:Pay"],
            id="grants-by-receiver-and-project",
        ),
        pytest.param([(SOFIA, "Pay")], [f"grant_project_access:{SOFIA}:Mobile"], id="never-demote"),
    ],
)
def test_transfer_steps_grant_access_before_the_transfers(
    promotions: list[tuple[str, str]], expected: list[str]
) -> None:
    placement = Placement(
        receivers={ALICE: ["1"], SOFIA: ["2", "3"]},
        grants=[(SOFIA, "Pay"), (SOFIA, "Mobile")],
    )
    steps = transfer_steps(world(), placement, promotions=promotions)
    assert ids(steps) == [*expected, f"transfer_assets:{ALICE}", f"transfer_assets:{SOFIA}"]
    assert steps[-1].params == {"asset_ids": ["2", "3"], "from_email": DANA}
    assert steps[0].params["role"] == "viewer"


def test_keep_access_steps_give_the_role_the_group_gave() -> None:
    (step,) = keep_access_steps(world(), [grant("Web", Role.MANAGER, "group:analysts")])
    assert step.id == f"grant_project_access:{DANA}:Web"
    assert step.params == {"email": DANA, "project": "Web", "role": "manager"}


@pytest.mark.parametrize(
    ("user", "narrowing", "expected"),
    [
        pytest.param(
            IdpUser(id="u1", user_name=DANA),
            False,
            ["remove_idp_group:i1", "deactivate_idp_user:u1"],
            id="out-of-groups-then-deactivated",
        ),
        pytest.param(
            IdpUser(id="u1", user_name=DANA, active=False),
            False,
            ["remove_idp_group:i1"],
            id="already-inactive",
        ),
        pytest.param(
            IdpUser(id="u1", user_name=DANA), True, ["remove_idp_group:i1"], id="narrowing"
        ),
    ],
)
def test_idp_steps(user: IdpUser, narrowing: bool, expected: list[str]) -> None:
    steps = idp_steps(world(idp_user=user), [IDP_GROUPS[1]], narrowing=narrowing)
    assert ids(steps) == expected
    assert steps[0].params == {"group": "amplitude-org-members", "user_id": "u1"}
    assert ("grants a project they no longer need" in steps[0].reason) is narrowing


def key(id_: str, *managers: str, status: str = "active") -> ApiKey:
    return ApiKey(
        id=id_, name=f"key {id_}", kind="ingestion", project="Web", managers=managers, status=status
    )


KEYS = [key("k2", DANA), key("k1", DANA, RAJ, ALICE), key("k0", DANA, status="revoked")]


@pytest.mark.parametrize(
    ("o", "expected", "warned"),
    [
        pytest.param(opts(), ["rotate_key:k1", "rotate_key:k2"], ["k2"], id="rotate"),
        pytest.param(
            opts(Reason.SECURITY_INCIDENT, emergency=True),
            ["revoke_key:k1", "revoke_key:k2"],
            [],
            id="emergency-revokes",
        ),
        pytest.param(NARROW, [], [], id="narrowing-keeps-keys"),
        pytest.param(
            NARROW.model_copy(update={"emergency": True}),
            ["revoke_key:k1", "revoke_key:k2"],
            [],
            id="emergency-narrowing-still-revokes",
        ),
    ],
)
def test_key_steps(o: Options, expected: list[str], warned: list[str]) -> None:
    steps, warnings = key_steps(world(api_keys=KEYS), o)
    assert ids(steps) == expected
    assert [w.split("(")[1].split(")")[0] for w in warnings] == warned
    if steps:
        assert steps[0].params == {"name": "key k1", "notify": [ALICE, RAJ]}


def test_narrowing_steps_remove_what_is_not_kept() -> None:
    inv = world(
        member=NARROWED,
        org_groups=[("og2", "analysts"), ("og1", "web"), ("og3", "newsletter")],
    )
    steps = narrowing_steps(inv, NARROW, leaving={"analysts"})
    assert ids(steps) == [
        "remove_project_role:Mobile",  # individual; Growth and Web2 come from groups only
        "remove_group_membership:og2",
        f"revoke_modules:{DANA}",
    ]
    assert steps[1].params == {"email": DANA, "group": "analysts"}
    assert steps[2].params == {"modules": ["experiment", "govern"]}
    assert narrowing_steps(world(member=None), NARROW, leaving=set()) == []


@pytest.mark.parametrize(
    ("member", "expected"),
    [
        pytest.param(person(DANA), [f"remove_member:{DANA}"], id="joined"),
        pytest.param(person(DANA, status="pending"), [f"revoke_invitation:{DANA}"], id="pending"),
        pytest.param(None, [], id="not-a-member"),
    ],
)
def test_org_removal_steps(member: Member | None, expected: list[str]) -> None:
    assert ids(org_removal_steps(world(member=member), opts())) == expected


@pytest.mark.parametrize(
    ("member", "admins", "o", "blocked"),
    [
        pytest.param(person(DANA, org_role=Role.ADMIN), [DANA], opts(), True, id="sole-admin"),
        pytest.param(
            person(DANA, org_role=Role.ADMIN), [DANA, ALICE], opts(), False, id="another-admin"
        ),
        pytest.param(person(DANA), [ALICE], opts(), False, id="not-an-admin"),
        pytest.param(
            person(DANA, org_role=Role.ADMIN), [DANA], NARROW, False, id="narrowing-keeps-her"
        ),
        pytest.param(
            person(DANA, org_role=Role.ADMIN),
            [DANA],
            opts(Reason.SECURITY_INCIDENT, emergency=True),
            False,
            id="emergency-locks-out-anyway",
        ),
        pytest.param(person(DANA, org_role=Role.ADMIN), None, opts(), False, id="org-does-not-say"),
        pytest.param(None, [DANA], opts(), False, id="not-a-member"),
    ],
)
def test_sole_org_admin_blockers(
    member: Member | None, admins: list[str] | None, o: Options, blocked: bool
) -> None:
    blockers = sole_org_admin_blockers(world(member=member, org_admins=admins), o)
    assert bool(blockers) is blocked
    if blocked:
        assert blockers[0].startswith(f"{DANA} is the organization's only Admin")
    plan = make_offboarding_plan(world(member=member, org_admins=admins), o)
    assert (blockers[0] in plan.blockers) if blocked else not blockers


# --- the order -----------------------------------------------------------------------------------
def phases(prefix: str = "") -> Phases:
    def one(name: str) -> list[Step]:
        return [Step.of(RemoveMember(), prefix + name, reason=name)]

    names = ["promote", "transfer", "keep_access", "idp", "keys", "remove", "collect"]
    return Phases(**{n: one(n) for n in names})


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        pytest.param(
            normal_order,
            [
                "promote",
                "task:promote",
                "transfer",
                "task:transfer",
                "keep_access",
                "idp",
                "remove",
                "keys",
                "task:keys",
            ],
            id="normal-tasks-where-their-steps-are",
        ),
        pytest.param(
            emergency_order,
            [
                "idp",
                "keys",
                "task:keys",
                "promote",
                "task:promote",
                "remove",
                "transfer",
                "task:transfer",
                "collect",
                "task:collect",
            ],
            id="emergency-locks-out-first-tasks-after",
        ),
    ],
)
def test_order(order: Any, expected: list[str]) -> None:
    assert [s.target for s in order(phases(), phases("task:"))] == expected


# --- warnings ------------------------------------------------------------------------------------
def event(days_ago: int, action: str = "export") -> OrgEvent:
    return OrgEvent(at=T0 - timedelta(days=days_ago), actor=DANA, action=action)


@pytest.mark.parametrize(
    ("activity", "warnings"),
    [
        pytest.param([], [], id="none"),
        pytest.param(
            [event(1), event(30), event(31), event(2, "login")],
            [f"2 data export(s) by {DANA} in the last 30 days"],
            id="exports-within-30-days",
        ),
    ],
)
def test_export_warnings(activity: list[OrgEvent], warnings: list[str]) -> None:
    assert export_warnings(world(activity=activity)) == warnings


@pytest.mark.parametrize(
    ("status", "reason", "warned"),
    [
        pytest.param(RosterStatus.ACTIVE, Reason.TERMINATION, True, id="active-terminated"),
        pytest.param(RosterStatus.ACTIVE, Reason.CONTRACT_END, True, id="active-contract-end"),
        pytest.param(RosterStatus.ACTIVE, Reason.INACTIVITY, False, id="inactivity"),
        pytest.param(RosterStatus.TERMINATED, Reason.TERMINATION, False, id="terminated"),
    ],
)
def test_roster_warnings(status: RosterStatus, reason: Reason, warned: bool) -> None:
    roster = RosterEntry(email=DANA, name="Dana", status=status)
    assert bool(roster_warnings(world(roster=roster), opts(reason))) is warned


@pytest.mark.parametrize(
    ("lookalikes", "warnings"),
    [
        pytest.param([], [], id="none"),
        pytest.param(
            ["d4na@x.com", "dana@y.com"],
            ["look-alike accounts exist (not touched): d4na@x.com, dana@y.com"],
            id="listed",
        ),
    ],
)
def test_lookalike_warnings(lookalikes: list[str], warnings: list[str]) -> None:
    assert lookalike_warnings(world(lookalikes=lookalikes)) == warnings


def test_kind_enum_is_still_named_by_the_plan_module() -> None:
    assert StepKind.REMOVE_MEMBER.value == "remove_member"


# --- human tasks: what a SCIM-only org has no API for --------------------------------------------
SCIM = ["assets", "keys", "projects", "activity"]


def scim_world(**kw: Any) -> Inventory:
    """What a SCIM-only org says: a member, with no role, login, content, keys or projects."""
    scim_person = {"org_role": None, "status": "unknown", "last_login_at": None}
    base: dict[str, Any] = {
        "member": Member(email=DANA, **scim_person),
        "projects": [],
        "people": {SOFIA: Member(email=SOFIA, **scim_person)},
        "unreadable": SCIM,
    }
    return world(**{**base, **kw})


def task_kinds(steps: list[Step]) -> list[str]:
    return [s.params.task.value for s in steps if s.kind is StepKind.HUMAN_TASK]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("inv", "o", "expected"),
    [
        pytest.param(world(), opts(), [], id="an-org-with-every-api-needs-no-task"),
        pytest.param(
            scim_world(),
            opts(),
            ["replace_sole_admin", "transfer_content", "rotate_keys"],
            id="scim-only-offboarding",
        ),
        pytest.param(
            scim_world(),
            opts(emergency=True),
            ["rotate_keys", "replace_sole_admin", "transfer_content", "export_activity"],
            id="scim-only-emergency-after-the-lockout",
        ),
        pytest.param(
            scim_world(unreadable=["keys"]), opts(), ["rotate_keys"], id="only-what-is-unreadable"
        ),
        pytest.param(
            scim_world(member=Member(email=DANA, status="pending")),
            opts(),
            [],
            id="an-invitee-owns-nothing",
        ),
        pytest.param(
            scim_world(),
            NARROW,
            ["change_access"],  # removes nobody; never an empty plan for what was not read
            id="a-narrowing-is-one-change-access-task",
        ),
    ],
)
def test_a_human_task_stands_in_for_each_step_without_an_api(
    inv: Inventory, o: Options, expected: list[str]
) -> None:
    plan = make_offboarding_plan(inv, o)
    assert task_kinds(plan.steps) == expected
    assert not plan.blockers


@pytest.mark.parametrize("emergency", [False, True])
def test_which_tasks_come_before_the_removal(emergency: bool) -> None:
    steps = make_offboarding_plan(scim_world(), opts(emergency=emergency)).steps
    removal = next(i for i, s in enumerate(steps) if s.kind is StepKind.REMOVE_MEMBER)
    before = task_kinds(steps[:removal])
    # An emergency waits for no person before the IdP lockout; the org's removal waits for the
    # keys' revocation and for the sole-Admin check (the org refuses to remove a sole Admin,
    # and SCIM cannot say who is one), then the rest.
    assert before == (
        ["rotate_keys", "replace_sole_admin"]
        if emergency
        else ["replace_sole_admin", "transfer_content"]
    )


def test_the_transfer_task_names_the_receiver_and_the_console_path() -> None:
    plan = make_offboarding_plan(scim_world(), opts(receiver=SOFIA))
    transfer = next(s for s in plan.steps if s.id == f"human_task:transfer_content:{DANA}")
    text = transfer.params.instructions  # type: ignore[union-attr]
    assert SOFIA in text and DANA in text and "Bulk Transfer Edit Access" in text
    assert "nothing to transfer" in text  # the org cannot list it: the task asks


def test_content_nobody_can_list_still_needs_a_receiver() -> None:
    inv = scim_world(roster=None)  # no manager to default to
    plan = make_offboarding_plan(inv, opts())
    assert plan.blockers == [
        f"the org cannot list the content of {DANA}: name who receives it "
        "(--receiver, an active member) for the transfer task"
    ]
    assert "transfer_content" not in task_kinds(plan.steps)


def test_the_replacement_task_covers_the_organizations_only_admin_too() -> None:
    # SCIM cannot say who the org's Admins are (org_admins None): no blocker can be planned,
    # so the task asks the person to check the org role as well (seed 002).
    plan = make_offboarding_plan(scim_world(), opts())
    task = next(s for s in plan.steps if s.id == f"human_task:replace_sole_admin:{DANA}")
    text = task.params.instructions  # type: ignore[union-attr]
    assert "organization's only Admin" in text and "ask security who" in text
    assert "not a sole admin" in text


# --- the seeds' rules, on either backend: each required step is an API step or a task ---------
def _full(backend: str) -> Inventory:
    """Dana as the seeds' hard case: sole Admin of Pay, owner of content, manager of a key,
    in the IdP with a mapped group."""
    common: dict[str, Any] = {
        "idp_user": IdpUser(id="u1", user_name=DANA),
        "idp_groups": [IDP_GROUPS[1]],
    }
    if backend == "scim":
        return scim_world(**common)
    return world(
        member=person(DANA, grant("Pay", Role.ADMIN)),
        projects=[*world().projects, Project(id="3", name="Pay", admins=(DANA,))],
        assets=[asset("c1", "Pay")],
        api_keys=[key("k1", DANA, RAJ)],
        **common,
    )


# seed rule → the API step kind that does it, or the human task that stands in for it
SEED_RULES = {
    "transfer the content first (seed 004: do not skip asset transfer)": (
        StepKind.TRANSFER_ASSETS,
        "transfer_content",
    ),
    "replace a sole Admin first (seed 002)": (StepKind.PROMOTE_ADMIN, "replace_sole_admin"),
    "rotate the keys they manage (seed 004)": (StepKind.ROTATE_KEY, "rotate_keys"),
}


@pytest.mark.parametrize("backend", ["sandbox", "scim"])
@pytest.mark.parametrize("rule", list(SEED_RULES))
def test_no_plan_leaves_out_a_step_the_seeds_require(backend: str, rule: str) -> None:
    plan = make_offboarding_plan(_full(backend), opts())
    assert not plan.blockers, plan.blockers
    kind, task = SEED_RULES[rule]
    by_api = [s for s in plan.steps if s.kind is kind]
    by_task = [s for s in plan.steps if task in task_kinds([s])]
    assert by_api or by_task, (rule, [s.id for s in plan.steps])
    removal = next(i for i, s in enumerate(plan.steps) if s.kind is StepKind.REMOVE_MEMBER)
    idp_out = next(i for i, s in enumerate(plan.steps) if s.kind is StepKind.DEACTIVATE_IDP_USER)
    # IdP first (seed 004): the IdP no longer provisions them when the org removes them.
    assert idp_out < removal
    if kind is not StepKind.ROTATE_KEY:  # the transfer and the promotion come first
        first = plan.steps.index((by_api or by_task)[0])
        assert first < removal, (rule, [s.id for s in plan.steps])


def test_narrowing_where_roles_cannot_be_read_is_a_task_never_an_empty_plan() -> None:
    """SCIM only: the member record holds no roles, so the narrowing is one task naming the
    projects kept (an empty plan would report "nothing to do" for what was not checked)."""
    from domain.plan import narrowing_steps

    inv = scim_world(member=person(DANA, status="unknown"))
    (step,) = narrowing_steps(inv, NARROW, leaving=set())
    assert step.kind is StepKind.HUMAN_TASK
    assert "every project but Web" in step.params.instructions  # type: ignore[union-attr]
