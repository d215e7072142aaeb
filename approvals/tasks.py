"""The lifecycle of a human task (``domain.tasks``): filed and posted once, waited for like an
approval, decided once by one of its assignees.

1. :func:`open_task` files the task in the ledger once per case and step, then asks each
   assignee by Slack DM (a Done button) and comments on the ticket; a run that dies between
   the two posts what was not posted when it comes back.
2. :func:`await_task` pauses the flow run (``approvals.pause.pause_run``, as the gate does)
   until the task is decided; a later run of the same case takes the task over.
3. :func:`escalate_open_tasks` (the watchdog's sweep): a task still open after the policy's
   ``escalate_after_hours`` is escalated once — its assignees are reminded, the fallback group
   becomes assignees too (as it may fill any approval seat by then), the ticket says so.
4. :func:`decide_task` records Done or Can't do (the only way a task closes: a Slack click
   through the intake, or ``handover tasks done|cant``), by an assignee only, audits it,
   updates the messages and the ticket, and wakes the run, which reads the ledger.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel

from approvals.handler import resume_run
from approvals.pause import pause_run
from approvals.people import recorded_as
from approvals.services import Services
from connectors.capabilities import MessageRef
from connectors.errors import ConnectorError
from domain import blocks
from domain.identity import Verified
from domain.policy import task_assignees
from domain.records import AuditEvent
from domain.steps import HumanTask
from domain.tasks import TaskRecord, TaskState
from ledger import tasks as store
from ledger.audit import append

log = logging.getLogger("handover.tasks")

# How long a run waits for a task before Prefect fails it: a task has no auto-deny (nobody
# but a person can say it is done), so the bound is only there for runs nobody looks after.
TASK_PAUSE_S = 30 * 24 * 3600


class TaskWakeup(BaseModel):
    """What a resume carries: only why the run was woken (the decision is in the ledger)."""

    kind: Literal["task", "decision", "escalate", "expired", "cancel"] = "task"


class TaskRefusedInput(ValueError):
    """The decision cannot be taken: unknown task, not an assignee, bad input."""


@dataclass(frozen=True)
class Where:
    """What a task belongs to: its runbook, subject, case and ticket."""

    runbook: str
    subject: str
    case_id: int
    ticket: str = ""


def task_id_for(case_id: int, step_id: str) -> str:
    """A short, stable id for the task of ``step_id`` in case ``case_id`` (what people type)."""
    return f"task-{case_id}-{hashlib.sha256(step_id.encode()).hexdigest()[:8]}"


def _audit(svc: Services, action: str, task: TaskRecord, **kw: Any) -> None:
    append(
        svc.ledger,
        AuditEvent(
            action=action,
            subject=task.subject,
            target=task.id,
            flow_run_id=task.flow_run_id,
            ticket=task.ticket,
            **kw,
        ),
        now=svc.clock(),
    )


def _post(svc: Services, task: TaskRecord) -> TaskRecord:
    """DM each assignee not yet asked; comment on the ticket once."""
    refs = list(task.slack_refs)
    asked = {r["email"] for r in refs}
    if svc.messenger is not None:
        body = blocks.human_task_blocks(
            task_id=task.id, title=task.title, instructions=task.instructions
        )
        for person in task.assignees:
            if person in asked:
                continue
            try:
                ref = svc.messenger.dm(person, f"Task: {task.title}", body)
            except ConnectorError as exc:  # they can still answer with `handover tasks done`
                _audit(svc, "task.notify_failed", task, on_behalf_of=person, effect=exc.detail)
                continue
            refs.append({"email": person, "channel": ref.channel, "ts": ref.ts})
    if not any(r["email"] == "ticket" for r in refs) and task.ticket and svc.tickets is not None:
        with contextlib.suppress(ConnectorError):  # the ledger holds the task; Jira a copy
            svc.tickets.comment(
                task.ticket,
                f"Task {task.id} for {', '.join(task.assignees)}: {task.title}\n"
                f"{task.instructions}\nAnswer with `handover tasks done {task.id}` or the "
                "Done button in Slack.",
            )
            refs.append({"email": "ticket", "channel": "", "ts": ""})
    return store.update_task(svc.ledger, task.id, slack_refs=refs)


def open_task(
    svc: Services, where: Where, *, step_id: str, task: HumanTask, flow_run_id: str
) -> TaskRecord:
    """The task for ``step_id`` in this case: filed and posted the first time, taken over by
    this flow run (its wake-ups come here) every time."""
    record = TaskRecord(
        id=task_id_for(where.case_id, step_id),
        case_id=where.case_id,
        step_id=step_id,
        kind=task.task,
        runbook=where.runbook,
        subject=where.subject,
        title=task.title,
        instructions=task.instructions,
        assignees=[a for a in task_assignees(svc.policy) if a != where.subject],
        flow_run_id=flow_run_id,
        ticket=where.ticket,
        created_at=svc.clock(),
    )
    filed, new = store.file_task(svc.ledger, record)
    if new:
        _audit(svc, "task.opened", filed, after={"assignees": filed.assignees})
    elif flow_run_id and filed.flow_run_id != flow_run_id:
        if filed.state is TaskState.CANT:
            # A new run of a case blocked by Can't do asks again (its cause was dealt with):
            # the refusal stays in the audit log.
            filed = store.update_task(
                svc.ledger,
                filed.id,
                state=TaskState.OPEN,
                decided_by="",
                decided_at=None,
                note="",
                slack_refs=[],
            )
            _audit(svc, "task.reopened", filed, after={"flow_run_id": flow_run_id})
        if filed.state is TaskState.OPEN:
            filed = store.update_task(svc.ledger, filed.id, flow_run_id=flow_run_id)
    if filed.state is TaskState.OPEN and len(filed.slack_refs) < len(filed.assignees) + 1:
        filed = _post(svc, filed)
    return filed


def escalate_open_tasks(svc: Services, *, now: datetime | None = None) -> list[str]:
    """Escalate, once, each task open longer than the policy's ``escalate_after_hours``; the
    ids escalated by this call (see the module docstring)."""
    now = now or svc.clock()
    after = timedelta(hours=svc.policy.escalate_after_hours)
    already = store.escalated_ids(svc.ledger)
    done: list[str] = []
    for task in store.list_tasks(svc.ledger, state=TaskState.OPEN):
        if task.id in already or now < task.created_at + after:
            continue
        if not store.mark_escalated(svc.ledger, task.id, at=now):
            continue  # another watchdog did it
        fallback = svc.policy.groups.get(svc.policy.fallback_group, [])
        added = [p for p in fallback if p not in task.assignees and p != task.subject]
        if added:
            task = store.update_task(svc.ledger, task.id, assignees=[*task.assignees, *added])
        hours = int((now - task.created_at).total_seconds() // 3600)
        _remind(svc, task, hours=hours, added=added)
        _audit(svc, "task.escalated", task, after={"open_hours": hours, "added": added})
        done.append(task.id)
    return done


def _remind(svc: Services, task: TaskRecord, *, hours: int, added: list[str]) -> None:
    """Each assignee (the new ones asked for the first time) and the ticket: still open."""
    text = f"Still open after {hours} h: {task.title}"
    if svc.messenger is not None:
        body = blocks.human_task_blocks(
            task_id=task.id, title=f"{text} (escalated)", instructions=task.instructions
        )
        refs = list(task.slack_refs)
        for person in task.assignees:
            try:
                ref = svc.messenger.dm(person, text, body)
            except ConnectorError as exc:  # they can still answer with `handover tasks done`
                _audit(svc, "task.notify_failed", task, on_behalf_of=person, effect=exc.detail)
                continue
            # The reminder is updated too once someone answers.
            refs.append({"email": person, "channel": ref.channel, "ts": ref.ts})
        store.update_task(svc.ledger, task.id, slack_refs=refs)
    if task.ticket and svc.tickets is not None:
        with contextlib.suppress(ConnectorError):
            who = f"; now also assigned to {', '.join(added)}" if added else ""
            svc.tickets.comment(
                task.ticket, f"Task {task.id} is still open after {hours} h (escalated{who})."
            )


def await_task(
    svc: Services, task_id: str, *, pause: Callable[..., Any] | None = None
) -> TaskRecord:
    """Pause the flow run until the task is decided; the decided task."""
    pause = pause or pause_run
    while True:
        task = store.get_task(svc.ledger, task_id)
        if task.state is not TaskState.OPEN:
            return task
        pause(
            wait_for_input=TaskWakeup,
            timeout=TASK_PAUSE_S,
            poll_interval=1,
            key=f"{task.id}-{uuid.uuid4().hex[:12]}",  # a new key per pause (approvals/pause.py)
            # An answer whose wake-up came before the pause (lost: "not paused") is seen here.
            recheck=lambda: store.get_task(svc.ledger, task_id).state is not TaskState.OPEN,
        )


def decide_task(
    svc: Services,
    task_id: str,
    *,
    by: str,
    state: TaskState,
    verified: Verified,
    note: str = "",
    channel: str = "cli",
) -> tuple[TaskRecord, str]:
    """Record Done or Can't do for ``task_id`` by ``by`` (an assignee), once, then tell and
    wake (:func:`announce_answer`); the task and what happened, in words.

    Raises:
        TaskRefusedInput: as :func:`record_answer`.
    """
    task, closed = record_answer(
        svc, task_id, by=by, state=state, verified=verified, note=note, channel=channel
    )
    if not closed:
        return task, f"already {task.state.value} by {task.decided_by}"
    return task, f"recorded; flow {announce_answer(svc, task)}"


def _assigned(svc: Services, task_id: str, by: str) -> TaskRecord:
    """Task ``task_id``, which ``by`` (an email) may answer.

    Raises:
        TaskRefusedInput: no such task, or ``by`` is not one of its assignees.
    """
    by = by.strip().lower()
    try:
        task = store.get_task(svc.ledger, task_id)
    except KeyError:
        raise TaskRefusedInput(f"no task {task_id}") from None
    if by not in task.assignees:
        raise TaskRefusedInput(
            f"{by} is not an assignee of {task_id} (assignees: {', '.join(task.assignees)})"
        )
    return task


def ask_why(svc: Services, task_id: str, *, by: str, trigger_id: str) -> str:
    """Can't do clicked by ``by``: open the modal that asks why (``domain.blocks.
    cant_reason_view``) for their click's ``trigger_id``; what happened, in words. Nothing is
    recorded until the reason is sent.

    Raises:
        TaskRefusedInput: no such task, ``by`` is not one of its assignees, the task is
            answered already, or the click carries no trigger.
    """
    task = _assigned(svc, task_id, by)
    if task.state is not TaskState.OPEN:
        raise TaskRefusedInput(f"already {task.state.value} by {task.decided_by}")
    if not trigger_id or svc.messenger is None:
        raise TaskRefusedInput("a Can't do click carries a trigger_id")
    try:
        svc.messenger.open_view(
            trigger_id, blocks.cant_reason_view(task_id=task.id, title=task.title)
        )
    except ConnectorError as exc:  # an expired trigger: the person clicks again
        return f"could not ask why: {exc}"
    return "asked why"


def record_answer(
    svc: Services,
    task_id: str,
    *,
    by: str,
    state: TaskState,
    verified: Verified,
    note: str = "",
    channel: str = "cli",
) -> tuple[TaskRecord, bool]:
    """Store Done or Can't do for ``task_id`` by ``by`` (an assignee) in the ledger and the
    audit log, once; the task, and whether this answer closed it.

    Raises:
        TaskRefusedInput: no such task, ``by`` is not one of its assignees, or Can't do
            without a reason.
    """
    by = recorded_as(svc, by)
    _assigned(svc, task_id, by)
    if state is TaskState.CANT and not note.strip():
        raise TaskRefusedInput("say why it can't be done (--reason)")
    task, closed = store.decide_task(
        svc.ledger, task_id, state=state, by=by, note=note.strip(), at=svc.clock()
    )
    if closed:
        _audit(
            svc,
            f"task.{state.value}",
            task,
            on_behalf_of=by,
            effect=state.value,
            after={"note": task.note, "channel": channel, **verified.audit()},
        )
    return task, closed


def announce_answer(svc: Services, task: TaskRecord) -> str:
    """Every message of a decided task says who answered, the ticket too; then the run is
    woken (it reads the answer from the ledger). What the wake-up came to (``resumed``, ``not
    paused``: it reads the ledger before it pauses again, …)."""
    _acknowledge(svc, task)
    return resume_run(task.flow_run_id, "task").result


def _acknowledge(svc: Services, task: TaskRecord) -> None:
    """Every message of the task says who decided; the ticket too."""
    assert task.decided_at is not None
    label = "Done" if task.state is TaskState.DONE else "Can't do"
    if svc.messenger is not None:
        body = blocks.task_done_blocks(
            task_id=task.id,
            title=task.title,
            done_by=task.decided_by,
            done_at=task.decided_at,
            label=label,
        )
        for r in task.slack_refs:
            if r["email"] == "ticket":
                continue
            with contextlib.suppress(ConnectorError):
                svc.messenger.update(
                    MessageRef(r["channel"], r["ts"]), f"{label} by {task.decided_by}", body
                )
    if task.ticket and svc.tickets is not None:
        with contextlib.suppress(ConnectorError):
            svc.tickets.comment(
                task.ticket,
                f"Task {task.id} ({task.title}): {label} by {task.decided_by}"
                + (f": {task.note}" if task.note else "")
                + ".",
            )
