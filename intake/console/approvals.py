"""The approval page, ``/console/approvals/<id>``: the request in full, and Approve / Deny.

It shows the plan itself (each step in words: who gets or loses which role in which project and
org, modules, transfers, keys rotated), its warnings (look-alikes among them), the requester and
the subject, the ticket, the policy's rules and seats (which seat each counted approval filled,
and the quorum), every decision (who, when, how they were authenticated, on which channel,
counted or why not), the approval's history from the audit log, and its state; a live part
follows the state (htmx, every 2 s) until the approval closes.

Who may see it: its requester, its subject, its seat holders, and it_admin, security and
auditor (approvals/console_roles.py ``may_see``); anyone else gets 403, an unknown id 404.

Deciding is a POST (target ``approval:<id>``) carrying the plan hash the page showed: the
decision is recorded by the same function as a Slack click (approvals/handler.py
``record_decision``: channel ``console``, the signed-in person's IdP address, authenticated by
their OIDC sign-in), which refuses a hash that is no longer the approval's (the plan changed
since the page was drawn); ``may_decide`` refuses the requester, the subject, an auditor, a
person holding no seat, and a closed approval. A refused decision records nothing. A recorded
one wakes the paused flow run after the answer (``wake_flow``), as the Slack path does; the flow
tallies the decisions itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from approvals.console_roles import may_decide, may_see
from approvals.handler import DecisionRefused, record_decision, run_state, wake_flow
from domain.identity import OIDC_CODE, OIDC_DEVICE, SANDBOX_AS, SLACK
from domain.policy import fill_seats, stored_seats
from domain.records import ApprovalRequest, ApprovalState, AuditRecord, Decision
from intake.console.base import PREFIX, Console, PageRefused, Viewer, one
from ledger.approvals import get_approval
from ledger.audit import records

log = logging.getLogger("handover.console")

# How a decision's author was authenticated, in words (domain/identity.py).
AUTH_WORDS = {
    OIDC_CODE: "signed in to the console (OIDC)",
    OIDC_DEVICE: "signed in at the terminal (OIDC device flow)",
    SLACK: "Slack click by a mapped workspace member",
    SANDBOX_AS: "self-declared (sandbox mode only)",
}
POLL = "every 2s"  # the live part's htmx trigger while the approval is open


@dataclass(frozen=True)
class SeatView:
    """One seat of the approval: its name, who may fill it, who filled it ("" while open)."""

    name: str
    candidates: tuple[str, ...]
    separation_of_duty: bool
    filled_by: str


@dataclass(frozen=True)
class DecisionView:
    """One decision as the page shows it."""

    d: Decision
    how: str  # how its author was authenticated, in words
    current: bool  # for the plan the approval is for now
    verdict: str  # counted, not tallied yet, or why it did not count
    seat: str  # the seat it filled ("" when none)


def _approval(c: Console, approval_id: str) -> ApprovalRequest:
    try:
        return get_approval(c.svc.ledger, approval_id)
    except KeyError:
        raise PageRefused(404, "No such approval", f"There is no approval {approval_id}.") from None


def _visible(c: Console, who: Viewer, approval_id: str) -> ApprovalRequest:
    """The approval ``who`` may read.

    Raises:
        PageRefused: unknown (404), or not theirs to read (403).
    """
    appr = _approval(c, approval_id)
    if not may_see(c.svc, who, appr):
        raise PageRefused(
            403,
            "Not for you",
            "This request is shown to its requester, its subject, its approvers, IT admins, "
            "security and auditors.",
        )
    return appr


def _seats(c: Console, appr: ApprovalRequest) -> list[SeatView]:
    """The approval's seats, each with the person whose counted approval fills it."""
    seats = stored_seats(c.svc.policy, appr.rule, appr.required)
    counted = [
        d.approver
        for d in appr.decisions
        if d.counted and d.decision == "approve" and d.plan_hash == appr.plan_hash
    ]
    policy = c.svc.policy
    fallback = policy.groups.get(policy.fallback_group, []) if appr.escalated else []
    filled = fill_seats(seats, counted, fallback)
    return [
        SeatView(s.name, s.candidates, s.separation_of_duty, filled.get(s.name, "")) for s in seats
    ]


def _decisions(appr: ApprovalRequest, seats: list[SeatView]) -> list[DecisionView]:
    by_person = {s.filled_by: s.name for s in seats if s.filled_by}
    out = []
    for d in appr.decisions:
        current = d.plan_hash == appr.plan_hash
        if d.counted:
            verdict = "counted"
        elif d.reason:
            verdict = f"not counted: {d.reason}"
        else:
            verdict = "not tallied yet"
        seat = by_person.get(d.approver.lower(), "") if d.decision == "approve" and current else ""
        out.append(DecisionView(d, AUTH_WORDS.get(d.auth, d.auth or "—"), current, verdict, seat))
    return out


