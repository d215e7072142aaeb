"""The mover runbook (seed 002) as a Prefect flow: read → plan on effective access → approve →
apply → verify on effective access → record.

A run is a *case* (ledger): killed and run again, it finds its case, skips what is done and,
when what is left is part of the plan already approved, does not ask again.
The case and the approval context are shared with the email-change runbook
(``flows.email_change``).
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from domain.change import ChangePlan, ChangeRequest, make_change_plan, make_console_change_plan
from domain.models import Email, Module, Role
from domain.policy import ApprovalContext
from domain.runbook import Case
from flows.runbook import ON_FAILURE, begin, outcome, run_plan
from tasks.backend import roles_by_api
from tasks.cases import open_case_of, open_run_case
from tasks.change import (
    manager_of,
    read_access,
    read_idp_view,
    verify_change,
    verify_console_change,
)
from tasks.runtime import Runtime


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


def open_change_case(rt: Runtime, plan: ChangePlan, *, requester: str, ticket: str) -> Case:
    """The change's case (a change of email is the old address's)."""
    return open_run_case(
        rt,
        runbook=plan.runbook,
        subject=plan.subject,
        reason=plan.runbook,
        requester=requester,
        ticket=ticket,
    )


def approval_context(
    rt: Runtime, plan: ChangePlan, *, requester: str, reason: str
) -> ApprovalContext:
    """What the approval policy decides a change on: what it grants more than before."""
    facts = plan.approval_facts()
    return ApprovalContext(
        runbook="change",
        subject=plan.subject,
        requester=requester,
        reason=reason,
        subject_manager=manager_of(rt, plan.subject),
        production_roles=facts["production_roles"],
        org_role=facts["org_role"],
        modules=facts["modules"],
        project_admins=tuple(plan.project_admins),
        project_admins_unknown=not plan.roles_by_api,
    )


@flow(name="change", log_prints=False, on_failure=ON_FAILURE)
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
    rt = begin()
    members, groups, all_projects = read_access(rt, [req.email])
    by_api = roles_by_api(rt)
    member = members[req.email]
    plan = (
        make_change_plan(member, groups, all_projects, domain_req, idp=read_idp_view(rt, member))
        if by_api
        else make_console_change_plan(member, domain_req)  # SCIM only: a task
    )
    if plan.blockers:
        # An unknown member or project is bad input: nothing was written (exit 2).
        return outcome(rt, plan, status="invalid" if not plan.warnings else "blocked")
    if req.dry_run:
        return outcome(rt, plan, status="planned")
    if plan.is_noop and open_case_of(rt, "change", req.email) is None:
        return outcome(rt, plan, status="nothing_to_do", verification=verify_change(rt, plan))
    case = open_change_case(rt, plan, requester=req.requester, ticket=req.ticket)
    return run_plan(
        rt,
        plan,
        case=case,
        requester=req.requester,
        approval=approval_context(
            rt, plan, requester=req.requester, reason="widen" if plan.widening else "narrow"
        ),
        verify=lambda p: (
            verify_change(rt, p) if by_api else verify_console_change(rt, p, case_id=case.id)
        ),
    )
