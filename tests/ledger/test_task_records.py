"""Human tasks in the ledger (ledger/tasks.py): filed once per case and step, decided once.

(Not ``test_tasks.py``: tests/approvals/test_tasks.py has that name, and test modules share
one namespace.)
"""

from __future__ import annotations

from datetime import UTC, datetime

from domain.steps import TaskKind
from domain.tasks import TaskRecord, TaskState
from ledger import LedgerDB
from ledger.tasks import decide_task, file_task, get_task, list_tasks

T0 = datetime(2026, 11, 1, 9, tzinfo=UTC)


def record(task_id: str = "task-1-aaaa", step_id: str = "human_task:x") -> TaskRecord:
    return TaskRecord(
        id=task_id,
        case_id=1,
        step_id=step_id,
        kind=TaskKind.TRANSFER_CONTENT,
        runbook="offboard",
        subject="dana@x.com",
        title="Transfer",
        instructions="Do it",
        assignees=["alice@x.com"],
        created_at=T0,
    )


def test_a_task_is_filed_once_per_case_and_step(ledger: LedgerDB) -> None:
    first, new = file_task(ledger, record())
    again, new_again = file_task(ledger, record(task_id="task-1-other"))
    assert new and not new_again
    assert again.id == first.id == "task-1-aaaa"
    assert [t.id for t in list_tasks(ledger)] == ["task-1-aaaa"]


def test_a_task_is_decided_once_and_keeps_the_first_answer(ledger: LedgerDB) -> None:
    file_task(ledger, record())
    done, closed = decide_task(
        ledger, "task-1-aaaa", state=TaskState.DONE, by="alice@x.com", note="ok", at=T0
    )
    late, closed_again = decide_task(
        ledger, "task-1-aaaa", state=TaskState.CANT, by="raj@x.com", note="no", at=T0
    )
    assert closed and not closed_again
    assert late == done == get_task(ledger, "task-1-aaaa")
    assert done.state is TaskState.DONE and done.decided_by == "alice@x.com"
    assert done.attestation() == "attested by alice@x.com at 2026-11-01 09:00 UTC"
    assert list_tasks(ledger, state=TaskState.OPEN) == []
