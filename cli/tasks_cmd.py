"""``handover tasks [--open] [--json] [--sweep]``, ``handover tasks done ID [--note]`` and
``handover tasks cant ID --reason TEXT`` (INTERFACES.md): the human tasks, and answering one
without Slack, as the signed-in person (``--as`` in sandbox mode only: :mod:`cli.identity`)."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.table import Table

from cli.approvals_cmd import _fail, _ledger_after, _services
from cli.identity import acting

tasks_app = typer.Typer(
    help="Human tasks: steps no API can do, done by a person in the org's console.",
    invoke_without_command=True,
)

FIELDS = ("id", "kind", "subject", "case", "title", "instructions", "assignees", "state")


@tasks_app.callback()
def list_tasks(
    ctx: typer.Context,
    open_: bool = typer.Option(False, "--open", help="only tasks nobody has answered"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object"),
    sweep: bool = typer.Option(False, help="escalate the open tasks that are due first"),
) -> None:
    """List human tasks: id, kind, subject, case, title, instructions, assignees, state."""
    if ctx.invoked_subcommand is not None:
        return
    from approvals.tasks import escalate_open_tasks
    from domain.tasks import TaskState
    from ledger.tasks import list_tasks as rows

    db = _ledger_after(
        (lambda svc: (f"{t}: escalated" for t in escalate_open_tasks(svc))) if sweep else None
    )
    items = rows(db, state=TaskState.OPEN if open_ else None)
    if as_json:
        out = [
            {
                **t.model_dump(mode="json", include=set(FIELDS) - {"case"}),
                "case": t.case_id,
                "decided_by": t.decided_by,
                "decided_at": t.decided_at.isoformat() if t.decided_at else None,
                "note": t.note,
                "ticket": t.ticket,
            }
            for t in items
        ]
        typer.echo(json.dumps({"tasks": out}))
        return
    table = Table(title="Human tasks")
    for col in ("id", "kind", "subject", "case", "title", "assignees", "state"):
        table.add_column(col)
    for t in items:
        state = t.state.value + (f" by {t.decided_by}" if t.decided_by else "")
        table.add_row(
            t.id, t.kind.value, t.subject, str(t.case_id), t.title, ", ".join(t.assignees), state
        )
    Console().print(table)


def _answer(task_id: str, as_: str | None, *, done: bool, note: str) -> None:
    email, verified = acting(as_)  # a refused identity costs no import of the ledger
    from approvals.tasks import TaskRefusedInput, decide_task
    from domain.tasks import TaskState

    try:
        task, message = decide_task(
            _services(),
            task_id,
            by=email,
            state=TaskState.DONE if done else TaskState.CANT,
            verified=verified,
            note=note,
        )
    except TaskRefusedInput as e:
        raise _fail(str(e)) from None
    typer.echo(f"{task.id}: {'done' if done else 'cant'} by {email}: {message}")


@tasks_app.command("done")
def done(
    task_id: str = typer.Argument(..., help="the task's id (task-…)"),
    as_: str | None = typer.Option(
        None, "--as", help="sandbox mode only: who did it (else: the signed-in person)"
    ),
    note: str = typer.Option("", help="what was done, kept with the answer"),
) -> None:
    """Say a task is done: the run that waits for it goes on."""
    _answer(task_id, as_, done=True, note=note)


@tasks_app.command("cant")
def cant(
    task_id: str = typer.Argument(..., help="the task's id (task-…)"),
    as_: str | None = typer.Option(
        None, "--as", help="sandbox mode only: who says so (else: the signed-in person)"
    ),
    reason: str = typer.Option(..., help="why it can't be done: the run is blocked with it"),
) -> None:
    """Say a task can't be done: the run that waits for it ends blocked with the reason."""
    _answer(task_id, as_, done=False, note=reason)
