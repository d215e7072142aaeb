"""A paused gate sees a decision whose wake-up was lost (it arrived between the flow's tally and
its pause: "not paused"): it checks the ledger while paused and goes on by itself, without
waiting for the watchdog — what lets the console's bulk decisions land in any order."""

from __future__ import annotations

import pytest

from approvals.handler import record_decision
from domain.identity import OIDC_CODE, Verified
from tests.approvals.stack import Stack

pytestmark = pytest.mark.slow


def test_a_decision_recorded_without_a_wake_up_is_seen_by_the_paused_gate(stack: Stack) -> None:
    run = stack.start(
        runbook="offboard",
        subject="dana.sole@acme.com",
        requester="hr.bot@acme.com",
        reason="termination",
        subject_manager="sofia.lead@acme.com",
    )
    appr = stack.paused("dana.sole@acme.com")
    # Recorded as every channel records one, and no wake-up sent (as when it was lost).
    out = record_decision(
        stack.svc,
        appr.id,
        approver="sofia.lead@acme.com",
        decision="approve",
        plan_hash=appr.plan_hash,
        verified=Verified(OIDC_CODE, "sub-sofia", "https://idp.example"),
        channel="console",
    )
    assert out.recorded
    assert run.wait(timeout=20) == "approved"  # no watchdog runs here
