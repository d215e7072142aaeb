"""The executor and the check of a human task step (``domain.steps.HumanTask``), for every
runbook whose plan may hold one: file and post it once, wait for a person's answer, and report
what they said — ``attested`` (never ``pass``: no API can read it back) or blocked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect.runtime import flow_run

from approvals.tasks import Where, await_task, open_task, task_id_for
from domain.models import Effect, WriteResult
from domain.runbook import PlanStep
from domain.steps import HumanTask
from domain.tasks import TaskRefused, TaskState
from ledger.tasks import get_task
from tasks.runtime import Runtime
from tasks.steps import StepScope


def do_human_task(
    rt: Runtime, step: PlanStep, task: HumanTask, scope: StepScope
) -> tuple[WriteResult, dict[str, Any]]:
    """Post the task (once per case), wait until it is decided; its attestation.

    Raises:
        TaskRefused: an assignee answered Can't do (the run ends blocked with their reason).
    """
    where = Where(scope.runbook, scope.subject, scope.case_id, scope.ticket)
    filed = open_task(rt, where, step_id=step.id, task=task, flow_run_id=str(flow_run.id or ""))
    decided = await_task(rt, filed.id)
    if decided.state is TaskState.CANT:
        raise TaskRefused(decided)
    detail = {"task": decided.id, "attested": decided.attestation(), "note": decided.note}
    return WriteResult(effect=Effect.ATTESTED), detail


def task_checks(rt: Runtime, steps: Sequence[PlanStep], case_id: int | None) -> dict[str, str]:
    """Each human task of the plan as its verification reports it: ``attested by <who> at
    <when>``, or ``fail: …`` while it is not done."""
    out: dict[str, str] = {}
    for step in steps:
        if not isinstance(step.params, HumanTask):
            continue
        name = f"task_{step.params.task.value}"
        if case_id is None:
            out[name] = "fail: no case holds this task"
            continue
        try:
            task = get_task(rt.ledger, task_id_for(case_id, step.id))
        except KeyError:
            out[name] = "fail: the task was never filed"
            continue
        out[name] = (
            task.attestation()
            if task.state is TaskState.DONE
            else f"fail: task {task.id} is {task.state.value}"
        )
    return out
