"""The onboarding runbook's tasks: read the request and the state, apply one step, verify, record.

Tasks are thin (STYLE.md point 7): the rules are in ``domain.onboard``; here each step reads or
writes through a connector, is skipped when the case already did it, and leaves an audit event.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import Counter
from datetime import UTC, date, datetime, time
from typing import Any, Literal, assert_never

from prefect import task

from approvals.people import idp_address
from connectors.capabilities import (
    Invitations,
    Inviter,
    InviteSpec,
    ModuleAccess,
    ProjectAccess,
    has,
    require,
)
from connectors.errors import ConnectorError, NotFoundError
from domain.access_request import AccessRequestError, LineError
from domain.models import AccessRequest, Effect, Frozen, Member, WriteResult
from domain.onboard import OnboardPlan, OnboardState, OnboardStep, OnboardStepKind
from domain.plan import is_mapped_idp_group
from domain.records import AuditEvent, Grant
from domain.request_kind import NotAnAccessRequest
from domain.runbook import Case
from domain.steps import (
    GrantModules,
    HumanTask,
    IdpAddGroup,
    IdpCreateUser,
    Invite,
    RecordGrant,
    ResendInvitation,
    TemporaryProjectRole,
)
from ledger.audit import append
from ledger.cases import done_steps, find_closed_case, open_case, update_case
from ledger.grants import grants, record_grant
from tasks.human import do_human_task, task_checks
from tasks.runtime import UNCACHED, Runtime
from tasks.steps import StepScope, executor

RUNBOOK = "onboard"


def today(rt: Runtime) -> date:
    """Today, by the runtime's clock (what "until" dates are checked against)."""
    return rt.clock().date()


def idp_managed_default(rt: Runtime) -> bool:
    """Whether onboardings pre-provision in the IdP when the request does not say."""
    return bool(getattr(rt.settings, "idp_managed", False))


# Why a ticket whose reporter is nobody the IdP knows is refused (said on the ticket).
UNKNOWN_REPORTER = (
    "reporter: the ticket's reporter has no email in Jira that belongs to an active person of "
    "the identity provider (a display name is never used to tell who asked); file the request "
    "from your own Jira account"
)


class NotHandled(Frozen):
    """A ticket the runbook does not act on: bad input (exit 2), nothing provisioned.

    ``not_an_access_request``: not one by the configured request types and label (the ticket
    is answered with ``message``); ``unknown_ticket``: Jira has no such ticket (or hides it).
    """

    status: Literal["not_an_access_request", "unknown_ticket"]
    ticket: str
    message: str


@task(name="read_access_request", cache_policy=UNCACHED)
def read_access_request(rt: Runtime, ticket: str) -> AccessRequest | str | NotHandled:
    """The request a ticket carries, with its requester as the IdP knows them, or the text
    explaining what is wrong with it.

    The requester is the reporter's Jira email (read from their account, by ``accountId`` on
    Jira Cloud, when the issue hides it) mapped to the active IdP user it belongs to (an alias
    gives the user's canonical address): who asked never approves, so who asked must be a
    person, not a display name.

    Returns:
        The validated request; ``str(AccessRequestError)`` (every problem with its line; an
        unknown reporter is one); or :class:`NotHandled` for a ticket that is not an access
        request (``domain.request_kind``) or does not exist.

    Raises:
        ConnectorError: the ticket cannot be read, or the IdP cannot be asked.
    """
    try:
        request = rt.tickets.read_access_request(ticket, today=rt.clock().date())
    except AccessRequestError as exc:
        return str(exc)
    except NotAnAccessRequest as exc:
        return NotHandled(status="not_an_access_request", ticket=ticket, message=str(exc))
    except NotFoundError:
        why = f"{ticket}: no such ticket in Jira (or Handover's Jira account may not see it)"
        return NotHandled(status="unknown_ticket", ticket=ticket, message=why)
    requester = idp_address(rt, request.requester)
    if requester is None:
        return str(AccessRequestError([LineError(None, "", UNKNOWN_REPORTER)]))
    return request.model_copy(update={"requester": requester})


@task(name="ticket_reporter", cache_policy=UNCACHED)
def ticket_reporter(rt: Runtime, ticket: str) -> str | None:
    """Who opened the ticket (they asked, so they never approve it)."""
    return rt.tickets.get(ticket).reporter


