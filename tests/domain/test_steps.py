"""Typed step parameters (domain/steps.py): one model per step kind, chosen by the step's kind;
the plan hash over their dict form is the hash the untyped plans had."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, get_args

import pytest
from pydantic import ValidationError

from domain.change import ChangePlan, ChangeStep
from domain.models import Module, Role
from domain.onboard import OnboardPlan, OnboardStep
from domain.plan import Plan, Reason, Step
from domain.runbook import PlanStep, RunbookPlan
from domain.steps import (
    ChangeKind,
    ChangeParams,
    InviteMember,
    OffboardParams,
    OnboardParams,
    OnboardStepKind,
    RecordGrant,
    RemoveGroupMembership,
    SetProjectRole,
    StepKind,
    StepParams,
    TemporaryModule,
    TemporaryProjectRole,
    TransferAssets,
)

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)


def models(union: Any) -> list[type[StepParams]]:
    (members, _discriminator) = get_args(union)
    return list(get_args(members))


@pytest.mark.parametrize(
    ("kinds", "union"),
    [
        pytest.param(StepKind, OffboardParams, id="offboard"),
        pytest.param(OnboardStepKind, OnboardParams, id="onboard"),
        pytest.param(ChangeKind, ChangeParams, id="change"),
    ],
)
def test_every_step_kind_has_exactly_one_parameter_model(kinds: type[StrEnum], union: Any) -> None:
    tags = [m.model_fields["kind"].default for m in models(union)]
    assert sorted(tags) == sorted(k.value for k in kinds)


@pytest.mark.parametrize(
    ("step_type", "kind", "params", "model"),
    [
        pytest.param(
            Step,
            StepKind.TRANSFER_ASSETS,
            {"asset_ids": ["1", "2"], "from_email": "a@x.com"},
            TransferAssets,
            id="transfer",
        ),
        pytest.param(
            Step,
            StepKind.REMOVE_GROUP_MEMBERSHIP,
            {"group": "g", "email": "a@x.com"},
            RemoveGroupMembership,
            id="offboard-group",
        ),
        pytest.param(
            ChangeStep,
            ChangeKind.REMOVE_GROUP_MEMBERSHIP,
            {"group": "g"},
            RemoveGroupMembership,
            id="change-group-without-email",
        ),
        pytest.param(
            OnboardStep,
            OnboardStepKind.RECORD_GRANT,
            {
                "until": "2026-12-01",
                "grants": [{"project": "Web", "role": "viewer"}, {"module": "govern"}],
                "sponsor": "",
            },
            RecordGrant,
            id="record-grant",
        ),
    ],
)
def test_dict_parameters_become_the_model_of_the_step_kind(
    step_type: type[PlanStep], kind: StrEnum, params: dict[str, Any], model: type[StepParams]
) -> None:
    step = step_type(id=f"{kind.value}:t", kind=kind, target="t", reason="r", params=params)
    assert type(step.params) is model
    assert step.params.as_dict() == params
    assert step.params == params  # equal to its dict form, as the untyped plans were


def test_record_grant_parameters_are_typed() -> None:
    step = OnboardStep(
        id="record_grant:a@x.com",
        kind=OnboardStepKind.RECORD_GRANT,
        target="a@x.com",
        reason="r",
        params={"until": "2026-12-01", "grants": [{"module": "govern"}], "sponsor": "s@x.com"},
    )
    assert isinstance(step.params, RecordGrant)
    assert step.params.until == date(2026, 12, 1)
    assert step.params.grants == [TemporaryModule(module=Module.GOVERN)]


@pytest.mark.parametrize(
    ("kind", "params", "error"),
    [
        pytest.param(StepKind.TRANSFER_ASSETS, {}, "asset_ids", id="missing"),
        pytest.param(StepKind.PROMOTE_ADMIN, {"email": "a@x.com", "x": 1}, "x", id="extra"),
        pytest.param(
            StepKind.GRANT_PROJECT_ACCESS,
            {"email": "a@x.com", "project": "Web", "role": "owner"},
            "role",
            id="not-a-role",
        ),
        pytest.param(
            StepKind.REMOVE_MEMBER,
            TransferAssets(asset_ids=[], from_email="a@x.com"),
            "remove_member step with transfer_assets parameters",
            id="kind",
        ),
    ],
)
def test_parameters_that_do_not_fit_the_kind_are_refused(
    kind: StepKind, params: Any, error: str
) -> None:
    with pytest.raises(ValidationError, match=error):
        Step(id=f"{kind.value}:t", kind=kind, target="t", reason="r", params=params)


def test_step_of_takes_its_kind_and_id_from_the_parameters() -> None:
    step = ChangeStep.of(
        SetProjectRole(project="Web", role=Role.MEMBER), "Web", reason="r", widening=True
    )
    assert (step.id, step.kind, step.widening) == (
        "set_project_role:Web",
        ChangeKind.SET_PROJECT_ROLE,
        True,
    )


@pytest.mark.parametrize(
    ("params", "as_dict"),
    [
        pytest.param(
            SetProjectRole(project="Web", role=Role.MEMBER),
            {"project": "Web", "role": "member"},
            id="no-email-left-out",
        ),
        pytest.param(
            SetProjectRole(project="Web", role=Role.MEMBER, email="b@x.com"),
            {"project": "Web", "role": "member", "email": "b@x.com"},
            id="email",
        ),
        pytest.param(
            InviteMember(role=Role.VIEWER, projects={"Web": Role.ADMIN}, modules=[Module.GOVERN]),
            {"role": "viewer", "projects": {"Web": "admin"}, "modules": ["govern"]},
            id="enums-as-values",
        ),
        pytest.param(
            RecordGrant(
                until=date(2026, 12, 1),
                grants=[TemporaryProjectRole(project="Web", role=Role.VIEWER)],
                sponsor="",
            ),
            {
                "until": "2026-12-01",
                "grants": [{"project": "Web", "role": "viewer"}],
                "sponsor": "",
            },
            id="dates-as-iso",
        ),
    ],
)
def test_dict_form_is_json_without_the_kind(params: StepParams, as_dict: dict[str, Any]) -> None:
    assert params.as_dict() == as_dict
    assert dict(params.items()) == as_dict  # what the audit log lists
    assert all(params[k] == v for k, v in as_dict.items())
    assert params.get("nothing", "default") == "default"


def legacy_hash(plan: RunbookPlan[Any], raw: list[dict[str, Any]]) -> str:
    """The plan hash as it was computed when steps held their parameters as dicts (``raw``)."""
    core = {
        "runbook": plan.runbook,
        "subject": plan.subject,
        "steps": [[s.kind.value, s.target, p] for s, p in zip(plan.steps, raw, strict=True)],
        "blockers": plan.blockers,
        **plan.hash_facts(),
    }
    return hashlib.sha256(
        json.dumps(core, sort_keys=True, separators=(",", ":"), default=str).encode()
    ).hexdigest()


# What each planner put in its steps before the parameters were typed.
RAW: list[tuple[type[RunbookPlan[Any]], type[PlanStep], StrEnum, dict[str, Any]]] = [
    (Plan, Step, StepKind.TRANSFER_ASSETS, {"asset_ids": ["2", "10"], "from_email": "a@x.com"}),
    (
        Plan,
        Step,
        StepKind.GRANT_PROJECT_ACCESS,
        {"email": "b@x.com", "project": "W", "role": "viewer"},
    ),
    (Plan, Step, StepKind.ROTATE_KEY, {"name": "k", "notify": []}),
    (Plan, Step, StepKind.REVOKE_MODULES, {"modules": ["experiment", "govern"]}),
    (Plan, Step, StepKind.REMOVE_MEMBER, {}),
    (
        OnboardPlan,
        OnboardStep,
        OnboardStepKind.INVITE,
        {
            "org_role": "member",
            "projects": {"Web": "viewer"},
            "modules": [],
            "default_project": None,
            "note": "permanent",
        },
    ),
    (
        OnboardPlan,
        OnboardStep,
        OnboardStepKind.RECORD_GRANT,
        {"until": "2026-12-01", "grants": [{"module": "govern"}], "sponsor": ""},
    ),
    (ChangePlan, ChangeStep, ChangeKind.SET_PROJECT_ROLE, {"project": "W", "role": "admin"}),
    (
        ChangePlan,
        ChangeStep,
        ChangeKind.INVITE_MEMBER,
        {"role": "member", "projects": {"W": "viewer"}, "modules": ["experiment"]},
    ),
]


def one_step_plan(
    plan_type: type[RunbookPlan[Any]], step_type: type[PlanStep], kind: StrEnum, raw: dict[str, Any]
) -> RunbookPlan[Any]:
    step = step_type(id=f"{kind.value}:t", kind=kind, target="t", reason="r", params=raw)
    extra: dict[str, Any] = {"reason": Reason.TERMINATION} if plan_type is Plan else {}
    return plan_type(subject="a@x.com", steps=[step], **extra)


@pytest.mark.parametrize(
    ("plan_type", "step_type", "kind", "raw"), RAW, ids=[r[2].value for r in RAW]
)
def test_the_hash_is_the_one_of_the_untyped_plan(
    plan_type: type[RunbookPlan[Any]], step_type: type[PlanStep], kind: StrEnum, raw: dict[str, Any]
) -> None:
    plan = one_step_plan(plan_type, step_type, kind, raw)
    assert plan.hash == legacy_hash(plan, [raw])


@pytest.mark.parametrize(
    ("plan_type", "step_type", "kind", "raw"), RAW, ids=[r[2].value for r in RAW]
)
def test_a_plan_read_back_is_the_same_plan_with_the_same_hash(
    plan_type: type[RunbookPlan[Any]], step_type: type[PlanStep], kind: StrEnum, raw: dict[str, Any]
) -> None:
    plan = one_step_plan(plan_type, step_type, kind, raw)
    again = plan_type.model_validate_json(plan.model_dump_json())
    assert again == plan and again.hash == plan.hash
    # A plan kept before its parameters were typed (no ``kind`` in them) reads back the same.
    old = plan.model_dump(mode="json")
    for s in old["steps"]:
        del s["params"]["kind"]
    assert plan_type.model_validate(old).hash == plan.hash


def test_every_step_kind_reads_in_words_for_approvers() -> None:
    """Approvers read each step (issue 14): no kind falls back to its bare name, and a role,
    a project or a person changed reads differently."""
    from datetime import date

    from domain import steps as st
    from domain.models import Module, Role

    examples: list[st.StepParams] = [
        st.GrantProjectAccess(email="r@x.com", project="Prod", role=Role.VIEWER),
        st.PromoteAdmin(email="r@x.com"),
        st.TransferAssets(asset_ids=["a1", "a2"], from_email="s@x.com"),
        st.RemoveIdpGroup(group="Prod Admins", user_id="u1"),
        st.DeactivateIdpUser(email="s@x.com"),
        st.RevokeKey(name="ingest", notify=[]),
        st.RotateKey(name="ingest", notify=["r@x.com"]),
        st.RemoveOwnProjectRole(email="s@x.com"),
        st.RemoveGroupMembership(group="Analysts"),
        st.RevokeModules(modules=[Module.GOVERN]),
        st.RevokeInvitation(),
        st.RemoveMember(),
        st.CollectActivity(days=90),
        st.HumanTask(task=st.TaskKind.TRANSFER_CONTENT, title="Move it", instructions="…"),
        st.IdpCreateUser(),
        st.IdpAddGroup(group_id="g1", email="s@x.com"),
        st.GrantModules(modules=[Module.GOVERN]),
        st.Invite(
            org_role=Role.MEMBER,
            projects={"Prod": Role.ADMIN},
            modules=[],
            default_project=None,
            note="",
        ),
        st.ResendInvitation(),
        st.RecordGrant(
            until=date(2027, 1, 1),
            grants=[st.TemporaryProjectRole(project="Prod", role=Role.VIEWER)],
            sponsor="r@x.com",
        ),
        st.SetProjectRole(project="Prod", role=Role.ADMIN),
        st.RemoveProjectRole(project="Prod"),
        st.AddGroupMembership(group="Analysts", email="s@x.com"),
        st.SetOrgRole(role=Role.ADMIN),
        st.InviteMember(role=Role.MEMBER, projects={"Prod": Role.VIEWER}, modules=[]),
        st.TransferContent(to="r@x.com"),
    ]
    for p in examples:
        words = st.in_words(p, "t@x.com", "s@x.com")
        assert not words.startswith(p.kind), words
    grant = st.in_words(st.SetProjectRole(project="Prod", role=Role.ADMIN), "Prod", "s@x.com")
    assert grant == "s@x.com gets admin in project Prod"
    assert grant != st.in_words(
        st.SetProjectRole(project="Prod", role=Role.VIEWER), "Prod", "s@x.com"
    )
