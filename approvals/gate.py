"""The approval gate, used by every runbook between *plan* and *apply*.

1. Open (or re-open) the approval record for this run and plan; ask every approver in Slack
   (plan summary, warnings, plan hash, ticket link, Approve/Deny) and comment on the ticket.
2. Pause the flow run (``approvals.pause.pause_run(ApprovalWakeup)``: Prefect's pause, made
   safe against a lost answer and a resume that comes too early), under a key used by no other
   pause of the run. A resume is only a wake-up: decisions live in the ledger (two concurrent
   resumes both "succeed" in Prefect), so on every wake-up the flow re-reads them and tallies
   them itself with the policy — a decision counts only from an allowed approver who is neither
   requester nor subject and who named the current plan hash, and only if its audit event
   authenticates (ledger/approvals.py: a decision row written into the database directly is
   ignored, and said so in the log and the audit log). Invalid decisions are recorded and
   ignored. An *approved* state the run finds is believed only if the authenticated decisions
   reach the quorum. The request, each decision and the outcome (with the approved plan hash)
   are audit events written in the same transaction as the change they record.
3. Until quorum, a deny, or the watchdog's ``escalate`` (the fallback group is asked for the
   seats that are not separation-of-duty; those seats' own candidates are asked again) and
   ``expired`` (auto-deny) wake-ups: the pause's own timeout cannot be caught (PREFECT_NOTES.md),
   so it is set well beyond the policy's and never fires in practice.

An emergency (no pre-approval) passes at once and opens a post-hoc review for security.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from pydantic import BaseModel

from approvals.pause import pause_run
from approvals.people import as_the_idp_knows
from approvals.services import Services
from connectors.capabilities import MessageRef
from connectors.errors import ConnectorError
from domain import blocks
from domain.policy import (
    UNAUTHENTICATED,
    ApprovalContext,
    Requirement,
    Tally,
    requirement,
    tally,
)
from domain.records import ApprovalRequest, ApprovalState, AuditEvent
from ledger.approvals import (
    create_approval,
    get_approval,
    mark_decisions,
    update_approval,
)
from ledger.audit import append

log = logging.getLogger("handover.approvals")

PAUSE_MARGIN_S = 6 * 3600  # beyond the policy timeout: the watchdog always acts first

# Called when a flow starts waiting (the CLI prints "approval <id> waiting for …").
_on_waiting: Callable[[ApprovalRequest, list[str]], None] | None = None


def set_waiting_hook(fn: Callable[[ApprovalRequest, list[str]], None] | None) -> None:
    global _on_waiting
    _on_waiting = fn


class ApprovalWakeup(BaseModel):
    """What a resume carries: only why the flow was woken (decisions are in the ledger)."""

    kind: Literal["decision", "escalate", "expired", "cancel"] = "decision"


@dataclass(frozen=True)
class PlanSummary:
    """What approvers are shown of a plan: each step in words (``lines``: who gets or loses
    what, where), its warnings, the step counts, and the org it runs in."""

    counts_by_kind: Mapping[str, int]
    warnings: Sequence[str] = ()
    lines: Sequence[str] = ()
    org: str = ""


@dataclass
class GateResult:
    approval: ApprovalRequest
    state: ApprovalState
    approved_by: list[str]
    reason: str = ""
    # An emergency's post-hoc review notice, when the runbook asked to send it itself after
    # its urgent steps (``gate(..., defer_notice=True)``): call it once they are done.
    notice: Callable[[], None] | None = None

    @property
    def approved(self) -> bool:
        return self.state is ApprovalState.APPROVED

    def send_notice(self) -> None:
        """Send the deferred post-hoc review notice (nothing when there is none)."""
        if self.notice is not None:
            self.notice()


def approval_id_for(flow_run_id: str, runbook: str, subject: str) -> str:
    """Stable per run and subject: a re-run (or a re-plan) finds its approval again."""
    digest = hashlib.sha256(f"{flow_run_id}|{runbook}|{subject}".encode()).hexdigest()
    return f"apr-{digest[:12]}"


def _ticket_url(svc: Services, ticket: str) -> str | None:
    return f"{svc.ticket_base_url}{ticket}" if ticket and svc.ticket_base_url else None


def console_url(svc: Services, approval_id: str) -> str:
    """The approval's page in the web console (intake/console/approvals.py), where the intake
    is served (``HANDOVER_INTAKE_URL``)."""
    return f"{svc.settings.intake_url.rstrip('/')}/console/approvals/{approval_id}"


def _event(action: str, appr: ApprovalRequest, **kw: Any) -> AuditEvent:
    """The audit event of ``action`` on ``appr`` (its plan hash included)."""
    return AuditEvent(
        action=action,
        subject=appr.subject,
        target=appr.id,
        flow_run_id=appr.flow_run_id,
        ticket=appr.ticket,
        plan_hash=appr.plan_hash,
        **kw,
    )


def _audit(svc: Services, action: str, appr: ApprovalRequest, **kw: Any) -> None:
    append(svc.ledger, _event(action, appr, **kw), now=svc.clock())


def _update(
    svc: Services, appr: ApprovalRequest, action: str, audit: dict[str, Any], **changes: Any
) -> ApprovalRequest:
    """Change the approval and record ``action`` about it in one transaction (the event names
    the approval as changed: e.g. the new plan hash)."""
    event = _event(action, appr.model_copy(update=changes), **audit)
    return update_approval(svc.ledger, appr.id, event=event, now=svc.clock(), **changes)


def _ask(
    svc: Services, appr: ApprovalRequest, people: Sequence[str], summary: PlanSummary
) -> list[dict[str, str]]:
    """DM each person the request; a person already asked (same plan) is not asked twice."""
    asked = {(r["email"], r.get("plan_hash")) for r in appr.slack_refs}
    refs = list(appr.slack_refs)
    if svc.messenger is None:
        return refs
    body = blocks.approval_request_blocks(
        approval_id=appr.id,
        runbook=appr.runbook,
        subject=appr.subject,
        plan_hash=appr.plan_hash,
        counts_by_kind=summary.counts_by_kind,
        warnings=list(summary.warnings),
        ticket_url=_ticket_url(svc, appr.ticket),
        lines=list(summary.lines),
        org=summary.org,
        console_url=console_url(svc, appr.id),
    )
    text = f"Approval needed: {appr.runbook} {appr.subject} (plan {appr.plan_hash[:12]})"
    for person in people:
        if (person, appr.plan_hash) in asked:
            continue
        try:
            ref = svc.messenger.dm(person, text, body)
        except ConnectorError as exc:
            # An approver without Slack can still decide with `handover approve`.
            _audit(
                svc,
                "approval.notify_failed",
                appr,
                on_behalf_of=person,
                effect=f"failed({exc.detail[:200]})",
            )
            continue
        refs.append(
            {"email": person, "channel": ref.channel, "ts": ref.ts, "plan_hash": appr.plan_hash}
        )
    return refs


def _new_approval(
    svc: Services,
    ctx: ApprovalContext,
    req: Requirement,
    *,
    aid: str,
    plan_hash: str,
    flow_run_id: str,
    ticket: str,
    action: str,
    audit: dict[str, Any],
    **fields: Any,
) -> ApprovalRequest:
    """Store the new approval and its ``action`` audit event (``audit``: the event's other
    fields) in one transaction."""
    now = svc.clock()
    data: dict[str, Any] = {
        "id": aid,
        "flow_run_id": flow_run_id,
        "runbook": ctx.runbook,
        "subject": ctx.subject,
        "requester": ctx.requester,
        "plan_hash": plan_hash,
        "rule": ",".join(req.rules),
        "required": [list(s.candidates) for s in req.seats],
        "quorum": req.quorum,
        "created_at": now,
        "expires_at": now + req.timeout,
        "ticket": ticket,
        **fields,
    }
    req_ = ApprovalRequest(**data)
    return create_approval(svc.ledger, req_, event=_event(action, req_, **audit))


def _shown(summary: PlanSummary) -> dict[str, Any]:
    """What the approval keeps of the plan it asks about: what every channel shows."""
    return {
        "plan_lines": list(summary.lines),
        "plan_warnings": list(summary.warnings),
        "org": summary.org,
    }


def open_approval(
    svc: Services,
    ctx: ApprovalContext,
    *,
    plan_hash: str,
    summary: PlanSummary,
    flow_run_id: str,
    ticket: str = "",
    run_key: str | None = None,
) -> tuple[ApprovalRequest, Requirement]:
    """Create the approval (or find it again on a re-run) and ask the approvers.

    ``run_key`` (default: the flow run) names what the approval belongs to: the runbooks pass
    their case, so a run resumed after its worker died finds the same approval — the decisions
    given meanwhile count, and nobody is asked twice.
    """
    req = requirement(svc.policy, ctx)
    aid = approval_id_for(run_key or flow_run_id, ctx.runbook, ctx.subject)
    now = svc.clock()
    try:
        appr = get_approval(svc.ledger, aid)
        if appr.plan_hash != plan_hash and appr.state in (
            ApprovalState.PENDING,
            ApprovalState.APPROVED,  # by a run that died before applying
        ):
            # The world changed before apply: an approval is for one plan, so the new one must
            # be approved afresh; decisions naming the old hash stay recorded and are ignored
            # by the tally.
            appr = _update(
                svc,
                appr,
                "approval.replanned",
                {},
                plan_hash=plan_hash,
                state=ApprovalState.PENDING,
                created_at=now,
                expires_at=now + req.timeout,
                escalated=False,
                **_shown(summary),
            )
        if flow_run_id and appr.flow_run_id != flow_run_id and appr.state is ApprovalState.PENDING:
            # A resumed run: clicks must wake this run, not the dead one.
            appr = update_approval(svc.ledger, aid, flow_run_id=flow_run_id)
    except KeyError:
        appr = _new_approval(
            svc,
            ctx,
            req,
            aid=aid,
            plan_hash=plan_hash,
            flow_run_id=flow_run_id,
            ticket=ticket,
            action="approval.requested",
            audit={
                "on_behalf_of": ctx.requester,
                "after": {
                    "approvers": req.approvers(),
                    "quorum": req.quorum,
                    "rules": list(req.rules),
                    "plan": [*summary.lines],
                },
            },
            **_shown(summary),
        )
        if ticket and svc.tickets is not None:
            _comment(
                svc,
                ticket,
                f"Approval {aid} requested for plan {plan_hash[:12]} "
                f"({', '.join(req.rules)}): waiting for {', '.join(req.approvers())}.\n"
                + blocks.plan_text(appr.plan_lines, appr.plan_warnings, org=appr.org),
            )
    if appr.state is ApprovalState.PENDING:
        refs = _ask(svc, appr, req.approvers(escalated=appr.escalated), summary)
        if refs != appr.slack_refs:
            appr = update_approval(svc.ledger, aid, slack_refs=refs)
    return appr, req


def _comment(svc: Services, ticket: str, text: str) -> None:
    # The ledger has the record; a ticket comment is a courtesy copy.
    if svc.tickets is None:
        return
    with contextlib.suppress(ConnectorError):
        svc.tickets.comment(ticket, text)


def _finish(
    svc: Services, appr: ApprovalRequest, state: ApprovalState, approvers: list[str], reason: str
) -> GateResult:
    decided_by = (
        ", ".join(approvers)
        if state is ApprovalState.APPROVED
        else next(
            (d.approver for d in appr.decisions if d.counted and d.decision == "deny"), "policy"
        )
    )
    # The state and its audit event (for an approval: the approved plan hash and who filled
    # the seats) in one transaction.
    appr = _update(
        svc,
        appr,
        f"approval.{state.value}",
        {"on_behalf_of": decided_by, "effect": reason or state.value},
        state=state,
    )
    label = {ApprovalState.EXPIRED: "timed_out"}.get(state, state.value)
    if svc.messenger is not None:
        for r in appr.slack_refs:
            body = blocks.decision_blocks(
                approval_id=appr.id,
                runbook=appr.runbook,
                subject=appr.subject,
                plan_hash=appr.plan_hash,
                decision=label,
                decided_by=decided_by,
                decided_at=svc.clock(),
                ticket_url=_ticket_url(svc, appr.ticket),
            )
            # The decision stands even if a message cannot be updated: a click on a stale
            # button is refused by the approval's state.
            with contextlib.suppress(ConnectorError):
                svc.messenger.update(
                    MessageRef(r["channel"], r["ts"]), f"{label} by {decided_by}", body
                )
    if appr.ticket and svc.tickets is not None:
        _comment(
            svc,
            appr.ticket,
            f"Approval {appr.id}: {label} by {decided_by}"
            + (f" ({reason})" if reason else "")
            + ".",
        )
    return GateResult(approval=appr, state=state, approved_by=approvers, reason=reason)


def _tally(svc: Services, appr: ApprovalRequest, req: Requirement) -> Tally:
    return tally(
        req,
        appr.decisions,
        plan_hash=appr.plan_hash,
        now=svc.clock(),
        created_at=appr.created_at,
        escalated=appr.escalated,
    )


def _decided_outside(svc: Services, appr: ApprovalRequest, req: Requirement) -> GateResult | None:
    """The result of an approval some other run (or the watchdog, or a cancel) closed.

    A state that stops the run is taken as it is; an *approved* one only if its authenticated
    decisions reach the quorum now: the state is a column anyone with database access can set.
    One that does not is audited, set back to pending, and ``None`` is returned (wait on).
    """
    if appr.state is not ApprovalState.APPROVED:
        return GateResult(appr, appr.state, [], "decided outside this run")
    t = _tally(svc, appr, req)
    if t.state is ApprovalState.APPROVED:
        return GateResult(appr, appr.state, list(t.filled.values()), "decided outside this run")
    log.warning(
        "approvals: %s is marked approved without an authenticated quorum: ignored", appr.id
    )
    _update(
        svc,
        appr,
        "approval.state_ignored",
        {"effect": "approved state without an authenticated quorum: ignored"},
        state=ApprovalState.PENDING,
    )
    return None


def _report_unauthenticated(svc: Services, appr: ApprovalRequest, t: Tally) -> None:
    """Say (log and audit log), once each, which decisions the tally ignored for want of an
    authenticated audit record (a row written into the database directly)."""
    for d, (_, why) in zip(appr.decisions, t.verdicts, strict=True):
        if why == UNAUTHENTICATED and d.reason != UNAUTHENTICATED:
            log.warning(
                "approvals: %s: a %s by %s has no authenticated audit record: ignored",
                appr.id,
                d.decision,
                d.approver,
            )
            _audit(
                svc,
                "approval.decision_ignored",
                appr,
                on_behalf_of=d.approver,
                effect=UNAUTHENTICATED,
                after={"decision": d.decision, "plan_hash": d.plan_hash, "at": d.at.isoformat()},
            )


def _untallied(svc: Services, approval_id: str) -> bool:
    """Whether the approval holds a decision the flow has not tallied yet (neither counted nor
    refused), or was closed meanwhile: what a paused gate wakes up for."""
    appr = get_approval(svc.ledger, approval_id)
    if appr.state is not ApprovalState.PENDING:
        return True
    return any(not d.counted and not d.reason for d in appr.decisions)


def await_decision(
    svc: Services,
    appr: ApprovalRequest,
    req: Requirement,
    *,
    summary: PlanSummary,
    poll_interval: int = 1,
    pause: Callable[..., Any] | None = None,
) -> GateResult:
    """Pause until the ledger's decisions reach quorum, a valid deny, or the watchdog acts."""
    pause = pause or pause_run
    n = 0
    while True:
        appr = get_approval(svc.ledger, appr.id)
        if appr.state is not ApprovalState.PENDING:  # decided elsewhere (e.g. cancelled), or
            # by an earlier run of the same case that died before applying
            outside = _decided_outside(svc, appr, req)
            if outside is not None:
                return outside
            continue
        t = _tally(svc, appr, req)
        _report_unauthenticated(svc, appr, t)
        mark_decisions(svc.ledger, appr.id, dict(enumerate(t.verdicts)))
        if t.state is ApprovalState.APPROVED:
            return _finish(svc, appr, t.state, list(t.filled.values()), "quorum reached")
        if t.state is ApprovalState.DENIED:
            return _finish(svc, appr, t.state, [], "denied")
        if t.state is ApprovalState.EXPIRED:
            return _finish(svc, appr, t.state, [], "no quorum before the timeout: auto-deny")
        n += 1
        if n == 1 and _on_waiting is not None:
            _on_waiting(appr, t.waiting_for)
        remaining = max(1.0, (appr.expires_at - svc.clock()).total_seconds())
        wake = pause(
            wait_for_input=ApprovalWakeup,
            timeout=int(remaining) + PAUSE_MARGIN_S,
            poll_interval=poll_interval,
            # Never a key an earlier pause of this run used: the gate may be entered again in
            # the same run (n starts at 1 each time), and the server refuses a used key while
            # the client then returns that old pause's input as if it were a new wake-up.
            key=f"{appr.id}-{appr.plan_hash[:8]}-{n}-{uuid.uuid4().hex[:12]}",
            # A decision recorded between the tally above and this pause finds the run not
            # paused: its wake-up is lost. Seen here at the next poll, not at the watchdog's
            # next sweep (half a minute later, or never where no watchdog runs).
            recheck=partial(_untallied, svc, appr.id),
            recheck_kind="decision",
        )
        kind = getattr(wake, "kind", "decision")
        if kind == "expired":
            return _finish(
                svc,
                get_approval(svc.ledger, appr.id),
                ApprovalState.EXPIRED,
                [],
                "no quorum before the timeout: auto-deny",
            )
        if kind == "cancel":
            return _finish(svc, appr, ApprovalState.CANCELLED, [], "cancelled")
        if kind == "escalate" and not appr.escalated:
            _escalate(svc, appr, req, summary)