def previous_outcome(rt: Runtime, subject: str, ticket: str, reason: str = "") -> Case | None:
    """The closed case of this runbook, subject and ticket (and ``reason``, when given) that
    finished it: a re-run of the same ticket finds it and does nothing twice. A denial ends the
    ticket too: a run resumed after its worker died must not ask the approvers again."""
    return find_closed_case(
        rt.ledger,
        runbook=RUNBOOK + rt.org_suffix,
        subject=subject,
        ticket=ticket,
        outcomes=("done", "rejected", "denied"),
        reason=reason,
    )


@task(name="take_onboard_inventory", cache_policy=UNCACHED)
def take_onboard_inventory(
    rt: Runtime, email: str, *, ticket: str = "", case_id: int | None = None
) -> OnboardState:
    """Read what the org and the IdP say about ``email`` and the org's projects."""
    org, idp, now = rt.org, rt.idp, rt.clock()
    member = org.get_member(email)
    emails = [m.email for m in org.list_members()]
    domains = Counter(e.rsplit("@", 1)[-1] for e in emails)
    org_domains = [d for d, n in domains.most_common(1)]
    invitation = None
    if member is not None and member.status == "pending":
        pending = require(org, Invitations, system="org", operation="list_invitations")
        mine = [i for i in pending.list_invitations() if i.email == email]
        invitation = max(mine, key=lambda i: i.sent_at) if mine else None
    # SCIM-only (real Amplitude): no projects, roles or modules by API; the console does them.
    roles_by_api = has(org, ProjectAccess)
    idp_user = idp.find_user(email)
    user_groups = [g.name for g in idp.groups_of(idp_user.id)] if idp_user else []
    idp_groups = {g.name: g.id for g in idp.list_groups() if is_mapped_idp_group(g.name)}
    invited_here = False
    # "unknown": SCIM cannot tell an invitee from a member; the case can.
    if case_id is not None and member is not None and member.status in ("pending", "unknown"):
        done = done_steps(rt.ledger, case_id)
        invited_here = any(k.startswith(f"{OnboardStepKind.INVITE.value}:") for k in done) or any(
            k.startswith(f"{OnboardStepKind.IDP_ADD_GROUP.value}:") for k in done
        )
    return OnboardState(
        subject=email,
        member=member,
        invitation=invitation,
        projects=org.list_projects() if has(org, ProjectAccess) else [],
        roles_by_api=roles_by_api,
        others=[e for e in emails if e != email],
        org_domains=org_domains,
        idp_user=idp_user,
        idp_user_groups=user_groups,
        idp_groups=idp_groups,
        invited_for_ticket=invited_here,
        taken_at=now,
    )


def _end_of(day: date) -> datetime:
    return datetime.combine(day, time(23, 59, 59), tzinfo=UTC)


@executor(OnboardStep)
def execute_onboard_step(
    rt: Runtime, step: OnboardStep, scope: StepScope
) -> tuple[WriteResult, dict[str, Any]]:
    """Do one onboarding step through the IdP, the org or the ledger (a temporary grant)."""
    org, idp = rt.org, rt.idp
    match step.params:
        case IdpCreateUser():
            result, user = idp.create_user(email=step.target)
            return result, {"id": user.id}
        case IdpAddGroup(group_id=group_id, email=email):
            found = idp.find_user(email)
            if found is None:
                raise ValueError(f"idp: no user {email} to add to {step.target}")
            return idp.add_to_group(group_id, found.id), {}
        case GrantModules(modules=modules):
            access = require(org, ModuleAccess, system="org", operation="grant_modules")
            return access.set_modules(step.target, grant=modules), {}
        case Invite() as invite:
            spec = InviteSpec(
                email=step.target,
                org_role=invite.org_role,
                projects=dict(invite.projects),
                modules=tuple(invite.modules),
                note=invite.note,
                default_project=invite.default_project,
            )
            result = rt.org_as(Inviter, "invite").invite(spec)
            return result, dict(result.detail)
        case ResendInvitation():
            invites = require(org, Invitations, system="org", operation="resend_invitation")
            result = invites.resend_invitation(step.target)
            return result, dict(result.detail)
        case RecordGrant() as record:
            return _record_grant(rt, step.target, record, ticket=scope.ticket)
        case HumanTask() as human:
            return do_human_task(rt, step, human, scope)
        case _:
            assert_never(step.params)


