"""The approval watchdog: escalation and auto-deny, done from outside the paused flow.

A pause's own timeout fails the flow run and cannot be caught (PREFECT_NOTES.md), so the
intake (and ``handover approvals --sweep``) calls :func:`sweep` regularly: a pending approval
past ``escalate_after`` wakes its flow with ``escalate`` (the fallback group is asked), one past
its timeout with ``expired`` (the flow auto-denies and ends cleanly), and one holding a
decision its flow has not tallied yet with ``decision``: a click that lands between the flow's
tally and its pause finds the run not yet paused, and that wake-up would otherwise be lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from approvals.handler import wake_flow
from approvals.services import Services
from domain.records import ApprovalState
from ledger.approvals import list_approvals


@dataclass
class SweepAction:
    approval_id: str
    kind: str  # escalate | expired | decision
    result: str  # resumed | not paused | no flow run


def sweep(svc: Services, *, now: datetime | None = None) -> list[SweepAction]:
    """Wake every pending approval that is due for escalation or expiry."""
    now = now or svc.clock()
    escalate_after = timedelta(hours=svc.policy.escalate_after_hours)
    out = []
    for appr in list_approvals(svc.ledger, state=ApprovalState.PENDING):
        if now >= appr.expires_at:
            out.append(SweepAction(appr.id, "expired", wake_flow(appr, "expired")))
        elif not appr.escalated and now >= appr.created_at + escalate_after:
            out.append(SweepAction(appr.id, "escalate", wake_flow(appr, "escalate")))
        elif any(not d.counted and not d.reason for d in appr.decisions):
            # Tallied decisions are marked (counted, or a reason why not): this one is unseen.
            result = wake_flow(appr, "decision")
            if result == "resumed":
                out.append(SweepAction(appr.id, "decision", result))
    return out
