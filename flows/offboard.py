"""The leaver runbook (seeds 004, 001, 002) as a Prefect flow:
resolve → inventory → plan → approve → apply → verify → record.

The flow only composes (STYLE.md point 8): tasks do the I/O, ``domain.plan`` decides, the gate
approves. A run is a *case*: killed and run again, it finds its case, skips what is done and
converges. When a step keeps failing it stops there — transfers come before removal, so a
normal offboarding never stops between "removed" and "transferred" — and says exactly what is
done and what is not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import (
    create_progress_artifact,
    update_progress_artifact,
)
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from approvals.gate import GateResult, PlanSummary, gate
from domain.models import Email
from domain.plan import Inventory, Options, Plan, Reason, make_offboarding_plan
from domain.policy import ApprovalContext
from domain.records import ApprovalState
from flows.report import gate_services, publish, run_result, step_dicts
from ledger.approvals import get_approval
from ledger.cases import find_closed_case, find_open_case, open_case, update_case
from tasks.offboard import apply_step, record_offboarding, take_inventory, verify_offboarding
from tasks.progress import report
from tasks.runtime import Runtime, runtime


class OffboardRequest(BaseModel):
    """What starting an offboarding takes (validated before anything is read or written)."""

    model_config = ConfigDict(extra="forbid")

    email: Email
    reason: Reason
    ticket: str = Field("", max_length=64, pattern=r"^([A-Z][A-Z0-9]+-\d+)?$")
    emergency: bool = False
    receiver: Email | None = None
    keep_projects: list[str] = Field(default_factory=list, max_length=50)
    dry_run: bool = False
    requester: str = Field("operator", max_length=320)
    review_approval: str = Field("", max_length=40)  # an approved access review covering them

    @field_validator("keep_projects")
    @classmethod
    def _names(cls, v: list[str]) -> list[str]:
        if any(not p.strip() or len(p) > 200 for p in v):
            raise ValueError("project names must be non-empty (at most 200 characters)")
        return [p.strip() for p in v]

    @model_validator(mode="after")
    def _consistent(self) -> OffboardRequest:
        if self.emergency and self.reason is not Reason.SECURITY_INCIDENT:
            raise ValueError("--emergency goes with reason security_incident")
        if self.reason is Reason.SECURITY_INCIDENT and not self.emergency:
            raise ValueError("reason security_incident needs --emergency (lock out first)")
        if self.keep_projects and self.reason is not Reason.ROLE_CHANGE:
            raise ValueError("--keep-project only applies to reason role_change")
        if self.receiver and self.receiver == self.email:
            raise ValueError("the receiver cannot be the person leaving")
        return self


def review_approvers(rt: Runtime, approval_id: str, email: str) -> list[str]:
    """Who approved ``email``'s removal in an access review.

    Raises:
        ValueError: no such approval, not an approved review, or one about someone else.
    """
    try:
        appr = get_approval(rt.ledger, approval_id)
    except KeyError:
        raise ValueError(f"no approval {approval_id}") from None
    # A per-item review approval names the person; a bulk one covers the whole review (its
    # plan hash is over every item, which security saw listed in the request).
    covers = appr.subject == email or appr.subject.startswith("access-review")
    if appr.runbook != "review" or appr.state is not ApprovalState.APPROVED or not covers:
        raise ValueError(f"approval {approval_id} is not an approved access review of {email}")
    return [d.approver for d in appr.decisions if d.counted and d.decision == "approve"]


def _result(
    plan: Plan,
    *,
    status: str,
    effects: dict[str, str],
    verification: dict[str, str],
    rt: Runtime,
    **extra: Any,
) -> dict[str, Any]:
    return run_result(
        status=status,
        plan_hash=plan.hash,
        steps=step_dicts(plan.steps),
        blockers=plan.blockers,
        effects=effects,
        verification=verification,
        warnings=plan.warnings,
        ledger=rt.ledger,
        **extra,
    )


def _artifacts(
    plan: Plan, status: str, effects: dict[str, str], verification: dict[str, str]
) -> None:
    publish(
        slug="offboard",
        title=f"Offboarding {plan.subject}",
        status=status,
        headline=f"Reason: {plan.reason.value}{' (emergency)' if plan.emergency else ''}"
        f" · plan `{plan.hash[:12]}`",
        steps=plan.steps,
        effects=effects,
        verification=verification,
        warnings=plan.warnings,
    )


def _gate(
    rt: Runtime,
    req: OffboardRequest,
    inv: Inventory,
    plan: Plan,
    run_id: str,
    ticket: str,
    case_id: int,
) -> GateResult:
    """The approval gate for this case's plan (its approval belongs to the case)."""
    ctx = ApprovalContext(
        runbook="offboard",
        subject=req.email,
        requester=req.requester,
        reason=req.reason.value,
        emergency=req.emergency,
        subject_manager=inv.roster.manager if inv.roster else None,
    )
    return gate(
        gate_services(rt),
        ctx,
        plan_hash=plan.hash,
        summary=PlanSummary(plan.counts_by_kind(), plan.warnings),
        flow_run_id=run_id,
        ticket=ticket,
        run_key=f"case-{case_id}",
        # An emergency tells security after the lockout, never before it.
        defer_notice=True,
    )