def _record_grant(
    rt: Runtime, subject: str, record: RecordGrant, *, ticket: str
) -> tuple[WriteResult, dict[str, Any]]:
    """The temporary access in the ledger, one grant per project role and module."""
    now, ids = rt.clock(), []
    for g in record.grants:
        project, role, module = (
            (g.project, g.role.value, None)
            if isinstance(g, TemporaryProjectRole)
            else (None, None, g.module.value)
        )
        grant = Grant(
            subject=subject,
            project=project,
            role=role,
            module=module,
            start=now,
            end=_end_of(record.until),
            ticket=ticket,
            sponsor=record.sponsor,
        )
        ids.append(record_grant(rt.ledger, grant).id)
    until = record.until.isoformat()
    return WriteResult(effect=Effect.CREATED), {"grants": ids, "until": until}


Checks = dict[str, str]


def _check(out: Checks, name: str, ok: bool, why: str = "") -> None:
    out[name] = "pass" if ok else f"fail: {why}"


@task(name="verify_onboarding", cache_policy=UNCACHED)
def verify_onboarding(rt: Runtime, plan: OnboardPlan, *, case_id: int | None = None) -> Checks:
    """Re-read the systems: check → ``pass`` or ``fail: why``; a human task of the plan →
    ``attested by …``. On a SCIM-only org roles, projects and modules cannot be read back:
    they are not checked (their task is attested), never reported as passed."""
    org, s = rt.org, plan.subject
    out: Checks = {}
    kinds = {st.kind for st in plan.steps}
    member = org.get_member(s)
    roles_by_api = has(org, ProjectAccess)
    if kinds & {OnboardStepKind.INVITE, OnboardStepKind.RESEND_INVITATION}:
        _invitation_checks(rt, plan, member, out)
    if OnboardStepKind.INVITE in kinds and roles_by_api:
        have = {g.project: g.role for g in (member.projects if member else ())}
        _check(
            out,
            "exact_project_roles",
            have == plan.projects,
            f"has { ({k: v.value for k, v in have.items()}) }",
        )
        _check(
            out,
            "exact_org_role",
            member is not None and member.org_role in (None, plan.org_role),
            f"org role {member.org_role if member else None}",
        )
        mods = set(member.modules if member else ())
        _check(
            out, "exact_modules", mods == set(plan.modules), f"has {sorted(m.value for m in mods)}"
        )
    if kinds & {OnboardStepKind.IDP_ADD_GROUP, OnboardStepKind.IDP_CREATE_USER}:
        _idp_checks(rt, plan, member, out, roles_by_api=roles_by_api)
    if OnboardStepKind.GRANT_MODULES in kinds:
        mods = set(member.modules if member else ())
        _check(out, "modules", set(plan.modules) <= mods, f"has {sorted(m.value for m in mods)}")
    if OnboardStepKind.RECORD_GRANT in kinds and plan.until:
        ends = {g.end.date().isoformat() for g in grants(rt.ledger, subject=s)}
        _check(out, "grant_recorded", plan.until in ends, "no grant with the end date")
    out.update(task_checks(rt, list(plan.steps), case_id))
    return out


def _invitation_checks(rt: Runtime, plan: OnboardPlan, member: Member | None, out: Checks) -> None:
    """The invitation is pending (or accepted); where the org cannot list invitations (SCIM),
    that the person is in the org at all."""
    if not has(rt.org, Invitations):
        _check(out, "in_org", member is not None, "the org does not have them")
        return
    pending = [i for i in rt.org.list_invitations(state="pending") if i.email == plan.subject]
    _check(
        out,
        "invitation_pending",
        bool(pending) or (member is not None and member.status == "joined"),
        "no pending invitation",
    )