def _escalate(svc: Services, appr: ApprovalRequest, req: Requirement, summary: PlanSummary) -> None:
    """The request waited ``escalate_after``: the fallback group is asked, when some seat is
    not separation-of-duty; the separation-of-duty seats' own candidates who have not answered
    are asked again (a reminder) — never replaced."""
    decided = {d.approver for d in appr.decisions if d.plan_hash == appr.plan_hash}
    reasked = [c for c in req.reasked_on_escalation if c not in decided]
    appr = _update(
        svc,
        appr,
        "approval.escalated",
        {
            "after": {
                "fallback": list(req.fallback) if req.fallback_may_fill else [],
                "asked_again": reasked,
            }
        },
        escalated=True,
    )
    refs = _ask(svc, appr, req.approvers(escalated=True), summary)
    if reasked:  # their first message may be buried: a fresh one, for the same plan
        refs += _ask(svc, appr.model_copy(update={"slack_refs": []}), reasked, summary)
    update_approval(svc.ledger, appr.id, slack_refs=refs)


def gate(
    svc: Services,
    ctx: ApprovalContext,
    *,
    plan_hash: str,
    summary: PlanSummary,
    flow_run_id: str | None = None,
    ticket: str = "",
    poll_interval: int = 1,
    pause: Callable[..., Any] | None = None,
    run_key: str | None = None,
    defer_notice: bool = False,
) -> GateResult:
    """Approve this plan per the policy, or say why not (see the module docstring).

    ``run_key``: what the approval belongs to across runs (the runbook's case); default the
    flow run (see :func:`open_approval`). ``defer_notice``: an emergency's Slack notice to the
    post-hoc reviewers is not sent here but returned (``GateResult.send_notice``), so the
    lockout never waits behind Slack's rate limit or a slow Slack.
    """
    if flow_run_id is None:
        from prefect.runtime import flow_run

        flow_run_id = str(flow_run.id or "")
    # The requester as the IdP knows them, their aliases and the subject's never approvers.
    ctx = as_the_idp_knows(svc, ctx)
    req = requirement(svc.policy, ctx)
    if not req.pre_approval:
        return _emergency(
            svc,
            ctx,
            req,
            plan_hash=plan_hash,
            summary=summary,
            flow_run_id=flow_run_id,
            ticket=ticket,
            run_key=run_key,
            defer_notice=defer_notice,
        )
    appr, req = open_approval(
        svc,
        ctx,
        plan_hash=plan_hash,
        summary=summary,
        flow_run_id=flow_run_id,
        ticket=ticket,
        run_key=run_key,
    )
    return await_decision(svc, appr, req, summary=summary, poll_interval=poll_interval, pause=pause)


