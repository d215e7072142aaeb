"""The joiner runbook (seed 003, "Invite the Service Account") as a Prefect flow:
resolve (ticket or options) → inventory → plan → approve → apply → verify → record.

The flow only composes (STYLE.md point 8): tasks do the I/O, ``domain.onboard`` decides, the
gate approves. A run is a *case* keyed by the person: killed and run again it skips what is
done; a ticket already handled (done, or rejected for the same problems) is not handled twice.
An invalid request (the ticket's lines, or projects and dates checked against the org) gets one
comment listing every problem, the ticket goes to Rejected and nothing is provisioned. A ticket
that is not an access request (``domain.request_kind``: the configured types and label) gets
one comment saying so and how to file one, and nothing else; a ticket Jira does not have is
``unknown_ticket``.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from prefect import flow, get_run_logger
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from domain.access_request import AccessRequestError, LineError
from domain.models import AccessRequest, Email, Module, Role
from domain.onboard import (
    OnboardPlan,
    OnboardState,
    OnboardStepKind,
    Outcome,
    approving_admins,
    make_onboarding_plan,
)
from domain.policy import ApprovalContext
from domain.runbook import Case
from flows.runbook import ON_FAILURE, begin, outcome, run_id, run_plan
from tasks.cases import open_case_of, open_run_case
from tasks.onboard import (
    RUNBOOK,
    NotHandled,
    answer_not_a_request,
    idp_managed_default,
    previous_outcome,
    read_access_request,
    reject_request,
    take_onboard_inventory,
    ticket_reporter,
    verify_onboarding,
)
from tasks.runtime import Runtime

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
    org: str = Field("", max_length=31)  # "": the main org

    @field_validator("email", "projects", "modules", mode="before")
    @classmethod
    def _unset(cls, v: Any, info: ValidationInfo) -> Any:
        # The flow's parameter defaults ("" and None) mean "not given".
        return v or {"email": None, "projects": {}, "modules": []}[str(info.field_name)]

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
        if self.org and self.until is not None:
            # A grant names no org: the expiry sweep would take it back in the main org.
            raise ValueError("--until with --org: temporary access is for the main org only")
        if self.org and self.idp_managed:
            raise ValueError("--idp with --org: the IdP provisions the main org only")
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


def _problems_text(problems: list[str]) -> str:
    """Org-side problems, worded like the ticket parser's (one comment, every problem)."""
    return str(AccessRequestError(LineError(None, "", p) for p in problems))


@flow(name="onboard", log_prints=False, on_failure=ON_FAILURE)
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
    org: str = "",
) -> dict[str, Any]:
    """Onboard one person from an access-request ticket, or from options (the parameters
    are :class:`OnboardRequest`'s: ``projects`` maps a project name to a role; ``requester``,
    with a ticket its reporter, never approves it; ``idp_managed`` pre-provisions in the IdP).

    Returns:
        The outcome (``--json``): status done | planned | denied | blocked | rejected |
        change_needed | failed | nothing_to_do | not_an_access_request (the ticket is
        answered, nothing else done) | unknown_ticket, plan, effects, verification, warnings.

    Raises:
        pydantic.ValidationError: the options are not a valid request (nothing was read).
    """
    req = OnboardRequest.model_validate(locals())  # exactly the parameters above
    rt = begin().in_org(req.org)  # SettingsError (a ValueError): no such org, nothing read
    log = get_run_logger()
    use_idp = req.idp_managed if req.idp_managed is not None else idp_managed_default(rt)
    got = _resolve(rt, req)
    if isinstance(got, dict):
        return got
    request, requester_ = got
    if request.org and not req.org:  # the ticket names the org to join
        moved = _to_ticket_org(rt, request, requester_, dry_run=req.dry_run)
        if isinstance(moved, dict):
            return moved
        rt, use_idp = moved, False  # the IdP provisions the main org only
    the_ticket = request.ticket or ""
    if previous_outcome(rt, request.email, the_ticket) is not None:
        log.info("ticket %s was already handled for %s", the_ticket, request.email)
        return outcome(rt, None, status="nothing_to_do", ticket=the_ticket)
    state = _inventory(rt, request.email, the_ticket)
    plan = make_onboarding_plan(request, state, idp_managed=use_idp, now=state.taken_at)
    if rt.org_suffix:  # what approvers and the ticket see: which org this is
        where = f"in the {rt.settings.org_name} org"
        plan = plan.model_copy(update={"warnings": [where, *plan.warnings]})
    if req.dry_run:
        status = "planned" if plan.outcome is Outcome.READY else plan.outcome.value
        if status == "invalid":  # what is wrong, in the words the ticket would get
            problems = _problems_text(plan.problems)
            return outcome(rt, plan, status="rejected", ticket=the_ticket, problems=problems)
        return outcome(rt, plan, status=status, ticket=the_ticket)
    if plan.outcome is Outcome.INVALID:
        problems = _problems_text(plan.problems)
        return _reject(rt, the_ticket, request.email, problems, requester_, plan)
    if plan.outcome in (Outcome.CHANGE_NEEDED, Outcome.NOTHING_TO_DO, Outcome.BLOCKED):
        # Nothing is written: a joined member is a change (handover change), not a new invite.
        log.warning("onboarding of %s: %s", request.email, plan.outcome.value)
        return outcome(rt, plan, status=plan.outcome.value, ticket=the_ticket, change=plan.change)
    case = _open_case(rt, request, requester_)
    return run_plan(
        rt,
        plan,
        case=case,
        requester=requester_,
        approval=approval_context(plan, state, requester=requester_),
        verify=lambda p: verify_onboarding(rt, p, case_id=case.id),
    )


