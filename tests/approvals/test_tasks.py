"""The human-task lifecycle (approvals/tasks.py) on the session's real Prefect server: filed
and posted once, only its assignees answer, and an answer whose wake-up is lost (it came
before the run paused) still wakes the run."""

from __future__ import annotations

import dataclasses
import threading
from datetime import timedelta
from typing import Any

import pytest
from prefect import flow
from prefect.runtime import flow_run

from approvals.pause import pause_run
from approvals.tasks import (
    TaskRefusedInput,
    Where,
    await_task,
    decide_task,
    escalate_open_tasks,
    open_task,
)
from domain.identity import SELF_DECLARED
from domain.steps import HumanTask, TaskKind
from domain.tasks import TaskState
from ledger import tasks as store
from tests.approvals.stack import SERVICES, Stack

pytestmark = pytest.mark.slow

WHERE = Where("offboard", "dana.sole@acme.com", case_id=7, ticket="")
TASK = HumanTask(task=TaskKind.TRANSFER_CONTENT, title="Transfer", instructions="In the console…")
ALICE, RAJ = "alice.admin@acme.com", "raj.admin@acme.com"


@flow(name="task-lost-wake-up", persist_result=False)
def answered_before_the_pause(key: str) -> str:
    """Wait for a task whose answer is recorded between the run's last look and its pause, with
    no wake-up (as when the intake's resume finds the run not paused yet)."""
    svc = SERVICES[key]
    task = open_task(svc, WHERE, step_id="human_task:x", task=TASK, flow_run_id=str(flow_run.id))

    def answer_then_pause(**kw: Any) -> Any:
        store.decide_task(
            svc.ledger, task.id, state=TaskState.DONE, by=ALICE, note="", at=svc.clock()
        )
        return pause_run(**kw)

    return await_task(svc, task.id, pause=answer_then_pause).state.value


def test_an_answer_whose_wake_up_was_lost_still_wakes_the_run(stack: Stack) -> None:
    out: list[str] = []
    t = threading.Thread(target=lambda: out.append(answered_before_the_pause(stack.key)))
    t.start()
    t.join(180)
    assert out == ["done"]


def test_a_task_is_posted_once_to_each_assignee_and_answered_once(stack: Stack) -> None:
    svc = stack.svc
    first = open_task(svc, WHERE, step_id="human_task:y", task=TASK, flow_run_id="")
    again = open_task(svc, WHERE, step_id="human_task:y", task=TASK, flow_run_id="")
    assert first.id == again.id and first.assignees == [ALICE, RAJ]
    assert [r["email"] for r in again.slack_refs] == [ALICE, RAJ]  # no ticket: no comment
    with pytest.raises(TaskRefusedInput, match="not an assignee"):
        decide_task(
            svc, first.id, by="dana.sole@acme.com", state=TaskState.DONE, verified=SELF_DECLARED
        )
    with pytest.raises(TaskRefusedInput, match="say why"):
        decide_task(
            svc, first.id, by=ALICE, state=TaskState.CANT, verified=SELF_DECLARED, note="  "
        )
    task, said = decide_task(
        svc, first.id, by=RAJ, state=TaskState.DONE, verified=SELF_DECLARED, note="did it"
    )
    assert task.state is TaskState.DONE and said.startswith("recorded; flow no flow run")
    task, said = decide_task(
        svc, first.id, by=ALICE, state=TaskState.CANT, verified=SELF_DECLARED, note="no"
    )
    assert task.decided_by == RAJ and said == f"already done by {RAJ}"


def test_an_open_task_is_escalated_once_after_the_policys_hours(stack: Stack) -> None:
    gov = "gov.lead@acme.com"
    t0 = stack.svc.clock()
    now = [t0]
    policy = stack.svc.policy.model_copy(update={"task_group": "data_governance"})
    svc = dataclasses.replace(stack.svc, policy=policy, clock=lambda: now[0])
    where = Where("offboard", "dana.sole@acme.com", case_id=8, ticket="")
    task = open_task(svc, where, step_id="human_task:z", task=TASK, flow_run_id="")
    assert task.assignees == [gov]
    before = len(stack.dms(ALICE))  # the sandbox's Slack is shared by this module's tests
    now[0] = t0 + timedelta(hours=policy.escalate_after_hours) - timedelta(minutes=1)
    assert escalate_open_tasks(svc) == []
    now[0] = t0 + timedelta(hours=policy.escalate_after_hours, minutes=1)
    assert escalate_open_tasks(svc) == [task.id]
    assert escalate_open_tasks(svc) == []  # once
    # The fallback group may now answer it too, as it may fill any approval seat by then.
    after = store.get_task(svc.ledger, task.id)
    assert after.assignees == [gov, ALICE, RAJ]
    hours = int(policy.escalate_after_hours)
    for person in (gov, ALICE, RAJ):
        texts = [m["text"] for m in stack.dms(person)]
        assert f"Still open after {hours} h: Transfer" in texts, (person, texts)
    done, _ = decide_task(svc, task.id, by=ALICE, state=TaskState.DONE, verified=SELF_DECLARED)
    assert done.state is TaskState.DONE
    # Every message of the task, the reminders too, says who answered.
    assert [m["text"] for m in stack.dms(ALICE)[before:]] == [f"Done by {ALICE}"]


def test_handover_tasks_sweep_escalates_what_is_due(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    import json

    from typer.testing import CliRunner

    from cli.main import app

    long_ago = stack.svc.clock() - timedelta(hours=stack.svc.policy.escalate_after_hours + 1)
    svc = dataclasses.replace(stack.svc, clock=lambda: long_ago)
    where = Where("offboard", "dana.sole@acme.com", case_id=9, ticket="")
    task = open_task(svc, where, step_id="human_task:w", task=TASK, flow_run_id="")
    s = stack.svc.settings
    for name, value in {
        "HANDOVER_LEDGER_URL": str(s.ledger_url),
        "HANDOVER_SLACK_API_URL": s.slack_api_url,
        "HANDOVER_JIRA_URL": s.jira_url,
        "HANDOVER_ORG_URL": s.org_url,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # no stray .env or handover.toml
    out = CliRunner().invoke(app, ["tasks", "--sweep", "--open", "--json"])
    assert out.exit_code == 0, out.output
    assert f"{task.id}: escalated" in out.stderr
    listed = json.loads(out.stdout)["tasks"]
    assert task.id in [t["id"] for t in listed]
    again = CliRunner().invoke(app, ["tasks", "--sweep", "--json"])
    assert "escalated" not in again.stderr  # once
