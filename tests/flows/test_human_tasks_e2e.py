"""Offboarding on a SCIM-only org (``HANDOVER_ORG_BACKEND=amplitude``, real Amplitude's API):
the steps no API can do are human tasks. The run waits for each; a person does it in the
console (the sandbox's admin API, acting as that person) and says Done — by a signed Slack
click, or ``handover tasks done`` — and the run goes on; what no API can read back is
reported as attested, never as a pass. Nothing is removed before its transfer task is done.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from approvals.tasks import decide_task
from domain.identity import SELF_DECLARED
from domain.tasks import TaskState
from ledger.tasks import get_task
from sandbox.app import create_app
from tests.conftest import LiveSandbox, serve
from tests.flows.offboard_stack import OffboardStack, make_stack

pytestmark = pytest.mark.slow

DANA = "dana.sole@acme.com"  # sole Admin of Development, owns content, manages 2 keys
SOFIA = "sofia.lead@acme.com"  # her manager
HR = "hr.partner@acme.com"
ALICE = "alice.admin@acme.com"  # an IT admin: the tasks are hers to do


@pytest.fixture
def sandbox() -> Iterator[LiveSandbox]:
    sb = serve(create_app(None, seed="demo", rng_seed=5))
    yield sb
    sb.stop()


@pytest.fixture
def scim(sandbox: LiveSandbox, tmp_path: Path, prefect_server: str) -> OffboardStack:
    return make_stack(sandbox, tmp_path, backend="amplitude")


def approve(stack: OffboardStack, subject: str, approver: str) -> None:
    appr = stack.paused(subject)
    r = stack.click(appr, approver)
    assert r.status_code == 200 and r.json()["recorded"] is True, r.text


@dataclass
class Offboarded:
    stack: OffboardStack
    result: dict[str, Any]
    member_while_transferring: dict[str, Any] | None
    answers: list[str]


@pytest.fixture(scope="module")
def offboarded(
    tmp_path_factory: pytest.TempPathFactory, prefect_server: str
) -> Iterator[Offboarded]:
    """dana terminated on the SCIM-only org: alice does each task in the console; the first
    Done by a Slack click, the second by ``handover tasks done``, the third in-process."""
    sb = serve(create_app(None, seed="demo", rng_seed=5))
    try:
        stack = make_stack(sb, tmp_path_factory.mktemp("scim"), backend="amplitude")
        run = stack.start(email=DANA, reason="termination", requester=HR)
        approve(stack, DANA, SOFIA)

        task = stack.task_waiting(DANA, "replace_sole_admin")
        assert SOFIA in task.instructions
        stack.console(
            "PUT", f"/members/{SOFIA}/projects/Development", ALICE, json={"role": "admin"}
        )
        r = stack.click_done(task, ALICE)
        assert r.status_code == 200 and r.json()["recorded"] is True, r.text

        task = stack.task_waiting(DANA, "transfer_content")
        # The run waits here: dana is still a member until her content has moved.
        member = stack.member(DANA)
        stack.console("POST", "/assets/bulk-transfer", ALICE, json={"from": DANA, "to": SOFIA})
        cli = stack.handover("tasks", "done", task.id, "--as", ALICE, "--note", "moved to sofia")
        out, err = cli.communicate(timeout=120)
        assert cli.returncode == 0, err

        task = stack.task_waiting(DANA, "rotate_keys")
        for key in stack.get("/admin/v1/api-keys", manager=DANA)["api_keys"]:
            stack.console("POST", f"/api-keys/{key['id']}/rotate", ALICE)
        _, said = decide_task(
            stack.svc, task.id, by=ALICE, state=TaskState.DONE, verified=SELF_DECLARED
        )

        result = run.wait()
        yield Offboarded(stack, result, member, [out, said])
    finally:
        sb.stop()


def test_each_step_without_an_api_is_a_task_in_the_plan(offboarded: Offboarded) -> None:
    kinds = [s["kind"] for s in offboarded.result["plan"]["steps"]]
    assert kinds.count("human_task") == 3, kinds
    targets = [s["target"] for s in offboarded.result["plan"]["steps"]]
    # The transfer and the replacement Admin come before the removal; the keys after it.
    assert targets.index(f"replace_sole_admin:{DANA}") < targets.index(DANA)
    assert targets.index(f"transfer_content:{DANA}") < targets.index(DANA)
    assert targets.index(f"rotate_keys:{DANA}") > targets.index(DANA)


def test_the_run_is_done_and_what_a_person_did_is_attested_not_passed(
    offboarded: Offboarded,
) -> None:
    res = offboarded.result
    assert res["status"] == "done", res
    checks = res["verification"]
    for kind in ("replace_sole_admin", "transfer_content", "rotate_keys"):
        assert re.fullmatch(rf"attested by {ALICE} at .+ UTC", checks[f"task_{kind}"]), checks
    assert checks["member_removed"] == "pass"
    assert "nothing_left_unassigned" not in checks  # no API reads it on this org: not a pass
    assert {v for k, v in res["effects"].items() if k.startswith("human_task:")} == {"attested"}


def test_nothing_is_removed_before_the_transfer_and_nothing_is_left_unassigned(
    offboarded: Offboarded,
) -> None:
    stack = offboarded.stack
    assert offboarded.member_while_transferring is not None
    assert stack.member(DANA) is None
    assets = stack.get("/admin/v1/assets", owner=DANA)["assets"]
    assets += stack.get("/admin/v1/assets", former_owner=DANA)["assets"]
    assert assets == []
    admins = {p["name"]: p["admins"] for p in stack.get("/admin/v1/projects")["projects"]}
    assert SOFIA in admins["Development"]


def test_each_answer_is_recorded_with_who_and_audited(offboarded: Offboarded) -> None:
    stack = offboarded.stack
    cli = stack.handover("tasks", "--json")
    out, err = cli.communicate(timeout=60)
    assert cli.returncode == 0, err
    tasks = json.loads(out)["tasks"]
    assert {t["kind"] for t in tasks} == {"replace_sole_admin", "transfer_content", "rotate_keys"}
    assert all(t["state"] == "done" and t["decided_by"] == ALICE for t in tasks), tasks
    assert all(t["assignees"] == [ALICE, "raj.admin@acme.com"] for t in tasks)
    assert "moved to sofia" in {t["note"] for t in tasks}
    from sqlalchemy import select

    from ledger.audit import AuditRow

    with stack.rt.ledger.sessions() as s:
        actions = [(r.action, r.on_behalf_of) for r in s.scalars(select(AuditRow))]
    assert actions.count(("task.done", ALICE)) == 3
    assert sum(1 for a, _ in actions if a == "task.opened") == 3
    # The ticket says what was asked of whom, and who answered.
    comments = stack.get(f"/_sandbox/jira/issues/{offboarded.result['ticket']}")["comments"]
    for t in tasks:
        assert any(c.startswith(f"Task {t['id']} for {ALICE}, raj.admin") for c in comments)
        assert any(c.startswith(f"Task {t['id']} (") and f"Done by {ALICE}" in c for c in comments)
    # Each assignee was asked in Slack; each message now says who answered.
    for person in (ALICE, "raj.admin@acme.com"):
        texts = [m["text"] for m in stack.dms(person)]
        assert sum(t == f"Done by {ALICE}" for t in texts) == 3, texts


def test_only_an_assignee_answers_and_cant_needs_a_reason(
    scim: OffboardStack,
) -> None:
    run = scim.start(email=DANA, reason="termination", requester=HR)
    approve(scim, DANA, SOFIA)
    task = scim.task_waiting(DANA, "replace_sole_admin")
    r = scim.click_done(task, SOFIA)  # the manager is not an assignee
    assert r.json()["recorded"] is False and "not an assignee" in r.json()["message"]
    cli = scim.handover("tasks", "cant", task.id, "--as", ALICE, "--reason", " ")
    _, err = cli.communicate(timeout=60)
    assert cli.returncode == 2 and "say why" in err
    assert get_task(scim.rt.ledger, task.id).state is TaskState.OPEN
    cli = scim.handover("tasks", "cant", task.id, "--as", ALICE, "--reason", "Development is gone")
    _, err = cli.communicate(timeout=60)
    assert cli.returncode == 0, err
    res = run.wait()
    assert res["status"] == "blocked", res
    assert "Development is gone" in res["failure"]
    assert scim.member(DANA) is not None  # blocked before the removal: nothing is lost
    # Run again (the cause dealt with): the task is asked again, not taken as refused.
    again = scim.start(email=DANA, reason="termination", requester=HR)
    task = scim.task_waiting(DANA, "replace_sole_admin")
    assert task.decided_by == "" and task.note == ""
    decide_task(
        scim.svc, task.id, by=ALICE, state=TaskState.CANT, verified=SELF_DECLARED, note="still gone"
    )
    assert again.wait()["status"] == "blocked"


def test_cant_do_in_slack_asks_why_and_blocks_the_run_with_the_reason(
    scim: OffboardStack,
) -> None:
    """Can't do opens a modal (Slack's views.open) asking why; only an assignee's reason,
    sent from it, counts; the run ends blocked with it and the task says who refused."""
    run = scim.start(email=DANA, reason="termination", requester=HR)
    approve(scim, DANA, SOFIA)
    task = scim.task_waiting(DANA, "replace_sole_admin")
    r, view = scim.click_cant(task, SOFIA)  # the manager is not an assignee: no modal
    assert r.json()["recorded"] is False and "not an assignee" in r.json()["message"]
    assert view is None
    r, view = scim.click_cant(task, ALICE)
    assert r.status_code == 200 and r.json()["message"] == "asked why", r.text
    assert view is not None and view["private_metadata"] == task.id
    blank = scim.send_view(view, ALICE, "  ")
    assert blank.json()["response_action"] == "errors", blank.text  # shown in the modal
    assert get_task(scim.rt.ledger, task.id).state is TaskState.OPEN
    sent = scim.send_view(view, ALICE, "Development has no other member to promote")
    assert sent.json() == {"response_action": "clear"}, sent.text
    res = run.wait()
    assert res["status"] == "blocked", res
    assert "Development has no other member to promote" in res["failure"]
    refused = get_task(scim.rt.ledger, task.id)
    assert refused.state is TaskState.CANT and refused.decided_by == ALICE
    assert scim.member(DANA) is not None  # blocked before the removal: nothing is lost


def test_an_emergency_locks_out_at_the_idp_first_and_removes_once_no_sole_admin(
    scim: OffboardStack,
) -> None:
    seq = scim.seq()
    run = scim.start(**scim.emergency(DANA))
    # Nobody is waited for before the IdP lockout; the keys are the first task.
    task = scim.task_waiting(DANA, "rotate_keys")
    assert "revoke every API key they manage now" in task.instructions
    writes = [(w["method"], w["path"]) for w in scim.writes(seq)]
    assert any(p.startswith("/idp/scim/v2/Users/") for _, p in writes), writes
    assert not [p for _, p in writes if p.startswith("/admin/")], "SCIM only: no admin API"
    for key in scim.get("/admin/v1/api-keys", manager=DANA)["api_keys"]:
        scim.console("POST", f"/api-keys/{key['id']}/revoke", ALICE)
    decide_task(scim.svc, task.id, by=ALICE, state=TaskState.DONE, verified=SELF_DECLARED)
    # She is Development's only Admin, which SCIM cannot tell: the org would refuse her
    # removal, so it waits for the replacement (it failed half-done before).
    task = scim.task_waiting(DANA, "replace_sole_admin")
    assert scim.member(DANA) is not None
    scim.console("PUT", f"/members/{SOFIA}/projects/Development", ALICE, json={"role": "admin"})
    decide_task(scim.svc, task.id, by=ALICE, state=TaskState.DONE, verified=SELF_DECLARED)
    task = scim.task_waiting(DANA, "transfer_content")
    assert scim.member(DANA) is None  # removed before the transfer: an emergency
    scim.console("POST", "/assets/bulk-transfer", ALICE, json={"from": DANA, "to": SOFIA})
    decide_task(scim.svc, task.id, by=ALICE, state=TaskState.DONE, verified=SELF_DECLARED)
    task = scim.task_waiting(DANA, "export_activity")
    decide_task(
        scim.svc,
        task.id,
        by=ALICE,
        state=TaskState.DONE,
        verified=SELF_DECLARED,
        note="attached to the ticket",
    )
    res = run.wait()
    assert res["status"] == "done", res
    checks = res["verification"]
    for kind in ("rotate_keys", "replace_sole_admin", "transfer_content", "export_activity"):
        assert checks[f"task_{kind}"].startswith(f"attested by {ALICE}"), checks
    assert checks["member_removed"] == "pass", checks


def test_a_bulk_offboarding_waits_for_each_leavers_tasks(scim: OffboardStack) -> None:
    from flows.offboard_bulk import offboard_bulk
    from tests.flows.test_offboard_bulk_e2e import paused_batch

    people = ["grace.silva@acme.com", "hugo.zimmer@acme.com"]
    run = scim.start(offboard_bulk, emails=people, reason="termination", requester=HR)
    appr = paused_batch(scim)
    assert appr.required == [[SOFIA]], appr.required  # their manager; HR asked
    assert scim.click(appr, SOFIA).json()["recorded"] is True
    # Each leaver's own subflow waits on its own tasks; nobody is removed before the transfer.
    for person in people:
        for kind in ("replace_sole_admin", "transfer_content"):
            task = scim.task_waiting(person, kind)
            assert scim.member(person) is not None
            if kind == "transfer_content":
                scim.console(
                    "POST", "/assets/bulk-transfer", ALICE, json={"from": person, "to": SOFIA}
                )
            decide_task(
                scim.svc,
                task.id,
                by=ALICE,
                state=TaskState.DONE,
                verified=SELF_DECLARED,
                note="checked",
            )
        task = scim.task_waiting(person, "rotate_keys")
        assert scim.member(person) is None
        decide_task(
            scim.svc,
            task.id,
            by=ALICE,
            state=TaskState.DONE,
            verified=SELF_DECLARED,
            note="no keys",
        )
    res = run.wait(timeout=300)
    assert res["status"] == "done", res
    assert res["counts"] == {"done": 2}, res["members"]
    owners = {a["owner"] for a in scim.get("/admin/v1/assets")["assets"]}
    assert not set(people) & owners


def test_narrowing_on_scim_is_a_task_and_the_person_stays(scim: OffboardStack) -> None:
    """A role change (narrowing to the projects kept) on an org that cannot read roles: one
    change_access task naming what is kept, never an empty plan reported as nothing to do;
    the person stays in the org."""
    gina = "gina.groups@acme.com"
    run = scim.start(
        email=gina, reason="role_change", keep_projects=["Staging"], requester="sofia.lead@acme.com"
    )
    scim.approve_every_seat(scim.paused(gina))
    task = scim.task_waiting(gina, "change_access")
    assert "every project but Staging" in task.instructions, task.instructions
    scim.console("DELETE", f"/members/{gina}/projects/Production", ALICE)
    assert scim.click_done(task, ALICE).json()["recorded"] is True
    res = run.wait()
    assert res["status"] == "done", res
    assert [s["kind"] for s in res["plan"]["steps"]].count("human_task") == 1, res["plan"]
    assert res["verification"]["task_change_access"].startswith(f"attested by {ALICE} at ")
    assert scim.member(gina) is not None  # narrowed, not removed