def _idp_checks(
    rt: Runtime, plan: OnboardPlan, member: Member | None, out: Checks, *, roles_by_api: bool
) -> None:
    """The IdP user is active and in the mapped groups; provisioning created the member (with
    the project roles, where the org can say)."""
    user = rt.idp.find_user(plan.subject)
    _check(out, "idp_user_active", user is not None and user.active, "no active IdP user")
    names = {g.name.casefold() for g in (rt.idp.groups_of(user.id) if user else [])}
    missing = [
        st.target
        for st in plan.steps
        if st.kind is OnboardStepKind.IDP_ADD_GROUP and st.target.casefold() not in names
    ]
    _check(out, "idp_groups", not missing, f"not in {missing}")
    provisioned = member is not None and (member.idp_managed or not roles_by_api)
    _check(out, "provisioned_in_org", provisioned, "provisioning has not created the member")
    if roles_by_api:
        have = {g.project: g.role for g in (member.projects if member else ())}
        short = [p for p, r in plan.projects.items() if p not in have or have[p].rank < r.rank]
        _check(out, "project_roles", not short, f"missing {short}")


def _dm(
    rt: Runtime, email: str | None, text: str, summary: list[dict[str, Any]] | None = None
) -> None:
    if email and "@" in email:
        with contextlib.suppress(ConnectorError):
            rt.messenger.dm(email, text, summary)


@task(name="answer_not_a_request", cache_policy=UNCACHED)
def answer_not_a_request(rt: Runtime, *, ticket: str, message: str, flow_run_id: str) -> bool:
    """Say on a ticket that it is not an access request and how to file one — once per ticket
    and message (a re-run, or another run on the same ticket, says nothing twice) — and
    record it in the audit log. The ticket is not transitioned (it is somebody's Bug or Story,
    not Handover's to close) and its reporter gets no DM (they asked Handover for nothing).

    Returns:
        Whether it was said now (False: said before).
    """
    digest = hashlib.sha256(message.encode()).hexdigest()[:16]
    subject = f"ticket:{ticket}"
    if previous_outcome(rt, subject, ticket, digest) is not None:
        return False
    case = open_case(
        rt.ledger,
        runbook=RUNBOOK + rt.org_suffix,
        subject=subject,
        reason=digest,
        requester="",
        ticket=ticket,
        now=rt.clock(),
    )
    with contextlib.suppress(ConnectorError):  # the ledger keeps the record; Jira may be down
        rt.tickets.comment(ticket, message)
    append(
        rt.ledger,
        AuditEvent(
            action="onboard.not_a_request",
            subject=subject,
            target=ticket,
            effect="refused",
            after={"why": message[:2000]},
            flow_run_id=flow_run_id,
            ticket=ticket,
        ),
        now=rt.clock(),
    )
    update_case(rt.ledger, case.id, outcome="rejected", closed_at=rt.clock())
    return True


@task(name="reject_request", cache_policy=UNCACHED)
def reject_request(
    rt: Runtime,
    *,
    ticket: str,
    subject: str,
    problems: str,
    requester: str | None,
    flow_run_id: str,
) -> str:
    """An invalid request: one comment with every problem, the ticket to Rejected, a DM to the
    requester and an audit event — once per ticket and distinct problems; nothing provisioned.

    Returns:
        ``"rejected"``, or ``"nothing_to_do"`` when this very rejection was recorded before.
    """
    digest = hashlib.sha256(problems.encode()).hexdigest()[:16]
    if previous_outcome(rt, subject, ticket, digest) is not None:
        return "nothing_to_do"
    case = open_case(
        rt.ledger,
        runbook=RUNBOOK + rt.org_suffix,
        subject=subject,
        reason=digest,
        requester=requester or "",
        ticket=ticket,
        now=rt.clock(),
    )
    if ticket:
        # The ledger keeps the record; a Jira outage must not fail the run (retry re-posts).
        with contextlib.suppress(ConnectorError):
            rt.tickets.comment(ticket, problems)
            rt.tickets.transition_to(ticket, "Rejected")
    _dm(rt, requester, f"Access request {ticket or subject} was rejected:\n{problems}")
    append(
        rt.ledger,
        AuditEvent(
            action="onboard.rejected",
            subject=subject,
            target=ticket,
            effect="rejected",
            after={"problems": problems[:2000]},
            flow_run_id=flow_run_id,
            ticket=ticket,
        ),
        now=rt.clock(),
    )
    update_case(rt.ledger, case.id, outcome="rejected", closed_at=rt.clock())
    return "rejected"