@dataclass(frozen=True)
class Ask:
    """One approval a run asks for among several (:func:`gate_all`)."""

    ctx: ApprovalContext
    plan_hash: str
    summary: PlanSummary
    run_key: str | None = None


def gate_all(
    svc: Services,
    asks: Sequence[Ask],
    *,
    flow_run_id: str,
    opened: Callable[[list[ApprovalRequest]], None] | None = None,
    poll_interval: int = 1,
) -> list[GateResult]:
    """Several approvals of one run (an access review's items, one approval each), each as
    :func:`gate` would: every one is opened and its approvers asked before the run waits for
    any, so they are decided in any order and together (the console's bulk decisions); then
    each is awaited in turn: a decision given while the run waited for another is in the
    ledger and counts when its turn comes. ``opened``: called with the opened approvals before
    the first wait (the review records which approval decides which item).

    The approvals of one call open together and so expire together: the watchdog's
    ``expired`` wake-up of one, while the run waits for another, finds that other expired too.
    """
    waiting: list[GateResult | tuple[ApprovalRequest, Requirement]] = []
    for a in asks:
        ctx = as_the_idp_knows(svc, a.ctx)
        req = requirement(svc.policy, ctx)
        if not req.pre_approval:
            waiting.append(
                _emergency(
                    svc,
                    ctx,
                    req,
                    plan_hash=a.plan_hash,
                    summary=a.summary,
                    flow_run_id=flow_run_id,
                    ticket="",
                    run_key=a.run_key,
                )
            )
            continue
        waiting.append(
            open_approval(
                svc,
                ctx,
                plan_hash=a.plan_hash,
                summary=a.summary,
                flow_run_id=flow_run_id,
                run_key=a.run_key,
            )
        )
    if opened is not None:
        opened([w.approval if isinstance(w, GateResult) else w[0] for w in waiting])
    return [
        w
        if isinstance(w, GateResult)
        else await_decision(svc, w[0], w[1], summary=a.summary, poll_interval=poll_interval)
        for w, a in zip(waiting, asks, strict=True)
    ]


