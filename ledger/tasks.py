"""Human tasks (``domain.tasks``): filed once per case and step, decided once.

The ledger is the source of truth for a task's state, as it is for approvals: a Done click or
``handover tasks done`` records the decision here and only wakes the run, which reads it back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String, UniqueConstraint, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from domain.tasks import TaskRecord, TaskState
from ledger.db import LedgerBase, LedgerDB, get_row, update_row


class TaskRow(LedgerBase):
    __tablename__ = "human_tasks"
    __table_args__ = (UniqueConstraint("case_id", "step_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    case_id: Mapped[int] = mapped_column(Integer, index=True)
    step_id: Mapped[str] = mapped_column(String(500))
    kind: Mapped[str] = mapped_column(String(40))
    runbook: Mapped[str] = mapped_column(String(40))
    subject: Mapped[str] = mapped_column(String(320), index=True)
    title: Mapped[str] = mapped_column(String(500))
    instructions: Mapped[str] = mapped_column(String(4000))
    assignees: Mapped[list[Any]] = mapped_column(JSON, default=list)
    state: Mapped[str] = mapped_column(String(8), default=TaskState.OPEN.value, index=True)
    decided_by: Mapped[str] = mapped_column(String(320), default="")
    decided_at: Mapped[datetime | None] = mapped_column(nullable=True)
    note: Mapped[str] = mapped_column(String(2000), default="")
    flow_run_id: Mapped[str] = mapped_column(String(64), default="")
    ticket: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime]
    slack_refs: Mapped[list[Any]] = mapped_column(JSON, default=list)


class TaskEscalationRow(LedgerBase):
    """An open task's escalation, once per task (a table of its own: the tasks table of a
    ledger already in use stays as it is)."""

    __tablename__ = "human_task_escalations"

    task_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    at: Mapped[datetime]


def mark_escalated(db: LedgerDB, task_id: str, *, at: datetime) -> bool:
    """Record that ``task_id`` was escalated; False when it already was (by this or another
    watchdog), so it is escalated once."""
    try:
        with db.session() as s:
            s.add(TaskEscalationRow(task_id=task_id, at=at))
    except IntegrityError:
        return False
    return True


def escalated_ids(db: LedgerDB) -> set[str]:
    """The tasks escalated so far."""
    with db.sessions() as s:
        return set(s.scalars(select(TaskEscalationRow.task_id)))


def _model(row: TaskRow) -> TaskRecord:
    return TaskRecord(**{c.name: getattr(row, c.name) for c in TaskRow.__table__.columns})


def file_task(db: LedgerDB, task: TaskRecord) -> tuple[TaskRecord, bool]:
    """Store ``task`` unless its case already filed one for its step; the stored task, and
    whether it is new."""
    with db.sessions() as s:
        old = s.scalars(
            select(TaskRow).where(TaskRow.case_id == task.case_id, TaskRow.step_id == task.step_id)
        ).first()
        if old is not None:
            return _model(old), False
    try:
        with db.session() as s:
            s.add(TaskRow(**task.model_dump(mode="python")))
        return get_task(db, task.id), True
    except IntegrityError:  # filed meanwhile by another run of the same case
        with db.sessions() as s:
            row = s.scalars(
                select(TaskRow).where(
                    TaskRow.case_id == task.case_id, TaskRow.step_id == task.step_id
                )
            ).one()
            return _model(row), False


def get_task(db: LedgerDB, task_id: str) -> TaskRecord:
    """The task ``task_id``.

    Raises:
        KeyError: there is none.
    """
    with db.sessions() as s:
        return _model(get_row(s, TaskRow, task_id, what="task"))


def list_tasks(db: LedgerDB, *, state: TaskState | None = None) -> list[TaskRecord]:
    """Every task (or those in ``state``), oldest first."""
    with db.sessions() as s:
        q = select(TaskRow).order_by(TaskRow.created_at, TaskRow.id)
        if state is not None:
            q = q.where(TaskRow.state == state.value)
        return [_model(r) for r in s.scalars(q)]


def update_task(db: LedgerDB, task_id: str, **changes: Any) -> TaskRecord:
    with db.session() as s:
        update_row(s, TaskRow, task_id, changes, what="task")
    return get_task(db, task_id)


def decide_task(
    db: LedgerDB, task_id: str, *, state: TaskState, by: str, note: str, at: datetime
) -> tuple[TaskRecord, bool]:
    """Close an open task as done or can't-do, once: the task, and whether this call closed
    it (False: it was already decided, and stays as it was).

    Raises:
        KeyError: no such task.
    """
    assert state is not TaskState.OPEN
    with db.session() as s:
        # Locked (PostgreSQL; SQLite's IMMEDIATE transaction locks anyway): two clicks at once
        # must not both close it.
        row = s.get(TaskRow, task_id, with_for_update=True)
        if row is None:
            raise KeyError(f"no task {task_id}")
        if row.state != TaskState.OPEN.value:
            return _model(row), False
        row.state, row.decided_by, row.decided_at, row.note = state.value, by, at, note[:2000]
    return get_task(db, task_id), True
