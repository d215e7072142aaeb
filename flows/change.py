"""The mover runbook (seed 002) as a Prefect flow: read → plan on effective access → approve →
apply → verify on effective access → record.

A run is a *case* (ledger): killed and run again, it finds its case, skips what is done and,
when what is left is part of the plan already approved, does not ask again.
:func:`run_case` is shared with the email-change runbook (``flows.email_change``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import flow, get_run_logger
from prefect.runtime import flow_run
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from approvals.gate import PlanSummary, gate
from domain.change import ChangePlan, ChangeRequest, ChangeStep, make_change_plan
from domain.models import Email, Module, Role
from domain.policy import ApprovalContext
from flows.report import gate_services, run_result, step_dicts
from ledger.cases import find_open_case, open_case, update_case
from tasks.change import apply_change_step, read_access, record_change, verify_change
from tasks.progress import report
from tasks.runtime import Runtime, runtime


class ChangeAccessRequest(BaseModel):
    """What starting an access change takes (validated before anything is read or written)."""

    model_config = ConfigDict(extra="forbid")

    email: Email
    projects: dict[str, str] = Field(default_factory=dict, max_length=50)
    org_role: Role | None = None
    modules_add: list[Module] = Field(default_factory=list)
    modules_remove: list[Module] = Field(default_factory=list)
    ticket: str = Field("", max_length=64, pattern=r"^([A-Z][A-Z0-9]+-\d+)?$")
    dry_run: bool = False
    requester: str = Field("operator", max_length=320)

    @field_validator("projects")
    @classmethod
    def _roles(cls, v: dict[str, str]) -> dict[str, str]:
        out = {}
        for name, role in v.items():
            r = role.strip().lower()
            if r != "none" and r not in {x.value for x in Role}:
                raise ValueError(
                    f"unknown role {role!r} for {name!r}: viewer, member, manager, admin or none"
                )
            out[name.strip()] = r
        return out

    def to_domain(self) -> ChangeRequest:
        return ChangeRequest(
            email=self.email,
            projects={p: (None if r == "none" else Role(r)) for p, r in self.projects.items()},
            org_role=self.org_role,
            modules_add=tuple(self.modules_add),
            modules_remove=tuple(self.modules_remove),
        )


def validate_change(**params: Any) -> ChangeRequest:
    """The domain request for these flow parameters.

    Raises:
        ValidationError: bad input (the CLI exits 2).
    """
    return ChangeAccessRequest(**params).to_domain()


def manager_of(rt: Runtime, email: str) -> str | None:
    entry = rt.roster.get(email) if rt.roster else None
    return entry.manager if entry else None


def result(
    plan: ChangePlan,
    *,
    status: str,
    effects: dict[str, str],
    verification: dict[str, str],
    rt: Runtime,
    **extra: Any,
) -> dict[str, Any]:
    """The run's outcome as INTERFACES.md ``--json`` has it."""
    return run_result(
        status=status,
        plan_hash=plan.hash,
        steps=step_dicts(plan.steps, "widening"),
        blockers=plan.blockers,
        effects=effects,
        verification=verification,
        warnings=plan.warnings,
        ledger=rt.ledger,
        **extra,
    )


