"""Onboarding plans (seed 003, "Invite the Service Account"): what Handover will do to give one
person the access an access request asks for, as typed steps with reasons.

:func:`make_onboarding_plan` is a pure function of the request, the state of the org and the
IdP read just before (:class:`OnboardState`), whether the org is IdP-managed and the time; it
does no I/O, so it is tested as a table of cases. Like the offboarding plan it has a stable
hash: approvers approve that hash.

What the plan checks against the org (each a *problem*: the request is refused, nothing is
provisioned): every project exists; ``until`` is in the future. What it only warns about:
look-alikes of existing accounts, an external address that does not follow the service-account
naming convention (``analytics-vendor-first.last@vendor``), an org Admin role, a pending
invitation that grants something else than the request.

Outcomes:

- an existing (joined) member → ``change_needed``: onboarding never re-invites; the plan says
  what differs, for ``handover change``. Same access already → ``nothing_to_do``.
- a pending invitation → ``resend_invitation``, never a duplicate invite (unless the invitation
  was this very request's, sent by an earlier run of it: then the same ``invite`` step is
  planned again, so the re-plan has the same hash and the case skips it);
- otherwise, IdP-managed: ``idp_create_user`` then ``idp_add_group`` for each mapped group
  (``amplitude-org-<role>s``, ``amplitude-project-<role>s-<project>``) and, when modules are
  asked, ``grant_modules`` once provisioning has created the member; not IdP-managed:
  ``invite`` with the org role, per-project roles, modules, the default project and a note
  (ticket, SOW, end date, justification);
- ``record_grant`` when the access is temporary (``until``).

On a SCIM-only org (real Amplitude, ``OnboardState.roles_by_api`` False) the invitation carries
the email only: a ``human_task`` after it asks a person to set the org role, project roles and
modules in the console (and to check the project names, which the org cannot list); every
project asked counts as production for the approval, since its environment cannot be read.

Least privilege: the plan grants exactly what is asked — Viewer when no org role is given, no
module unless asked — and nothing is implied: an Admin role in Staging says nothing about
Production.

The planner is a short sequence of named rules, each a small pure function with its own table
of cases (``tests/domain/test_onboard_rules.py``): the request against the org
(:func:`canonical_projects`, :func:`until_problems`, :func:`request_warnings`), an existing
member (:func:`existing_member_plan`), then one way of provisioning (:func:`provisioning`:
:func:`resend_path`, :func:`idp_path` or :func:`invite_step`) and :func:`record_grant_steps`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from domain.models import AccessRequest, IdpUser, Invitation, Member, Module, Project, Role
from domain.plan import find_lookalikes
from domain.runbook import ApprovedPlan, PlanStep, RunbookPlan
from domain.steps import (
    GrantModules,
    HumanTask,
    IdpAddGroup,
    IdpCreateUser,
    Invite,
    OnboardParams,
    RecordGrant,
    ResendInvitation,
    TemporaryModule,
    TemporaryProjectRole,
)
from domain.steps import (
    OnboardStepKind as OnboardStepKind,  # the step kinds of an onboarding, named here too
)
from domain.tasks import set_access_task

PRODUCTION = "production"
VENDOR_PREFIX = "analytics-vendor-"
# analytics-vendor-first.last@vendor.tld (letters, hyphens inside names)
SERVICE_ACCOUNT = re.compile(r"^analytics-vendor-[a-z]+(?:-[a-z]+)*\.[a-z]+(?:-[a-z]+)*@[^@]+$")


class Outcome(StrEnum):
    """What the plan amounts to (the flow's status when it does not run steps)."""

    READY = "ready"  # steps to apply
    NOTHING_TO_DO = "nothing_to_do"
    CHANGE_NEEDED = "change_needed"  # an existing member: handover change
    INVALID = "invalid"  # problems with the request: refused, nothing provisioned
    BLOCKED = "blocked"  # the world must change first (e.g. a missing IdP group)


class OnboardStep(PlanStep):
    """One step of an onboarding."""

    kind: OnboardStepKind
    params: OnboardParams


class OnboardState(BaseModel):
    """What the systems say, read just before planning."""

    model_config = ConfigDict(extra="forbid")

    subject: str
    member: Member | None = None  # joined or pending
    invitation: Invitation | None = None  # the subject's latest invitation, if any
    projects: list[Project] = Field(default_factory=list)  # every project of the org
    others: list[str] = Field(default_factory=list)  # every other account's email
    org_domains: list[str] = Field(default_factory=list)  # the org's own email domains
    idp_user: IdpUser | None = None
    idp_user_groups: list[str] = Field(default_factory=list)  # names of the user's IdP groups
    idp_groups: dict[str, str] = Field(default_factory=dict)  # mapped IdP group name → id
    invited_for_ticket: bool = False  # the pending invitation is this request's own
    # False on a SCIM-only org (real Amplitude): its projects, roles and modules are read and
    # set in the console only, so a person sets them (a human task) and checks the names.
    roles_by_api: bool = True
    taken_at: datetime


class OnboardPlan(RunbookPlan[OnboardStep]):
    """An onboarding plan: its steps, or why there are none (``outcome``)."""

    runbook: str = "onboard"
    ticket: str = ""
    outcome: Outcome = Outcome.READY
    problems: list[str] = Field(default_factory=list)  # the request is wrong (→ invalid)
    change: list[str] = Field(default_factory=list)  # change_needed: what differs
    projects: dict[str, Role] = Field(default_factory=dict)  # canonical names
    org_role: Role = Role.VIEWER
    modules: list[Module] = Field(default_factory=list)
    production_roles: list[str] = Field(default_factory=list)  # roles asked in production
    production_projects: list[str] = Field(default_factory=list)
    until: str | None = None  # ISO date

    def hash_facts(self) -> dict[str, Any]:
        return {"outcome": self.outcome.value, "problems": self.problems}

    @property
    def is_noop(self) -> bool:
        return not self.steps

    def record_text(self, status: str, failed: list[str]) -> str:
        kinds = {s.kind for s in self.steps}
        how = (
            "invitation resent"
            if kinds == {OnboardStepKind.RESEND_INVITATION}
            or kinds == {OnboardStepKind.RESEND_INVITATION, OnboardStepKind.RECORD_GRANT}
            else "provisioned through the IdP"
            if OnboardStepKind.IDP_ADD_GROUP in kinds or OnboardStepKind.IDP_CREATE_USER in kinds
            else "invited"
        )
        lines = [
            f"Onboarding of {self.subject}: {status} ({how}).",
            f"Granted: {self.granted_text()}."
            if status == "done"
            else f"Asked: {self.granted_text()}.",
            "Access is temporary: it will be removed after " + self.until + "."
            if self.until
            else "Access is not time-limited.",
            self.plan_line(),
            self.verification_line(failed),
        ]
        return "\n".join(lines + [f"Warning: {w}" for w in self.warnings])

    def record_facts(self) -> dict[str, Any]:
        return {"granted": self.granted_text()}

    def title(self) -> str:
        return f"Onboarding {self.subject}"

    def headline(self) -> str:
        return f"Granted: {self.granted_text()}"

    def approved(self, approvers: list[str], **standing: str) -> ApprovedPlan:
        # No step list: a re-plan is covered only by the very same plan (its hash), since an
        # invite's id does not change with the roles it grants.
        return ApprovedPlan(hash=self.hash, approvers=approvers, **standing)

    def outcome_blockers(self) -> list[str]:
        return self.problems + self.blockers

    def outcome_facts(self) -> dict[str, Any]:
        return {"subject": self.subject, "granted": self.granted_text()}

    def granted_text(self) -> str:
        """What the plan grants, for people: ``org member; Staging manager, Production viewer;
        modules govern; until 2026-12-01``."""
        parts = [f"org role {self.org_role.value}"]
        parts.append(", ".join(f"{p} {r.value}" for p, r in self.projects.items()) or "no project")
        parts.append("modules " + (", ".join(m.value for m in self.modules) or "none"))
        if self.until:
            parts.append(f"until {self.until}")
        return "; ".join(parts)


def approving_admins(projects: Iterable[Project], *choices: Iterable[str]) -> tuple[str, ...]:
    """The admins of the first of ``choices`` (lists of project names) whose projects have
    any: the production projects asked for, else every project asked for."""
    by_name = {p.name: p for p in projects}
    for names in choices:
        found = tuple(dict.fromkeys(a for n in names if n in by_name for a in by_name[n].admins))
        if found:
            return found
    return ()


def org_group(role: Role) -> str:
    """The IdP group that maps to an org role (sandbox/org/provisioning.py)."""
    return f"amplitude-org-{role.value}s"


def project_group(project: str, role: Role) -> str:
    """The IdP group that maps to a role in a project."""
    return f"amplitude-project-{role.value}s-{project.strip().lower()}"


def follows_naming(email: str) -> bool:
    """Does ``email`` follow the service-account convention ``analytics-vendor-first.last@…``?"""
    return bool(SERVICE_ACCOUNT.match(email.strip().lower()))


def invite_note(request: AccessRequest) -> str:
    """The invitation's note (seed 003 step 6): ticket, SOW, end date, purpose."""
    parts = []
    if request.ticket:
        parts.append(f"ticket {request.ticket}")
    if request.sow:
        parts.append(request.sow)
    parts.append(f"access until {request.until.isoformat()}" if request.until else "permanent")
    if request.justification:
        parts.append(request.justification)
    return "; ".join(parts)[:500]


def _member_access(m: Member) -> tuple[Role | None, dict[str, Role], set[Module]]:
    return m.org_role, {g.project: g.role for g in m.projects}, set(m.modules)


# --- the rules -----------------------------------------------------------------------------------
# Each rule is a small pure function; make_onboarding_plan runs them in order.


def _project_named(state: OnboardState, name: str) -> Project | None:
    """The org's project called ``name`` (case and surrounding spaces aside)."""
    by_name = {p.name.casefold(): p for p in state.projects}
    return by_name.get(name.strip().casefold())


def canonical_projects(
    request: AccessRequest, state: OnboardState
) -> tuple[dict[str, Role], list[str]]:
    """The roles asked, by the org's own project names, and a problem for each project the org
    does not have."""
    projects: dict[str, Role] = {}
    problems: list[str] = []
    if not state.roles_by_api:  # unknown here: the console task checks the names
        return {name.strip(): role for name, role in request.projects.items()}, []
    for name, role in request.projects.items():
        p = _project_named(state, name)
        if p is None:
            known = ", ".join(sorted(q.name for q in state.projects)) or "none"
            problems.append(f"project '{name}' does not exist in the org (projects: {known})")
        else:
            projects[p.name] = role
    return projects, problems


def production_asks(request: AccessRequest, state: OnboardState) -> tuple[list[str], list[str]]:
    """The production projects asked and the roles asked there (what the policy matches on).
    Where the org cannot say a project's environment, every project counts as production:
    asking one approver too many is the safe side."""
    if not state.roles_by_api:
        names = [name.strip() for name in request.projects]
        return names, [role.value for role in request.projects.values()]
    asks = [
        (p.name, role.value)
        for name, role in request.projects.items()
        if (p := _project_named(state, name)) is not None and p.environment.casefold() == PRODUCTION
    ]
    return [p for p, _ in asks], [r for _, r in asks]


def until_problems(request: AccessRequest, now: datetime) -> list[str]:
    """An end date that is not in the future."""
    if request.until is None or request.until > now.date():
        return []
    return [f"until {request.until.isoformat()} is not after today ({now.date().isoformat()})"]


def request_warnings(request: AccessRequest, state: OnboardState) -> list[str]:
    """Look-alikes, a personal address for a vendor, an org Admin, temporary with no end."""
    email, warnings = request.email, []
    lookalikes = find_lookalikes(email, state.others)
    if lookalikes:
        warnings.append(
            f"look-alike accounts exist: {', '.join(lookalikes)} — check that {email} is the "
            "intended address"
        )
    domain = email.rsplit("@", 1)[-1]
    external = bool(state.org_domains) and domain not in state.org_domains
    if (external or email.startswith(VENDOR_PREFIX)) and not follows_naming(email):
        warnings.append(
            f"{email} does not follow the service-account naming convention "
            "analytics-vendor-first.last@vendor: use a dedicated service account, not a "
            "personal address"
        )
    if request.org_role is Role.ADMIN:
        warnings.append("org Admin requested: full control of the org (security approves)")
    if request.temporary and request.until is None:
        warnings.append("labelled temporary but no 'until' date: the access will not expire")
    if not state.roles_by_api and request.projects:
        warnings.append(
            "this org offers SCIM only: its projects and their environments cannot be read, so "
            "every project asked counts as production, and a person sets the roles in the "
            "console (a task)"
        )
    return warnings


def member_diff(plan: OnboardPlan, m: Member) -> list[str]:
    """What an existing member lacks of the plan's access (for ``handover change``)."""
    role, have, mods = _member_access(m)
    diff: list[str] = []
    if role is not None and role is not plan.org_role:
        diff.append(f"org role {role.value} → {plan.org_role.value}")
    for p, r in plan.projects.items():
        if have.get(p) is not r:
            diff.append(f"{p}: {have[p].value if p in have else 'none'} → {r.value}")
    missing = [mod.value for mod in plan.modules if mod not in mods]
    if missing:
        diff.append("modules + " + ", ".join(missing))
    return diff


def existing_member_plan(plan: OnboardPlan, m: Member, *, roles_known: bool) -> OnboardPlan:
    """A joined member is never invited again: what differs is for ``handover change``. Where
    the org cannot say their roles (SCIM), nothing is claimed about what differs."""
    diff = (
        member_diff(plan, m)
        if roles_known
        else ["already in the org; their roles cannot be read by API: compare in the console"]
    )
    if not diff:
        return plan.model_copy(update={"change": [], "outcome": Outcome.NOTHING_TO_DO})
    warning = f"existing member: use change (handover change {plan.subject}): " + "; ".join(diff)
    return plan.model_copy(
        update={
            "change": diff,
            "outcome": Outcome.CHANGE_NEEDED,
            "warnings": [*plan.warnings, warning],
        }
    )


@dataclass(frozen=True)
class Provisioning:
    """What one way of provisioning plans: its steps, warnings and blockers."""

    steps: list[OnboardStep]
    warnings: list[str] = field(default_factory=list)
    blockers: list[str] = field(default_factory=list)


def resend_path(plan: OnboardPlan, m: Member, *, state: OnboardState) -> Provisioning:
    """A pending invitation (not this request's): resent, never a second one; an expired one
    must be revoked first."""
    inv = state.invitation
    if inv is not None and inv.state == "expired":
        return Provisioning(
            [],
            blockers=[
                f"{plan.subject} has an expired invitation: revoke it (hygiene) before "
                "inviting again"
            ],
        )
    role, have, mods = _member_access(m)
    warnings = []
    if role not in (None, plan.org_role) or have != plan.projects or mods != set(plan.modules):
        warnings.append(
            f"the pending invitation grants other access than asked (org role "
            f"{role.value if role else '?'}, "
            f"{', '.join(f'{p} {r.value}' for p, r in have.items()) or 'no project'}): "
            "change it after it is accepted"
        )
    resend = OnboardStep.of(
        ResendInvitation(),
        plan.subject,
        reason="already invited and not yet accepted: resend, never a second invitation",
    )
    return Provisioning([resend], warnings)


def wanted_groups(plan: OnboardPlan) -> list[tuple[str, str]]:
    """The mapped IdP groups that give the plan's access, with what each maps to."""
    wanted = [(org_group(plan.org_role), f"org role {plan.org_role.value}")]
    wanted += [(project_group(p, r), f"{r.value} in {p}") for p, r in plan.projects.items()]
    return wanted


def idp_group_steps(plan: OnboardPlan, state: OnboardState) -> Provisioning:
    """Into each wanted IdP group the user is not in yet; a blocker for a group the IdP lacks."""
    have = {g.casefold() for g in state.idp_user_groups}
    known = {k.casefold(): (k, v) for k, v in state.idp_groups.items()}
    steps: list[OnboardStep] = []
    blockers: list[str] = []
    for group, what in wanted_groups(plan):
        if group.casefold() in have:
            continue
        if group.casefold() not in known:
            blockers.append(
                f"the IdP has no group {group} (maps to {what}): create it in the IdP first"
            )
            continue
        name, gid = known[group.casefold()]
        steps.append(
            OnboardStep.of(
                IdpAddGroup(group_id=gid, email=plan.subject),
                name,
                reason=f"mapped group: {what} (provisioning creates the member)",
            )
        )
    return Provisioning(steps, blockers=blockers)


def idp_path(plan: OnboardPlan, state: OnboardState, *, ref: str) -> Provisioning:
    """IdP-managed: the IdP user (created if need be), its mapped groups, then the modules (no
    IdP group maps them); a deactivated IdP user is reactivated on purpose, not here."""
    user = state.idp_user
    if user is not None and not user.active:
        return Provisioning(
            [],
            blockers=[
                f"{plan.subject} exists in the IdP but is deactivated: reactivate on purpose, "
                "not through onboarding"
            ],
        )
    steps: list[OnboardStep] = []
    if user is None:
        reason = "pre-provision the account in the IdP (SSO org)" + ref
        steps.append(OnboardStep.of(IdpCreateUser(), plan.subject, reason=reason))
    groups = idp_group_steps(plan, state)
    steps += groups.steps
    if plan.modules and not state.roles_by_api:
        task = set_access_task(
            plan.subject,
            org_role=plan.org_role.value,
            projects={},
            modules=[m.value for m in plan.modules],
            invited=False,
        )
        steps.append(_console(task, plan.subject, "modules asked for: the org has no API"))
    elif plan.modules:
        steps.append(
            OnboardStep.of(
                GrantModules(modules=plan.modules),
                plan.subject,
                reason="modules asked for (no IdP group maps modules)",
            )
        )
    return Provisioning(steps, blockers=groups.blockers)


def invite_step(plan: OnboardPlan, request: AccessRequest, *, ref: str) -> OnboardStep:
    """Not IdP-managed: one invitation with exactly the roles and modules asked, and a note."""
    invite = Invite(
        org_role=plan.org_role,
        projects=dict(plan.projects),
        modules=plan.modules,
        default_project=next(iter(plan.projects), None),
        note=invite_note(request),
    )
    return OnboardStep.of(
        invite, plan.subject, reason="invite with exactly the roles and modules asked" + ref
    )


def _console(task: HumanTask, subject: str, why: str) -> OnboardStep:
    return OnboardStep.of(task, f"{task.task.value}:{subject}", reason=f"{why} (a person does it)")


def console_access_steps(plan: OnboardPlan, state: OnboardState) -> list[OnboardStep]:
    """On a SCIM-only org an invitation carries the email only (a Viewer with nothing): the
    roles, projects and modules asked are a person's task in the console, after the invite."""
    asks_more = plan.org_role is not Role.VIEWER or plan.projects or plan.modules
    if state.roles_by_api or not asks_more:
        return []
    task = set_access_task(
        plan.subject,
        org_role=plan.org_role.value,
        projects={p: r.value for p, r in plan.projects.items()},
        modules=[m.value for m in plan.modules],
        invited=True,
    )
    return [_console(task, plan.subject, "roles, projects and modules: SCIM cannot set them")]


def record_grant_steps(plan: OnboardPlan, request: AccessRequest) -> list[OnboardStep]:
    """Temporary access: recorded in the ledger, for the expiry sweep to take back."""
    if request.until is None:
        return []
    grants: list[TemporaryProjectRole | TemporaryModule] = [
        TemporaryProjectRole(project=p, role=r) for p, r in plan.projects.items()
    ]
    grants += [TemporaryModule(module=mod) for mod in plan.modules]
    record = RecordGrant(until=request.until, grants=grants, sponsor=request.requester or "")
    reason = f"temporary access until {request.until.isoformat()} (the expiry sweep removes it)"
    return [OnboardStep.of(record, plan.subject, reason=reason)]


def provisioning(
    plan: OnboardPlan, request: AccessRequest, *, state: OnboardState, idp_managed: bool
) -> Provisioning:
    """How someone who is not a joined member gets the access: a resend of their pending
    invitation, the IdP's groups, or an invitation. A pending member the IdP provisioned is the
    IdP's to complete (only what the groups still lack); a pending invitation this very
    request sent is planned again as the same invite (same hash: the case skips it)."""
    ref = f" ({request.ticket})" if request.ticket else ""
    m = state.member
    if (
        m is not None
        and m.status == "pending"
        and not state.invited_for_ticket
        and not (idp_managed and m.idp_managed)
    ):
        return resend_path(plan, m, state=state)
    if idp_managed:
        return idp_path(plan, state, ref=ref)
    return Provisioning([invite_step(plan, request, ref=ref), *console_access_steps(plan, state)])


def make_onboarding_plan(
    request: AccessRequest, state: OnboardState, *, idp_managed: bool, now: datetime
) -> OnboardPlan:
    """The plan for one access request (pure; see the module docstring)."""
    projects, problems = canonical_projects(request, state)
    production_projects, production_roles = production_asks(request, state)
    plan = OnboardPlan(
        subject=request.email,
        ticket=request.ticket or "",
        problems=problems + until_problems(request, now),
        projects=projects,
        org_role=request.org_role,
        modules=list(dict.fromkeys(request.modules)),
        production_projects=production_projects,
        production_roles=production_roles,
        until=request.until.isoformat() if request.until else None,
        warnings=request_warnings(request, state),
    )
    if plan.problems:
        return plan.model_copy(update={"outcome": Outcome.INVALID})
    member = state.member
    if member is not None and member.status != "pending" and not state.invited_for_ticket:
        return existing_member_plan(plan, member, roles_known=state.roles_by_api)
    path = provisioning(plan, request, state=state, idp_managed=idp_managed)
    warnings = [*plan.warnings, *path.warnings]
    if path.blockers:
        update = {"warnings": warnings, "blockers": path.blockers, "outcome": Outcome.BLOCKED}
        return plan.model_copy(update=update)
    steps = path.steps + record_grant_steps(plan, request)
    outcome = Outcome.READY if steps else Outcome.NOTHING_TO_DO
    return plan.model_copy(update={"warnings": warnings, "steps": steps, "outcome": outcome})
