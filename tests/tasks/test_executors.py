"""The executors read typed step parameters: each step kind reaches the connector call it
stands for, with typed arguments (roles and modules as enums, dates as dates).

A recording org and IdP stand in for the connectors (the end-to-end tests run the same
executors against the sandbox) in a runtime passed to each executor; the ledger is a real one.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from domain.change import ChangeStep
from domain.models import Effect, Module, Role, WriteResult
from domain.onboard import OnboardStep
from domain.plan import Step
from domain.steps import (
    CollectActivity,
    GrantModules,
    GrantProjectAccess,
    IdpAddGroup,
    Invite,
    InviteMember,
    RecordGrant,
    RemoveGroupMembership,
    RemoveOwnProjectRole,
    RemoveProjectRole,
    RotateKey,
    SetOrgRole,
    SetProjectRole,
    StepParams,
    TemporaryModule,
    TemporaryProjectRole,
    TransferAssets,
    TransferContent,
)
from ledger.grants import grants
from tasks.change import execute_change_step
from tasks.offboard import execute_offboard_step
from tasks.onboard import execute_onboard_step
from tasks.runtime import Runtime
from tasks.steps import StepScope
from tests.tasks.fakes import fake_runtime

NOW = datetime(2026, 11, 1, 9, tzinfo=UTC)
SUBJECT = "dana@x.com"
SCOPE = StepScope(runbook="test", subject=SUBJECT, case_id=7, ticket="ACC-1")
DONE = WriteResult(effect=Effect.UPDATED)


class Recorder:
    """Records every call as ``(name, args, kwargs)``; answers what the executors expect."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args, kwargs))
            if name == "rotate_key":
                return DONE, SecretStr("s3cret")
            if name in ("events", "dm"):
                return []
            if name == "find_user":
                return type("User", (), {"id": "u1"})()
            return DONE

        return call


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    return fake_runtime(
        tmp_path,
        now=NOW,
        org=Recorder(),
        idp=Recorder(),
        messenger=Recorder(),
        tickets=Recorder(),
    )


def calls(recorder: Any) -> list[tuple[str, tuple[Any, ...], dict[str, Any]]]:
    return recorder.calls  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("params", "target", "call"),
    [
        pytest.param(
            GrantProjectAccess(email="b@x.com", project="Web", role=Role.VIEWER),
            "b@x.com:Web",
            ("set_project_role", ("b@x.com", "Web", Role.VIEWER), {}),
            id="grant",
        ),
        pytest.param(
            TransferAssets(asset_ids=["1", "2"], from_email=SUBJECT),
            "b@x.com",
            ("transfer_assets", (["1", "2"], "b@x.com"), {}),
            id="transfer",
        ),
        pytest.param(
            RemoveOwnProjectRole(email=SUBJECT),
            "Mobile",
            ("set_project_role", (SUBJECT, "Mobile", None), {}),
            id="remove-own-role",
        ),
        pytest.param(
            RemoveGroupMembership(group="analysts", email=SUBJECT),
            "og1",
            ("remove_group_members", ("og1", [SUBJECT]), {}),
            id="leave-group",
        ),
    ],
)
def test_offboard_executor(rt: Runtime, params: StepParams, target: str, call: Any) -> None:
    step = Step.of(params, target, reason="r")
    result, _ = execute_offboard_step(rt, step, SCOPE)
    assert result == DONE
    assert calls(rt.org) == [call]


def test_a_rotation_tells_the_other_managers_by_name(rt: Runtime) -> None:
    step = Step.of(RotateKey(name="ingest", notify=["b@x.com"]), "k1", reason="r")
    _, detail = execute_offboard_step(rt, step, SCOPE)
    assert detail == {"notified": ["b@x.com"]}
    ((name, args, _),) = calls(rt.messenger)
    assert name == "dm" and args[0] == "b@x.com" and "'ingest'" in args[1]
    assert [c[0] for c in calls(rt.org)] == ["rotate_key", "remove_key_manager"]
    assert calls(rt.org)[0][2] == {"idempotency_key": "handover-case-7-rotate_key:k1"}


def test_activity_is_read_for_the_days_planned(rt: Runtime) -> None:
    step = Step.of(CollectActivity(days=30), SUBJECT, reason="r")
    result, detail = execute_offboard_step(rt, step, SCOPE)
    assert result.effect is Effect.NOOP and detail["events"] == {}
    ((_, _, kwargs),) = calls(rt.org)
    assert kwargs == {"actor": SUBJECT, "since": datetime(2026, 10, 2, 9, tzinfo=UTC)}