@flow(name="offboard", log_prints=False)
def offboard(
    email: str,
    reason: str,
    ticket: str = "",
    emergency: bool = False,
    receiver: str | None = None,
    keep_projects: list[str] | None = None,
    dry_run: bool = False,
    requester: str = "operator",
    review_approval: str = "",
) -> dict[str, Any]:
    """Offboard one person.

    Args:
        email: who leaves (exact email; look-alikes are reported, never touched).
        reason: termination, contract_end, role_change, inactivity, security_incident,
            idp_removal.
        ticket: the Jira ticket (one is created when none is given).
        emergency: lock out first, transfer after (reason security_incident).
        receiver: who receives the content (default: the manager, else each project admin).
        keep_projects: with role_change, narrow access to these projects instead of removing.
        dry_run: plan only; nothing is written anywhere.
        requester: who asked (never an approver of their own request).
        review_approval: an approved access review covering this person: it stands for the
            approval (the review's removals run as subflows).

    Returns:
        The run's outcome (INTERFACES.md ``--json``): status done | planned | denied |
        blocked | failed | nothing_to_do, plan, effects, verification, warnings, audit_seq.
    """
    req = OffboardRequest(
        email=email,
        reason=reason,
        ticket=ticket,
        emergency=emergency,
        receiver=receiver,
        keep_projects=keep_projects or [],
        dry_run=dry_run,
        requester=requester,
        review_approval=review_approval,
    )
    log = get_run_logger()
    rt = runtime()
    opts = Options(
        reason=req.reason,
        emergency=req.emergency,
        receiver=req.receiver,
        keep_projects=tuple(req.keep_projects),
        requester=req.requester,
        ticket=req.ticket,
    )
    inv = take_inventory(req.email, receiver=req.receiver)
    plan = make_offboarding_plan(inv, opts)
    if req.dry_run:
        return _result(plan, status="planned", effects={}, verification={}, rt=rt)
    if plan.is_noop and find_open_case(rt.ledger, runbook="offboard", subject=req.email) is None:
        # Nothing to do and no interrupted run to finish: no case, no ticket, no message (an
        # unknown or already offboarded address must not write anywhere).
        return _result(plan, status="nothing_to_do", effects={}, verification={}, rt=rt)
    denied = find_closed_case(
        rt.ledger,
        runbook="offboard",
        subject=req.email,
        ticket=req.ticket,
        outcomes=(ApprovalState.DENIED.value, ApprovalState.EXPIRED.value),
    )
    if denied is not None:
        # This ticket's offboarding was refused: a re-delivered event or a run resumed after its
        # worker died must not ask again (a new request comes with a new ticket).
        log.warning("offboarding of %s under %s was %s", req.email, req.ticket, denied["outcome"])
        return _result(plan, status="denied", effects={}, verification={}, rt=rt, ticket=req.ticket)
    case, resumed = open_case(
        rt.ledger,
        runbook="offboard",
        subject=req.email,
        reason=req.reason.value,
        requester=req.requester,
        ticket=req.ticket,
        now=rt.clock(),
    )
    the_ticket = case["ticket"]
    if not the_ticket:
        t = rt.tickets.create(
            project="IT",
            issue_type="Offboarding",
            summary=f"Offboard {req.email} ({req.reason.value})",
            description=f"email: {req.email}\nreason: {req.reason.value}",
            # Names this case (id and opening time: unique even if a ledger starts over), so a
            # run killed between filing and recording the ticket finds it rather than filing
            # a second one.
            once=f"handover-case-{case['id']}-{case['opened_at']:%Y%m%d%H%M%S}",
        )
        the_ticket = t.key
        update_case(rt.ledger, case["id"], ticket=the_ticket)
    run_id = str(flow_run.id or "")
    if plan.blockers:
        log.warning("offboarding of %s needs a choice: %s", req.email, "; ".join(plan.blockers))
        record_offboarding(
            plan,
            case_id=case["id"],
            ticket=the_ticket,
            requester=req.requester,
            status="blocked",
            effects={},
            verification={},
            flow_run_id=run_id,
        )
        return _result(
            plan, status="blocked", effects={}, verification={}, rt=rt, ticket=the_ticket
        )

    approved = case.get("approved_plan") or {}
    step_ids = {s.id for s in plan.steps}
    approvers: list[str] = []
    notice: Callable[[], None] = lambda: None  # noqa: E731 (replaced by the gate's, if any)
    if resumed and approved and step_ids <= set(approved.get("steps", [])):
        log.info("continuing the approved plan %s", approved.get("hash", "")[:12])
        approvers = approved.get("approvers", [])
        # What the interrupted run already transferred is no longer in today's inventory: its
        # receivers must still be checked and told what they received.
        receivers = {k: set(v) for k, v in approved.get("receivers", {}).items()}
        for who, ids in plan.receivers.items():
            receivers.setdefault(who, set()).update(ids)
        plan = plan.model_copy(
            update={"receivers": {k: sorted(v) for k, v in sorted(receivers.items())}}
        )
        if req.emergency:  # the interrupted run may have died before telling security
            notice = _gate(rt, req, inv, plan, run_id, the_ticket, case["id"]).send_notice
    elif plan.steps and req.review_approval:
        # Security already approved this removal in an access review: that approval stands
        # for this run, if it really is an approved review that covers this person.
        approvers = review_approvers(rt, req.review_approval, req.email)
        update_case(
            rt.ledger,
            case["id"],
            approved_plan={
                "hash": plan.hash,
                "steps": sorted(step_ids),
                "approvers": approvers,
                "receivers": plan.receivers,
                "review_approval": req.review_approval,
            },
        )
    elif plan.steps:
        res = _gate(rt, req, inv, plan, run_id, the_ticket, case["id"])
        if not res.approved:
            record_offboarding(
                plan,
                case_id=case["id"],
                ticket=the_ticket,
                requester=req.requester,
                status=res.state.value,
                effects={},
                verification={},
                flow_run_id=run_id,
            )
            update_case(
                rt.ledger,
                case["id"],
                status="closed",
                closed_at=rt.clock(),
                outcome=res.state.value,
            )
            return _result(
                plan,
                status="denied",
                effects={},
                verification={},
                rt=rt,
                ticket=the_ticket,
                approval=res.approval.id,
            )
        approvers = res.approved_by
        notice = res.send_notice
        update_case(
            rt.ledger,
            case["id"],
            approved_plan={
                "hash": plan.hash,
                "steps": sorted(step_ids),
                "approvers": approvers,
                "receivers": plan.receivers,
            },
        )

    effects: dict[str, str] = {}
    progress = create_progress_artifact(
        0.0, key="offboard-progress", description=f"Offboarding {req.email}"
    )
    failure = ""
    for i, step in enumerate(plan.steps):
        report(i, len(plan.steps), f"{step.kind.value} {step.target}")
        try:
            out = apply_step(
                step,
                subject=req.email,
                case_id=case["id"],
                plan_hash=plan.hash,
                flow_run_id=run_id,
                ticket=the_ticket,
                approvers=approvers,
            )
        except Exception as exc:  # stop at this safe point; a re-run continues from here
            failure = f"{step.kind.value} {step.target}: {exc}"
            log.error("stopped at step %d/%d: %s", i + 1, len(plan.steps), failure)
            break
        effects[step.id] = out["effect"]
        update_progress_artifact(progress, 100.0 * (i + 1) / len(plan.steps))
    report(len(plan.steps), len(plan.steps), "done")
    notice()  # an emergency's post-hoc review notice, now that the lockout is done (or stopped)
    narrowed = bool(req.keep_projects)
    verification = (
        verify_offboarding(inv, plan, narrowed=narrowed, case_id=case["id"]) if not failure else {}
    )
    status = "failed" if failure else ("done" if plan.steps or resumed else "nothing_to_do")
    record_offboarding(
        plan,
        case_id=case["id"],
        ticket=the_ticket,
        requester=req.requester,
        status=status,
        effects=effects,
        verification=verification,
        flow_run_id=run_id,
    )
    _artifacts(plan, status, effects, verification)
    if not failure and all(v == "pass" for v in verification.values()):
        update_case(rt.ledger, case["id"], status="closed", closed_at=rt.clock(), outcome=status)
    not_done = [f"{s.kind.value} {s.target}" for s in plan.steps if s.id not in effects]
    return _result(
        plan,
        status=status,
        effects=effects,
        verification=verification,
        rt=rt,
        ticket=the_ticket,
        failure=failure,
        not_done=not_done,
    )