def _history(c: Console, appr: ApprovalRequest) -> list[AuditRecord]:
    """The approval's own audit events (requested, each decision, escalated, re-planned,
    closed…), oldest first."""
    return [
        r
        for r in records(c.svc.ledger, subject=appr.subject)
        if r.target == appr.id and r.action.startswith("approval.")
    ]


def _live(c: Console, appr: ApprovalRequest) -> dict[str, Any]:
    """What the live part shows: the state, the seats filled, the flow run's state."""
    seats = _seats(c, appr)
    return {
        "a": appr,
        "seats": seats,
        "filled": sum(1 for s in seats if s.filled_by),
        "run_state": run_state(appr.flow_run_id),
        "polling": appr.state is ApprovalState.PENDING,
        "poll": POLL,
    }


def _page(
    c: Console, who: Viewer, appr: ApprovalRequest, *, status: int = 200, error: str = ""
) -> Response:
    """The approval page for ``who`` (``error``: why their decision was just refused)."""
    live = _live(c, appr)
    seats = live["seats"]
    mine = [
        d for d in appr.decisions if who.is_one_of(d.approver) and d.plan_hash == appr.plan_hash
    ]
    why_not = may_decide(c.svc, who, appr)
    base = c.svc.ticket_base_url
    return c.render(
        who,
        "approval.html",
        status=status,
        title=f"Approval {appr.id}",
        error=error,
        ticket_url=f"{base}{appr.ticket}" if appr.ticket and base else "",
        decisions=_decisions(appr, seats),
        history=_history(c, appr),
        mine=mine,
        may_decide=why_not is None and not mine,
        why_not=why_not,
        case_url=f"{PREFIX}/cases?run={appr.flow_run_id}" if appr.flow_run_id else "",
        **live,
    )


def _wake(appr: ApprovalRequest) -> None:
    """Wake the approval's paused flow run after the answer (as the Slack path does); a
    failure is only logged: the flow also rechecks the ledger while paused, and the watchdog
    wakes a run that missed its wake-up."""
    try:
        wake_flow(appr)
    except Exception as exc:  # the Prefect API is unreachable now
        log.warning("console: flow run of %s not woken: %s", appr.id, exc)


def routes(router: APIRouter, c: Console) -> None:
    @router.get("/approvals/{approval_id}")
    def approval_page(request: Request, approval_id: str) -> Response:
        """The request in full, and the decision form for whoever may decide it."""
        who = c.need(request)
        return _page(c, who, _visible(c, who, approval_id))

    @router.get("/approvals/{approval_id}/live")
    def approval_live(request: Request, approval_id: str) -> Response:
        """The live part alone (htmx polls it while the approval is open)."""
        who = c.need(request)
        appr = _visible(c, who, approval_id)
        return c.render(who, "approval_live.html", title=appr.id, **_live(c, appr))

    @router.post("/approvals/{approval_id}")
    async def approval_decide(
        request: Request, approval_id: str, background: BackgroundTasks
    ) -> Response:
        """Approve or Deny the plan the page showed; nothing is recorded when refused."""
        who, form = await c.posted(request, f"approval:{approval_id}")
        appr = await run_in_threadpool(_visible, c, who, approval_id)
        decision = one(form, "decision", 16)
        if decision not in ("approve", "deny"):
            raise PageRefused(400, "Refused", "Choose Approve or Deny.")
        if appr.state is not ApprovalState.PENDING:
            raise PageRefused(409, "Already decided", f"This request is already {appr.state}.")
        why = may_decide(c.svc, who, appr)
        if why is not None:
            raise PageRefused(403, "Not yours to decide", f"You may not decide it: {why}.")
        try:
            outcome = await run_in_threadpool(
                lambda: record_decision(
                    c.svc,
                    approval_id,
                    approver=who.email,
                    decision=decision,
                    plan_hash=one(form, "plan_hash", 64),
                    verified=who.verified,
                    channel="console",
                    comment=one(form, "comment", 2000),
                )
            )
        except DecisionRefused as exc:
            # The plan changed since the page was drawn (or the approval closed meanwhile):
            # nothing recorded; the page again, with the plan as it is now.
            error = f"Nothing was recorded: {exc}."
            now = await run_in_threadpool(_approval, c, approval_id)
            return await run_in_threadpool(lambda: _page(c, who, now, status=409, error=error))
        if outcome.recorded and outcome.approval is not None:
            background.add_task(_wake, outcome.approval)
        return c.redirect(f"{PREFIX}/approvals/{approval_id}")