def _emergency(
    svc: Services,
    ctx: ApprovalContext,
    req: Requirement,
    *,
    plan_hash: str,
    summary: PlanSummary,
    flow_run_id: str,
    ticket: str,
    run_key: str | None = None,
    defer_notice: bool = False,
) -> GateResult:
    """No pre-approval; a post-hoc review for security is opened at once (once per case)."""
    aid = approval_id_for(run_key or flow_run_id, ctx.runbook, ctx.subject)
    try:
        appr = get_approval(svc.ledger, aid)
    except KeyError:
        # Recorded as approved (no pre-approval), naming who must review it afterwards.
        appr = _new_approval(
            svc,
            ctx,
            req,
            aid=aid,
            plan_hash=plan_hash,
            flow_run_id=flow_run_id,
            ticket=ticket,
            required=[list(req.post_hoc_review)],
            quorum=0,
            state=ApprovalState.APPROVED,
            expires_at=svc.clock(),
            action="approval.post_hoc_review_opened",
            audit={
                "on_behalf_of": ctx.requester,
                "effect": "emergency: no pre-approval",
                "after": {"reviewers": list(req.post_hoc_review)},
            },
        )
    notice: Callable[[], None] | None = None
    if not appr.slack_refs:  # not announced yet (or a run died before it could announce it)
        notice = _post_hoc_notice(svc, ctx, req, plan_hash=plan_hash, aid=aid)
        if not defer_notice:
            notice()
            notice = None
    return GateResult(
        appr, ApprovalState.APPROVED, [], "emergency: post-hoc review opened", notice=notice
    )


def _post_hoc_notice(
    svc: Services, ctx: ApprovalContext, req: Requirement, *, plan_hash: str, aid: str
) -> Callable[[], None]:
    def send() -> None:
        if svc.messenger is None:
            return
        text = (
            f":rotating_light: Emergency {ctx.runbook} of {ctx.subject} by "
            f"{ctx.requester} ran without pre-approval: please review "
            f"(plan {plan_hash[:12]}, approval {aid})."
        )
        refs = []
        for person in req.post_hoc_review:
            with contextlib.suppress(ConnectorError):
                ref = svc.messenger.dm(person, text)
                refs.append({"email": person, "channel": ref.channel, "ts": ref.ts})
        if refs:  # announced: a re-run of the case does not announce it again
            update_approval(svc.ledger, aid, slack_refs=refs)

    return send
