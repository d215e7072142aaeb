"""Turning a person's decision (a Slack click, or ``handover approve``) into a recorded decision
and a wake-up of the paused flow run.

The handler does not decide whether a decision counts — the flow does, with the policy — it
records what was said, by whom, about which plan, and wakes the flow. A repeated click is stored
once; a decision on a closed approval is refused; a flow that is not paused (already resumed,
between pauses, or gone) is handled without error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from uuid import UUID

from approvals.services import Services
from connectors.capabilities import MessageRef
from connectors.errors import ConnectorError
from domain import blocks
from domain.records import ApprovalRequest, ApprovalState, AuditEvent, Decision
from ledger.approvals import add_decision, get_approval
from ledger.audit import append

log = logging.getLogger("handover.approvals")


@dataclass
class DecisionOutcome:
    """What happened to one decision."""

    approval_id: str
    recorded: bool
    message: str
    approval: ApprovalRequest | None = None


class DecisionRefused(ValueError):
    """The decision cannot be taken (unknown approval, already closed, bad input)."""


def record_decision(
    svc: Services,
    approval_id: str,
    *,
    approver: str,
    decision: str,
    plan_hash: str | None = None,
    channel: str = "slack",
    comment: str = "",
) -> DecisionOutcome:
    """Store a decision (once per person, answer and plan) in the ledger and the audit log.

    Raises:
        DecisionRefused: unknown approval, a closed approval, or a decision other than
            ``approve``/``deny``.
    """
    if decision not in ("approve", "deny"):
        raise DecisionRefused(f"decision must be approve or deny, not {decision!r}")
    try:
        appr = get_approval(svc.ledger, approval_id)
    except KeyError:
        raise DecisionRefused(f"no approval {approval_id}") from None
    if appr.state is not ApprovalState.PENDING:
        raise DecisionRefused(f"approval {approval_id} is already {appr.state.value}")
    d = Decision(
        approver=approver.strip().lower(),
        decision=decision,
        at=svc.clock(),
        plan_hash=plan_hash or appr.plan_hash,
        comment=comment[:2000],
        channel=channel,
    )
    added = add_decision(svc.ledger, approval_id, d)
    if added:
        append(
            svc.ledger,
            AuditEvent(
                action="approval.decision",
                subject=appr.subject,
                target=approval_id,
                on_behalf_of=d.approver,
                flow_run_id=appr.flow_run_id,
                ticket=appr.ticket,
                plan_hash=d.plan_hash,
                effect=decision,
                after={"channel": channel},
            ),
            now=d.at,
        )
    msg = "recorded" if added else "already recorded (counted once)"
    return DecisionOutcome(approval_id, added, msg, appr)


def wake_flow(appr: ApprovalRequest, kind: str = "decision") -> str:
    """Resume the approval's paused flow run so it re-reads the ledger.

    Returns what happened: ``resumed``, ``not paused`` or ``no flow run``.
    """
    if not appr.flow_run_id:
        return "no flow run"
    from prefect.exceptions import FlowPauseTimeout, NotPausedError, ObjectNotFound
    from prefect.flow_runs import resume_flow_run

    try:
        resume_flow_run(UUID(appr.flow_run_id), run_input={"kind": kind})
        return "resumed"
    except (NotPausedError, FlowPauseTimeout, ObjectNotFound, ValueError):
        # Already resumed by another click, between two pauses, or gone: the flow reads the
        # ledger on its next wake-up anyway, so nothing is lost.
        return "not paused"
    except RuntimeError as exc:
        log.warning("approvals: resume of %s refused: %s", appr.flow_run_id, exc)
        return "not paused"


def message_ref(channel: str | None, ts: str | None) -> MessageRef | None:
    """The Slack message a click came from, when the payload says."""
    return MessageRef(channel, ts) if channel and ts else None


def acknowledge(
    svc: Services, outcome: DecisionOutcome, *, approver: str, decision: str, ref: MessageRef | None
) -> None:
    """Update the clicked message to say who decided (the flow updates all of them when the
    approval closes)."""
    appr = outcome.approval
    if svc.messenger is None or ref is None or appr is None:
        return
    label = "approval recorded" if decision == "approve" else "denial recorded"
    body = blocks.decision_blocks(
        approval_id=appr.id,
        runbook=appr.runbook,
        subject=appr.subject,
        plan_hash=appr.plan_hash,
        decision=label,
        decided_by=approver,
        decided_at=svc.clock(),
    )
    try:
        svc.messenger.update(ref, f"{label} by {approver}", body)
    except ConnectorError as exc:
        log.warning("approvals: could not update the message of %s: %s", appr.id, exc)


def decide(
    svc: Services,
    approval_id: str,
    *,
    approver: str,
    decision: str,
    plan_hash: str | None = None,
    channel: str = "cli",
    comment: str = "",
    ref: MessageRef | None = None,
) -> DecisionOutcome:
    """Record, acknowledge and wake: the whole path of one decision."""
    outcome = record_decision(
        svc,
        approval_id,
        approver=approver,
        decision=decision,
        plan_hash=plan_hash,
        channel=channel,
        comment=comment,
    )
    acknowledge(svc, outcome, approver=approver, decision=decision, ref=ref)
    if outcome.recorded and outcome.approval is not None:
        outcome.message += f"; flow {wake_flow(outcome.approval)}"
    return outcome
