"""The gate tallies the authenticated record (issue 15): a flow paused on the session's real
Prefect server, signed Slack clicks over HTTP through the intake, and an insider who can write
the ledger's database but does not hold the audit key.

- A decision row inserted with SQL is not counted; the run says so (a warning and an
  ``approval.decision_ignored`` audit event), and the approver's real click still counts.
- An approval's state set to ``approved`` with SQL is not believed: the run re-tallies the
  authenticated decisions, records ``approval.state_ignored`` and waits on.

Before the audit key, both approved the run at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text

from approvals.handler import resume_run
from approvals.watchdog import sweep
from domain.policy import UNAUTHENTICATED
from domain.records import ApprovalState
from ledger.approvals import DecisionRow, get_approval
from ledger.audit import records, verify
from tests.approvals.stack import Stack

pytestmark = pytest.mark.slow

TERMINATION = {
    "runbook": "offboard",
    "subject": "dana.sole@acme.com",
    "requester": "hr.bot@acme.com",
    "reason": "termination",
    "subject_manager": "sofia.lead@acme.com",
}
MANAGER = "sofia.lead@acme.com"


def _until(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_decision_row_inserted_with_sql_is_not_counted(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    run = stack.start(**TERMINATION)
    appr = stack.paused("dana.sole@acme.com")
    # Written as any database client would (no audit event: that needs the key).
    with stack.svc.ledger.session() as s:
        s.add(
            DecisionRow(
                approval_id=appr.id,
                approver=MANAGER,
                decision="approve",
                at=appr.created_at,
                plan_hash=appr.plan_hash,
                auth="slack",
            )
        )
    # The watchdog sees a decision the flow has not tallied, and wakes it.
    with caplog.at_level("WARNING", logger="handover.approvals"):
        sweep(stack.svc)
        _until("the flow to tally it", lambda: stack.settled(appr, run))
    (forged,) = get_approval(stack.svc.ledger, appr.id).decisions
    assert (forged.counted, forged.reason) == (False, UNAUTHENTICATED)
    assert run.thread.is_alive()
    assert f"a approve by {MANAGER} has no authenticated audit record: ignored" in caplog.text
    (ignored,) = [r for r in records(stack.svc.ledger) if r.action == "approval.decision_ignored"]
    assert ignored.on_behalf_of == MANAGER and ignored.target == appr.id
    # The manager's own signed click is not blocked by the forged row saying the same.
    r = stack.click(appr, MANAGER)
    assert r.status_code == 200 and r.json()["recorded"] is True, r.text
    assert run.wait() == "approved"
    final = get_approval(stack.svc.ledger, appr.id)
    assert [(d.approver, d.counted) for d in final.decisions] == [(MANAGER, True)]
    assert verify(stack.svc.ledger).ok


def test_an_approved_state_set_with_sql_is_not_believed(stack: Stack) -> None:
    run = stack.start(**TERMINATION)
    appr = stack.paused("dana.sole@acme.com")
    with stack.svc.ledger.engine.begin() as c:
        c.execute(text("UPDATE approvals SET state = 'approved' WHERE id = :a"), {"a": appr.id})
    assert resume_run(appr.flow_run_id).result == "resumed"  # any wake-up of the run

    def ignored() -> bool:
        return any(r.action == "approval.state_ignored" for r in records(stack.svc.ledger))

    _until("the run to refuse the approved state", ignored)
    assert get_approval(stack.svc.ledger, appr.id).state is ApprovalState.PENDING
    _until("the run to wait again", lambda: stack.settled(appr, run))
    assert run.thread.is_alive()
    r = stack.click(appr, MANAGER)
    assert r.status_code == 200, r.text
    assert run.wait() == "approved"
    actions = [r.action for r in records(stack.svc.ledger)]
    assert actions == [
        "approval.requested",
        "approval.state_ignored",
        "approval.decision",
        "approval.approved",
    ]
    assert verify(stack.svc.ledger).ok
