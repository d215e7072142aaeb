"""The joiner runbook (seed 003, "Invite the Service Account") as a Prefect flow:
resolve (ticket or options) → inventory → plan → approve → apply → verify → record.

The flow only composes (STYLE.md point 8): tasks do the I/O, ``domain.onboard`` decides, the
gate approves. A run is a *case* keyed by the person: killed and run again it skips what is
done; a ticket already handled (done, or rejected for the same problems) is not handled twice.
An invalid request (the ticket's lines, or projects and dates checked against the org) gets one
comment listing every problem, the ticket goes to Rejected and nothing is provisioned.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from approvals.gate import PlanSummary, gate
from domain.access_request import AccessRequestError, LineError
from domain.models import AccessRequest, Email, Module, Role
from domain.onboard import OnboardPlan, OnboardStepKind, Outcome, make_onboarding_plan
from domain.policy import ApprovalContext
from flows.report import gate_services, publish, run_result, step_dicts
from ledger.cases import find_open_case, open_case, update_case
from tasks.onboard import (
    RUNBOOK,
    apply_onboard_step,
    previous_outcome,
    read_access_request,
    record_onboarding,
    reject_request,
    take_onboard_inventory,
    ticket_reporter,
    verify_onboarding,
)
from tasks.runtime import Runtime, runtime

TICKET = r"^([A-Z][A-Z0-9]+-\d+)?$"


class OnboardRequest(BaseModel):
    """What starting an onboarding takes without a ticket (validated before any I/O)."""

    model_config = ConfigDict(extra="forbid")

    ticket: str = Field("", max_length=64, pattern=TICKET)
    email: Email | None = None
    projects: dict[str, Role] = Field(default_factory=dict, max_length=50)
    org_role: Role = Role.VIEWER
    modules: list[Module] = Field(default_factory=list, max_length=10)
    until: date | None = None
    justification: str = Field("", max_length=2000)
    requester: str = Field("operator", max_length=320)
    dry_run: bool = False
    idp_managed: bool | None = None

    @field_validator("projects")
    @classmethod
    def _names(cls, v: dict[str, Role]) -> dict[str, Role]:
        if any(not p.strip() or len(p) > 200 for p in v):
            raise ValueError("project names must be non-empty (at most 200 characters)")
        return {p.strip(): r for p, r in v.items()}

    @model_validator(mode="after")
    def _consistent(self) -> OnboardRequest:
        if self.ticket:
            if self.email or self.projects:
                raise ValueError("give either a ticket or --email with --project, not both")
        elif self.email is None or not self.projects:
            raise ValueError("give a ticket, or --email and at least one --project NAME=ROLE")
        return self

    def access_request(self) -> AccessRequest:
        assert self.email is not None
        return AccessRequest(
            email=self.email,
            projects=self.projects,
            org_role=self.org_role,
            modules=tuple(dict.fromkeys(self.modules)),
            until=self.until,
            justification=self.justification,
            temporary=self.until is not None,
            requester=self.requester,
        )


def _result(
    plan: OnboardPlan | None,
    *,
    status: str,
    rt: Runtime,
    effects: dict[str, str] | None = None,
    verification: dict[str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return run_result(
        status=status,
        plan_hash=plan.hash if plan else "",
        steps=step_dicts(plan.steps if plan else []),
        blockers=(plan.problems + plan.blockers) if plan else [],
        effects=effects or {},
        verification=verification or {},
        warnings=plan.warnings if plan else [],
        ledger=rt.ledger,
        **({"subject": plan.subject, "granted": plan.granted_text()} if plan else {}),
        **extra,
    )


def _artifacts(
    plan: OnboardPlan, status: str, effects: dict[str, str], verification: dict[str, str]
) -> None:
    publish(
        slug="onboard",
        title=f"Onboarding {plan.subject}",
        status=status,
        headline=f"Granted: {plan.granted_text()} · plan `{plan.hash[:12]}`",
        steps=plan.steps,
        effects=effects,
        verification=verification,
        warnings=plan.warnings,
    )


def _problems_text(problems: list[str]) -> str:
    """Org-side problems, worded like the ticket parser's (one comment, every problem)."""
    return str(AccessRequestError(LineError(None, "", p) for p in problems))


