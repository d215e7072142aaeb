"""Turning a person's decision (a Slack click, or ``handover approve``) into a recorded decision
and a wake-up of the paused flow run.

The handler does not decide whether a decision counts — the flow does, with the policy — it
records what was said, by whom (and how that person was authenticated), about which plan, and
wakes the flow. Every channel names the plan hash its person was shown: a decision for any other
hash than the approval's current one is refused (the plan changed since: look again). A repeated
click is stored once; a decision on a closed approval is refused; a flow that is not paused
(already resumed, between pauses, paused without its input schema yet, or gone) is handled
without error.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from uuid import UUID

from approvals.people import recorded_as
from approvals.services import Services
from connectors.capabilities import MessageRef
from connectors.errors import ConnectorError
from domain import blocks
from domain.identity import Verified
from domain.records import ApprovalRequest, ApprovalState, Decision
from ledger.approvals import add_decision, get_approval

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
    plan_hash: str,
    verified: Verified,
    channel: str = "slack",
    comment: str = "",
) -> DecisionOutcome:
    """Store a decision (once per person, answer and plan) in the ledger and the audit log.

    ``plan_hash``: the hash of the plan the person was shown (the whole hash, or the first 12
    characters every channel shows); ``verified``: how the person was authenticated.

    Raises:
        DecisionRefused: unknown approval, a closed approval, a decision other than
            ``approve``/``deny``, or a plan hash that is not the approval's current one.
    """
    if decision not in ("approve", "deny"):
        raise DecisionRefused(f"decision must be approve or deny, not {decision!r}")
    try:
        appr = get_approval(svc.ledger, approval_id)
    except KeyError:
        raise DecisionRefused(f"no approval {approval_id}") from None
    if appr.state is not ApprovalState.PENDING:
        raise DecisionRefused(f"approval {approval_id} is already {appr.state.value}")
    shown = plan_hash.strip().lower()
    if len(shown) < 12 or not appr.plan_hash.startswith(shown):
        raise DecisionRefused(
            f"approval {approval_id} is for plan {appr.plan_hash[:12]} now, not the plan "
            f"{shown[:12] or '(none)'} you were shown: the plan changed, look at it again"
        )
    d = Decision(
        approver=recorded_as(svc, approver),
        decision=decision,
        at=svc.clock(),
        plan_hash=appr.plan_hash,
        comment=comment[:2000],
        channel=channel,
        auth=verified.method,
    )
    added = add_decision(
        svc.ledger, approval_id, d, details={"channel": channel, **verified.audit()}
    )
    msg = "recorded" if added else "already recorded (counted once)"
    return DecisionOutcome(approval_id, added, msg, appr)


@dataclass(frozen=True)
class Wake:
    """What a resume of a flow run came to.

    ``result``: ``resumed``; ``not paused`` (running, between two pauses, or paused without its
    input schema yet: it reads the ledger on its next wake-up anyway); ``no flow run`` (none
    named, or none on the server); ``refused`` (the server will not resume it, e.g. its pause
    timed out). ``why`` says more, for a log line.
    """

    result: str
    why: str = ""


def resume_run(flow_run_id: str, kind: str = "decision") -> Wake:
    """Resume the flow run ``flow_run_id`` with ``{"kind": kind}`` (an ``ApprovalWakeup``).

    Never raises for a run that cannot be resumed; only a Prefect API that cannot be reached
    (after the client's own retries) raises.
    """
    if not flow_run_id:
        return Wake("no flow run")
    from prefect.exceptions import (
        FlowPauseTimeout,
        NotPausedError,
        ObjectNotFound,
        PrefectHTTPStatusError,
    )
    from prefect.flow_runs import resume_flow_run

    try:
        run_id = UUID(flow_run_id)
    except ValueError:
        return Wake("no flow run", f"{flow_run_id!r} is not a flow run id")
    try:
        resume_flow_run(run_id, run_input={"kind": kind})
    except ObjectNotFound:
        return Wake("no flow run", "no such flow run on the Prefect server")
    except NotPausedError:
        return Wake("not paused")
    except FlowPauseTimeout:
        return Wake("refused", "its pause timed out: it can no longer be resumed")
    except PrefectHTTPStatusError as exc:
        if exc.response.status_code != 409:
            raise
        # Two wake-ups at once (a click and the run's own recheck, two clicks): both found it
        # paused, the other stored its input first and resumed it; the server refuses this
        # input's duplicate key ("Data integrity conflict"), as PostgreSQL does under load.
        return Wake("not paused", "resumed by another wake-up at the same moment")
    except RuntimeError as exc:  # the server's refusal ("Cannot resume this run: …")
        if "input schema not found" in str(exc).lower():
            # Prefect's own pause stores the schema only after pausing (approvals/pause.py
            # stores it first): the run is about to wait, and will be woken again.
            return Wake("not paused", "paused, but its input schema is not stored yet")
        return Wake("refused", str(exc))
    return Wake("resumed")


def run_state(flow_run_id: str) -> str:
    """The Prefect state of the flow run ``flow_run_id`` (``Paused``, ``Running``,
    ``Completed``…), or ``""`` when there is none or the server cannot say now: what a page
    shows, never what a decision rests on."""
    if not flow_run_id:
        return ""
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(UUID(flow_run_id)).state
    except Exception as exc:  # unknown id, unreachable server: the page says "unknown"
        log.info("approvals: state of flow run %s not read: %s", flow_run_id, exc)
        return ""
    return (state.name or "") if state is not None else ""


def wake_flow(appr: ApprovalRequest, kind: str = "decision") -> str:
    """Resume the approval's paused flow run so it re-reads the ledger (after a decision).

    Returns what happened: ``resumed``, ``not paused``, ``no flow run`` or ``refused`` (a
    refusal is logged; the others are ordinary: a flow not paused reads the ledger on its next
    wake-up, and the watchdog wakes one that missed this one).
    """
    wake = resume_run(appr.flow_run_id, kind)
    if wake.result == "refused":
        log.warning("approvals: resume of %s refused: %s", appr.flow_run_id, wake.why)
    return wake.result


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
    plan_hash: str,
    verified: Verified,
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
        verified=verified,
        channel=channel,
        comment=comment,
    )
    acknowledge(svc, outcome, approver=approver, decision=decision, ref=ref)
    if outcome.recorded and outcome.approval is not None:
        outcome.message += f"; flow {wake_flow(outcome.approval)}"
    return outcome
