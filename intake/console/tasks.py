"""The task page, ``/console/tasks/<id>``: a human task (``domain.tasks``) in full — what to do
in the org's console, for whom, on which case and ticket, and who answered — and its Done /
Can't do form.

Who sees it: its assignees, and the roles that see every task (it_admin, security, auditor:
read-only unless also an assignee); anyone else gets 403. Only an assignee answers, and only
an open task: the answer is recorded as the Slack buttons and ``handover tasks done|cant``
record it (``approvals.tasks.record_answer``: once, audited under the signed-in person's IdP
address, channel ``console``), then the messages, the ticket and the paused run are told
(``announce_answer``, after the response, as the Slack click does).
"""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from approvals.tasks import TaskRefusedInput, announce_answer, record_answer
from domain.tasks import TaskRecord, TaskState
from intake.console.base import PREFIX, Console, PageRefused, Viewer, one
from ledger.tasks import escalated_ids, get_task

NOTE_MAX = 2000  # the ledger keeps this much of a note (ledger/tasks.py)
ANSWERS = {"done": TaskState.DONE, "cant": TaskState.CANT}


def target(task_id: str) -> str:
    """What a task's form acts on (its CSRF token is bound to it)."""
    return f"task:{task_id}"


def visible_task(c: Console, who: Viewer, task_id: str) -> TaskRecord:
    """Task ``task_id``, which ``who`` may see.

    Raises:
        PageRefused: no such task (404), or not theirs to see (403).
    """
    try:
        task = get_task(c.svc.ledger, task_id[:100])
    except KeyError:
        raise PageRefused(404, "No such task", f"There is no task {task_id[:100]}.") from None
    if not (who.sees_all or who.is_one_of(*task.assignees)):
        raise PageRefused(403, "Not for you", "This task is for its assignees and IT.")
    return task


def may_answer(who: Viewer, task: TaskRecord) -> str | None:
    """Why ``who`` may not answer ``task`` (a sentence), or None when they may."""
    if task.state is not TaskState.OPEN:
        return f"this task is already answered ({task.state.value} by {task.decided_by})"
    if not who.is_one_of(*task.assignees):
        return "you are not one of its assignees"
    return None


def routes(router: APIRouter, c: Console) -> None:
    def page(
        who: Viewer, task: TaskRecord, *, status: int = 200, error: str = "", flash: str = ""
    ) -> Response:
        ticket_url = (
            f"{c.svc.ticket_base_url}{task.ticket}" if task.ticket and c.svc.ticket_base_url else ""
        )
        return c.render(
            who,
            "task.html",
            status=status,
            title=task.title,
            task=task,
            escalated=task.id in escalated_ids(c.svc.ledger),
            ticket_url=ticket_url,
            refusal=may_answer(who, task),
            target=target(task.id),
            error=error,
            flash=flash,
        )

    @router.get("/tasks/{task_id}")
    def task_page(request: Request, task_id: str, answered: str = "") -> Response:
        """The task in full; its form for an assignee while it is open."""
        who = c.need(request)
        task = visible_task(c, who, task_id)
        # The flash only repeats what the ledger says: this person's answer is recorded.
        mine = bool(answered) and task.state is not TaskState.OPEN
        flash = "Your answer is recorded; the run is told." if mine else ""
        return page(who, task, flash=flash if who.is_one_of(task.decided_by) else "")

    @router.post("/tasks/{task_id}")
    async def answer(request: Request, task_id: str, background: BackgroundTasks) -> Response:
        """Done or Can't do (with a note), by an assignee of the open task: recorded once, then
        the run woken; the page again with the reason when refused (nothing changed)."""
        who, form = await c.posted(request, target(task_id))
        task = await run_in_threadpool(visible_task, c, who, task_id)
        state = ANSWERS.get(one(form, "answer"))
        if state is None:
            raise PageRefused(400, "Refused", "Answer Done or Can't do.")
        note = one(form, "note", NOTE_MAX)
        if not who.is_one_of(*task.assignees):
            raise PageRefused(403, "Not yours to answer", "Only an assignee answers this task.")
        if state is TaskState.CANT and not note.strip():
            why = "Can't do needs a note: say why it can't be done (the run ends blocked with it)."
            return page(who, task, status=400, error=why)
        try:
            task, closed = await run_in_threadpool(
                record_answer,
                c.svc,
                task.id,
                by=who.email,
                state=state,
                verified=who.verified,
                note=note,
                channel="console",
            )
        except TaskRefusedInput as exc:  # the ledger's own check (an alias not assigned, …)
            return page(who, task, status=403, error=f"Refused: {exc}; nothing changed.")
        if not closed:
            why = f"Refused: already {task.state.value} by {task.decided_by}; nothing changed."
            return page(who, task, status=409, error=why)
        # As the Slack click: the messages, the ticket and the run's wake-up after the answer.
        background.add_task(announce_answer, c.svc, task)
        return c.redirect(f"{PREFIX}/tasks/{task.id}?answered=1")