def _open_case(rt: Runtime, request: AccessRequest, requester: str) -> Case:
    """The onboarding's case, keyed by the person (a resumed one if a run died)."""
    return open_run_case(
        rt,
        runbook=RUNBOOK + rt.org_suffix,
        subject=request.email,
        reason="access_request",
        requester=requester,
        ticket=request.ticket or "",
    )


def _inventory(rt: Runtime, email: str, ticket: str) -> OnboardState:
    """What the plan is made on; an interrupted run of this very ticket's case tells what it
    already did (its invitation is its own, not a duplicate to refuse)."""
    open_ = open_case_of(rt, RUNBOOK + rt.org_suffix, email)
    same_case = open_ is not None and open_.ticket == ticket
    return take_onboard_inventory(
        rt, email, ticket=ticket, case_id=open_.id if same_case and open_ else None
    )


def _resolve(rt: Runtime, req: OnboardRequest) -> tuple[AccessRequest, str] | dict[str, Any]:
    """The request and who asked: from the ticket (an invalid one is rejected on it and its
    outcome returned), or from the options."""
    if not req.ticket:
        return req.access_request(), req.requester
    got = read_access_request(rt, req.ticket)
    if isinstance(got, NotHandled):  # not an access request, or no such ticket: bad input
        if got.status == "not_an_access_request" and not req.dry_run:
            answer_not_a_request(rt, ticket=req.ticket, message=got.message, flow_run_id=run_id())
        return outcome(rt, None, status=got.status, problems=got.message, ticket=req.ticket)
    if isinstance(got, str):
        if req.dry_run:
            return outcome(rt, None, status="rejected", problems=got, ticket=req.ticket)
        reporter = ticket_reporter(rt, req.ticket)
        return _reject(rt, req.ticket, f"ticket:{req.ticket}", got, reporter)
    return got, got.requester or req.requester


def _to_ticket_org(
    rt: Runtime, request: AccessRequest, requester: str, *, dry_run: bool
) -> Runtime | dict[str, Any]:
    """The runtime of the org a ticket names, or the ticket's rejection (an unknown org, or
    temporary access outside the main org: a grant names no org)."""
    problem = ""
    try:
        there = rt.in_org(request.org)
    except ValueError as e:  # SettingsError: no such org
        problem = str(e)
    else:
        if there is not rt and request.until is not None:
            problem = "until: temporary access is for the main org only"
    if not problem:
        return there
    problems = _problems_text([problem])
    if dry_run:
        return outcome(rt, None, status="rejected", problems=problems, ticket=request.ticket or "")
    return _reject(rt, request.ticket or "", request.email, problems, requester)


def _reject(
    rt: Runtime,
    ticket: str,
    subject: str,
    problems: str,
    requester: str | None,
    plan: OnboardPlan | None = None,
) -> dict[str, Any]:
    """An invalid request: said on the ticket and to the requester; nothing provisioned."""
    status = reject_request(
        rt,
        ticket=ticket,
        subject=subject,
        problems=problems,
        requester=requester,
        flow_run_id=run_id(),
    )
    return outcome(rt, plan, status=status, problems=problems, ticket=ticket)


def approval_context(
    plan: OnboardPlan, state: OnboardState, *, requester: str
) -> ApprovalContext | None:
    """What the approval policy decides on; ``None`` when the plan only resends an
    invitation (it grants nothing new)."""
    if all(s.kind is OnboardStepKind.RESEND_INVITATION for s in plan.steps):
        return None
    admins = approving_admins(state.projects, plan.production_projects, plan.projects)
    return ApprovalContext(
        runbook=RUNBOOK,
        subject=plan.subject,
        requester=requester,
        reason="access_request",
        production_roles=tuple(plan.production_roles),
        org_role=plan.org_role.value,
        modules=tuple(m.value for m in plan.modules),
        project_admins=admins,
        project_admins_unknown=not state.roles_by_api,
    )