@pytest.mark.parametrize(
    ("params", "target", "call"),
    [
        pytest.param(
            SetProjectRole(project="Web", role=Role.MEMBER),
            "Web",
            ("set_project_role", (SUBJECT, "Web", Role.MEMBER), {}),
            id="own-role",
        ),
        pytest.param(
            SetProjectRole(project="Web", role=Role.MEMBER, email="new@x.com"),
            "new@x.com in Web",
            ("set_project_role", ("new@x.com", "Web", Role.MEMBER), {}),
            id="someone-else-s-role",
        ),
        pytest.param(
            RemoveProjectRole(project="Web"),
            "Web",
            ("set_project_role", (SUBJECT, "Web", None), {}),
            id="remove-role",
        ),
        pytest.param(
            RemoveGroupMembership(group="G"),
            "11",
            ("remove_group_members", ("11", [SUBJECT]), {}),
            id="leave-group",
        ),
        pytest.param(
            SetOrgRole(role=Role.VIEWER),
            SUBJECT,
            ("set_org_role", (SUBJECT, Role.VIEWER), {}),
            id="org-role",
        ),
        pytest.param(
            GrantModules(modules=[Module.GOVERN]),
            SUBJECT,
            ("set_modules", (SUBJECT,), {"grant": [Module.GOVERN]}),
            id="modules",
        ),
        pytest.param(
            TransferContent(to="new@x.com"),
            SUBJECT,
            ("transfer_all", (SUBJECT, "new@x.com"), {}),
            id="transfer-all",
        ),
    ],
)
def test_change_executor(rt: Runtime, params: StepParams, target: str, call: Any) -> None:
    execute_change_step(rt, ChangeStep.of(params, target, reason="r"), SCOPE)
    assert calls(rt.org) == [call]


def test_an_email_change_invites_with_typed_roles(rt: Runtime) -> None:
    invite = InviteMember(role=Role.MEMBER, projects={"Web": Role.ADMIN}, modules=[Module.GOVERN])
    execute_change_step(rt, ChangeStep.of(invite, "new@x.com", reason="r"), SCOPE)
    ((name, (spec,), _),) = calls(rt.org)
    assert name == "invite"
    assert (spec.email, spec.org_role, spec.projects, spec.modules) == (
        "new@x.com",
        Role.MEMBER,
        {"Web": Role.ADMIN},
        (Module.GOVERN,),
    )
    assert spec.note == f"email change from {SUBJECT}"


def test_onboard_invite_and_idp_group(rt: Runtime) -> None:
    invite = Invite(
        org_role=Role.MEMBER,
        projects={"Staging": Role.MANAGER},
        modules=[],
        default_project="Staging",
        note="ticket ACC-1",
    )
    execute_onboard_step(rt, OnboardStep.of(invite, "v@x.com", reason="r"), SCOPE)
    ((_, (spec,), _),) = calls(rt.org)
    assert (spec.default_project, spec.note, spec.projects) == (
        "Staging",
        "ticket ACC-1",
        {"Staging": Role.MANAGER},
    )
    group = IdpAddGroup(group_id="g4", email="v@x.com")
    execute_onboard_step(rt, OnboardStep.of(group, "amplitude-org-members", reason="r"), SCOPE)
    assert calls(rt.idp) == [("find_user", ("v@x.com",), {}), ("add_to_group", ("g4", "u1"), {})]


def test_a_temporary_grant_is_recorded_per_role_and_module(rt: Runtime) -> None:
    record = RecordGrant(
        until=date(2026, 12, 1),
        grants=[
            TemporaryProjectRole(project="Staging", role=Role.MANAGER),
            TemporaryModule(module=Module.GOVERN),
        ],
        sponsor="s@x.com",
    )
    result, detail = execute_onboard_step(rt, OnboardStep.of(record, "v@x.com", reason="r"), SCOPE)
    assert result.effect is Effect.CREATED and detail["until"] == "2026-12-01"
    kept = grants(rt.ledger, subject="v@x.com")
    assert {(g.project, g.role, g.module) for g in kept} == {
        (None, None, "govern"),
        ("Staging", "manager", None),
    }
    assert {g.end for g in kept} == {datetime(2026, 12, 1, 23, 59, 59, tzinfo=UTC)}
    assert {(g.ticket, g.sponsor) for g in kept} == {("ACC-1", "s@x.com")}