def run_case(
    plan: ChangePlan,
    *,
    rt: Runtime,
    ctx: ApprovalContext,
    requester: str,
    ticket: str,
    verify: Callable[[], dict[str, str]],
    close: bool = True,
    now: Callable[[ChangeStep], bool] | None = None,
) -> dict[str, Any]:
    """Open (or resume) the case, pass the gate unless what is left was approved already,
    apply each step once, verify, record. ``close``: the case ends here (an email change
    waiting for acceptance stays open). ``now``: which of the approved steps to apply in this
    run (default all; the rest waits for a later run)."""
    log = get_run_logger()
    run_id = str(flow_run.id or "")
    case, resumed = open_case(
        rt.ledger,
        runbook=plan.runbook,
        subject=plan.subject,
        reason=plan.runbook,
        requester=requester,
        ticket=ticket,
        now=rt.clock(),
    )
    the_ticket = case["ticket"] or ""
    approved = case.get("approved_plan") or {}
    step_ids = {s.id for s in plan.steps}
    approvers: list[str] = []
    if resumed and approved and step_ids <= set(approved.get("steps", [])):
        log.info("continuing the approved plan %s", approved.get("hash", "")[:12])
        approvers = approved.get("approvers", [])
    elif plan.steps:
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
            record_change(
                plan,
                case_id=case["id"],
                ticket=the_ticket,
                requester=requester,
                status="denied",
                verification={},
                flow_run_id=run_id,
            )
            update_case(
                rt.ledger, case["id"], status="closed", closed_at=rt.clock(), outcome="denied"
            )
            return result(
                plan,
                status="denied",
                effects={},
                verification={},
                rt=rt,
                approval=res.approval.id,
                reason=res.reason,
            )
        approvers = res.approved_by
        update_case(
            rt.ledger,
            case["id"],
            approved_plan={"hash": plan.hash, "steps": sorted(step_ids), "approvers": approvers},
        )
    effects: dict[str, str] = {}
    failure = ""
    todo = [s for s in plan.steps if now is None or now(s)]
    for i, step in enumerate(todo):
        report(i, len(todo), f"{step.kind.value} {step.target}")
        try:
            effects[step.id] = apply_change_step(
                step,
                runbook=plan.runbook,
                subject=plan.subject,
                case_id=case["id"],
                plan_hash=plan.hash,
                flow_run_id=run_id,
                ticket=the_ticket,
                approvers=approvers,
            )
        except Exception as exc:  # stop at this safe point; a re-run continues from here
            failure = f"{step.kind.value} {step.target}: {exc}"
            log.error("stopped at step %d/%d: %s", i + 1, len(todo), failure)
            break
    report(len(todo), len(todo), "done")
    verification = verify() if not failure and close else {}
    if failure:
        status = "failed"
    elif not close:
        status = "waiting_for_acceptance"
    elif any(v != "pass" for v in verification.values()):
        status = "failed"
    else:
        status = "done"
    record_change(
        plan,
        case_id=case["id"],
        ticket=the_ticket,
        requester=requester,
        status=status,
        verification=verification,
        flow_run_id=run_id,
    )
    if status == "done":
        update_case(rt.ledger, case["id"], status="closed", closed_at=rt.clock(), outcome=status)
    return result(
        plan,
        status=status,
        effects=effects,
        verification=verification,
        rt=rt,
        failure=failure,
        not_done=[f"{s.kind.value} {s.target}" for s in plan.steps if s.id not in effects],
    )


@flow(name="change", log_prints=False)
def change_access(
    email: str,
    projects: dict[str, str] | None = None,
    org_role: str | None = None,
    modules_add: list[str] | None = None,
    modules_remove: list[str] | None = None,
    ticket: str = "",
    dry_run: bool = False,
    requester: str = "operator",
) -> dict[str, Any]:
    """Change one member's access so that their *effective* access is the target.

    Args:
        email: whose access changes.
        projects: project name → viewer | member | manager | admin | none (none: no access).
        org_role: the new org role.
        modules_add / modules_remove: add-on modules to grant / revoke.
        ticket: a Jira ticket to comment on.
        dry_run: plan only; nothing is written anywhere.
        requester: who asked (never an approver of their own request).

    Returns:
        INTERFACES.md ``--json``: status done | planned | denied | blocked | failed |
        nothing_to_do | invalid, plan, effects, verification, warnings, audit_seq.
    """
    req = ChangeAccessRequest(
        email=email,
        projects=projects or {},
        org_role=org_role,
        modules_add=modules_add or [],
        modules_remove=modules_remove or [],
        ticket=ticket,
        dry_run=dry_run,
        requester=requester,
    )
    try:
        domain_req = req.to_domain()
    except ValidationError as e:
        raise ValueError(str(e)) from None
    rt = runtime()
    members, groups, all_projects = read_access([req.email])
    plan = make_change_plan(members[req.email], groups, all_projects, domain_req)
    if plan.blockers:
        # An unknown member or project is bad input: nothing was written (exit 2).
        status = "invalid" if not plan.warnings else "blocked"
        return result(plan, status=status, effects={}, verification={}, rt=rt)
    if req.dry_run:
        return result(plan, status="planned", effects={}, verification={}, rt=rt)
    if plan.is_noop and find_open_case(rt.ledger, runbook="change", subject=req.email) is None:
        return result(
            plan,
            status="nothing_to_do",
            effects={},
            verification=verify_change(plan),
            rt=rt,
        )
    facts = plan.approval_facts()
    ctx = ApprovalContext(
        runbook="change",
        subject=req.email,
        requester=req.requester,
        reason="widen" if plan.widening else "narrow",
        subject_manager=manager_of(rt, req.email),
        production_roles=facts["production_roles"],
        org_role=facts["org_role"],
        modules=facts["modules"],
        project_admins=tuple(plan.project_admins),
    )
    return run_case(
        plan,
        rt=rt,
        ctx=ctx,
        requester=req.requester,
        ticket=req.ticket,
        verify=lambda: verify_change(plan),
    )