@flow(name="onboard", log_prints=False)
def onboard(
    ticket: str = "",
    email: str = "",
    projects: dict[str, str] | None = None,
    org_role: str = "viewer",
    modules: list[str] | None = None,
    until: str | None = None,
    justification: str = "",
    requester: str = "operator",
    dry_run: bool = False,
    idp_managed: bool | None = None,
) -> dict[str, Any]:
    """Onboard one person from an access-request ticket or from options.

    Args:
        ticket: an Access Request ticket (its description carries the request).
        email, projects, org_role, modules, until, justification: the request without a ticket
            (``projects`` maps a project name to a role).
        requester: who asked (with a ticket: its reporter); never an approver of it.
        dry_run: plan only; nothing is written anywhere.
        idp_managed: pre-provision in the IdP instead of inviting (default: the setting
            ``idp_managed``, else False).

    Returns:
        The run's outcome (INTERFACES.md ``--json``): status done | planned | denied | blocked |
        rejected | change_needed | failed | nothing_to_do, plan, effects, verification,
        warnings, audit_seq.

    Raises:
        pydantic.ValidationError: the options are not a valid request (nothing was read).
    """
    req = OnboardRequest(
        ticket=ticket,
        email=email or None,
        projects=projects or {},
        org_role=org_role,
        modules=modules or [],
        until=until,
        justification=justification,
        requester=requester,
        dry_run=dry_run,
        idp_managed=idp_managed,
    )
    log = get_run_logger()
    rt = runtime()
    run_id = str(flow_run.id or "")
    use_idp = (
        req.idp_managed
        if req.idp_managed is not None
        else bool(getattr(rt.settings, "idp_managed", False))
    )

    # --- resolve ------------------------------------------------------------------------------
    if req.ticket:
        got = read_access_request(req.ticket)
        if isinstance(got, str):
            subject = f"ticket:{req.ticket}"
            if req.dry_run:
                return _result(None, status="rejected", rt=rt, problems=got, ticket=req.ticket)
            reporter = ticket_reporter(req.ticket)
            status = reject_request(
                ticket=req.ticket,
                subject=subject,
                problems=got,
                requester=reporter,
                flow_run_id=run_id,
            )
            return _result(None, status=status, rt=rt, problems=got, ticket=req.ticket)
        request = got
        requester_ = request.requester or req.requester
    else:
        request = req.access_request()
        requester_ = req.requester
    the_ticket = request.ticket or ""
    if previous_outcome(request.email, the_ticket) is not None:
        log.info("ticket %s was already handled for %s", the_ticket, request.email)
        return _result(None, status="nothing_to_do", rt=rt, ticket=the_ticket)

    # --- inventory and plan ---------------------------------------------------------------------
    open_ = find_open_case(rt.ledger, runbook=RUNBOOK, subject=request.email)
    same_case = open_ is not None and (open_["ticket"] or "") == the_ticket
    state = take_onboard_inventory(
        request.email, ticket=the_ticket, case_id=open_["id"] if same_case and open_ else None
    )
    plan = make_onboarding_plan(request, state, idp_managed=use_idp, now=rt.clock())
    if req.dry_run:
        status = "planned" if plan.outcome is Outcome.READY else plan.outcome.value
        if plan.outcome is Outcome.INVALID:
            status = "rejected"
        return _result(plan, status=status, rt=rt, ticket=the_ticket)
    if plan.outcome is Outcome.INVALID:
        problems = _problems_text(plan.problems)
        status = reject_request(
            ticket=the_ticket,
            subject=request.email,
            problems=problems,
            requester=requester_,
            flow_run_id=run_id,
        )
        return _result(plan, status=status, rt=rt, problems=problems, ticket=the_ticket)
    if plan.outcome in (Outcome.CHANGE_NEEDED, Outcome.NOTHING_TO_DO, Outcome.BLOCKED):
        # Nothing is written: a joined member is a change (handover change), not a new invite.
        log.warning("onboarding of %s: %s", request.email, plan.outcome.value)
        return _result(
            plan, status=plan.outcome.value, rt=rt, ticket=the_ticket, change=plan.change
        )

    case, resumed = open_case(
        rt.ledger,
        runbook=RUNBOOK,
        subject=request.email,
        reason="access_request",
        requester=requester_,
        ticket=the_ticket,
        now=rt.clock(),
    )
    approved = case.get("approved_plan") or {}
    approvers: list[str] = []
    if resumed and approved.get("hash") == plan.hash:
        approvers = approved.get("approvers", [])
    elif all(s.kind is OnboardStepKind.RESEND_INVITATION for s in plan.steps):
        approvers = []  # a resend grants nothing new: no approval
    else:
        by_name = {p.name: p for p in state.projects}
        admins = tuple(
            dict.fromkeys(a for p in plan.production_projects for a in by_name[p].admins)
        ) or tuple(dict.fromkeys(a for p in plan.projects for a in by_name[p].admins))
        ctx = ApprovalContext(
            runbook=RUNBOOK,
            subject=request.email,
            requester=requester_,
            reason="access_request",
            production_roles=tuple(plan.production_roles),
            org_role=plan.org_role.value,
            modules=tuple(m.value for m in plan.modules),
            project_admins=admins,
        )
        res = gate(
            gate_services(rt),
            ctx,
            plan_hash=plan.hash,
            summary=PlanSummary(plan.counts_by_kind(), plan.warnings),
            flow_run_id=run_id,
            ticket=the_ticket,
            run_key=f"case-{case['id']}",
        )
        if not res.approved:
            record_onboarding(
                plan,
                case_id=case["id"],
                ticket=the_ticket,
                requester=requester_,
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
                plan, status="denied", rt=rt, ticket=the_ticket, approval=res.approval.id
            )
        approvers = res.approved_by
        update_case(
            rt.ledger,
            case["id"],
            approved_plan={"hash": plan.hash, "approvers": approvers},
        )

    # --- apply, verify, record --------------------------------------------------------------------
    effects: dict[str, str] = {}
    failure = ""
    for i, step in enumerate(plan.steps):
        try:
            out = apply_onboard_step(
                step,
                subject=request.email,
                case_id=case["id"],
                plan_hash=plan.hash,
                flow_run_id=run_id,
                ticket=the_ticket,
                approvers=approvers,
            )
        except Exception as exc:  # stop here; a re-run continues from this step
            failure = f"{step.kind.value} {step.target}: {exc}"
            log.error("stopped at step %d/%d: %s", i + 1, len(plan.steps), failure)
            break
        effects[step.id] = out["effect"]
    verification = verify_onboarding(plan) if not failure else {}
    ok = not failure and all(v == "pass" for v in verification.values())
    status = "done" if ok else "failed"
    record_onboarding(
        plan,
        case_id=case["id"],
        ticket=the_ticket,
        requester=requester_,
        status=status,
        effects=effects,
        verification=verification,
        flow_run_id=run_id,
    )
    _artifacts(plan, status, effects, verification)
    if ok:
        update_case(rt.ledger, case["id"], status="closed", closed_at=rt.clock(), outcome=status)
    not_done = [f"{s.kind.value} {s.target}" for s in plan.steps if s.id not in effects]
    return _result(
        plan,
        status=status,
        rt=rt,
        effects=effects,
        verification=verification,
        ticket=the_ticket,
        failure=failure,
        not_done=not_done,
    )
