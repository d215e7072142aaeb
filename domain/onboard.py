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

Least privilege: the plan grants exactly what is asked — Viewer when no org role is given, no
module unless asked — and nothing is implied: an Admin role in Staging says nothing about
Production.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from domain.models import AccessRequest, IdpUser, Invitation, Member, Module, Project, Role
from domain.plan import find_lookalikes
from domain.runbook import ApprovedPlan, PlanStep, RunbookPlan
from domain.steps import OnboardParams
from domain.steps import (
    OnboardStepKind as OnboardStepKind,  # the step kinds of an onboarding, named here too
)

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


def make_onboarding_plan(
    request: AccessRequest, state: OnboardState, *, idp_managed: bool, now: datetime
) -> OnboardPlan:
    """The plan for one access request (pure; see the module docstring)."""
    email = request.email
    plan = OnboardPlan(subject=email, ticket=request.ticket or "")
    steps: list[OnboardStep] = []
    add: Callable[..., None] = lambda kind, target, reason, **params: steps.append(  # noqa: E731
        OnboardStep(
            id=f"{kind.value}:{target}", kind=kind, target=target, reason=reason, params=params
        )
    )
    ref = f" ({request.ticket})" if request.ticket else ""

    # --- the request against the org ------------------------------------------------------------
    by_name = {p.name.casefold(): p for p in state.projects}
    projects: dict[str, Role] = {}
    for name, role in request.projects.items():
        p = by_name.get(name.strip().casefold())
        if p is None:
            known = ", ".join(sorted(q.name for q in state.projects)) or "none"
            plan.problems.append(f"project '{name}' does not exist in the org (projects: {known})")
            continue
        projects[p.name] = role
        if p.environment.casefold() == PRODUCTION:
            plan.production_projects.append(p.name)
            plan.production_roles.append(role.value)
    if request.until is not None and request.until <= now.date():
        plan.problems.append(
            f"until {request.until.isoformat()} is not after today ({now.date().isoformat()})"
        )
    plan.projects = projects
    plan.org_role = request.org_role
    plan.modules = list(dict.fromkeys(request.modules))
    plan.until = request.until.isoformat() if request.until else None

    # --- warnings -------------------------------------------------------------------------------
    lookalikes = find_lookalikes(email, state.others)
    if lookalikes:
        plan.warnings.append(
            f"look-alike accounts exist: {', '.join(lookalikes)} — check that {email} is the "
            "intended address"
        )
    domain = email.rsplit("@", 1)[-1]
    external = bool(state.org_domains) and domain not in state.org_domains
    if (external or email.startswith(VENDOR_PREFIX)) and not follows_naming(email):
        plan.warnings.append(
            f"{email} does not follow the service-account naming convention "
            "analytics-vendor-first.last@vendor: use a dedicated service account, not a "
            "personal address"
        )
    if request.org_role is Role.ADMIN:
        plan.warnings.append("org Admin requested: full control of the org (security approves)")
    if request.temporary and request.until is None:
        plan.warnings.append("labelled temporary but no 'until' date: the access will not expire")

    if plan.problems:
        plan.outcome = Outcome.INVALID
        return plan

    # --- who they are today -----------------------------------------------------------------------
    m = state.member
    if m is not None and m.status != "pending":
        role, have, mods = _member_access(m)
        diff: list[str] = []
        if role is not None and role is not request.org_role:
            diff.append(f"org role {role.value} → {request.org_role.value}")
        for p, r in projects.items():
            if have.get(p) is not r:
                diff.append(f"{p}: {have[p].value if p in have else 'none'} → {r.value}")
        missing = [mod.value for mod in plan.modules if mod not in mods]
        if missing:
            diff.append("modules + " + ", ".join(missing))
        plan.change = diff
        if diff:
            plan.outcome = Outcome.CHANGE_NEEDED
            plan.warnings.append(
                f"existing member: use change (handover change {email}): " + "; ".join(diff)
            )
        else:
            plan.outcome = Outcome.NOTHING_TO_DO
        return plan

    pending = m is not None and m.status == "pending"
    inv = state.invitation
    # A pending member the IdP provisioned is the IdP's to complete: no resend, only what the
    # groups still lack.
    idp_pending = pending and idp_managed and m is not None and m.idp_managed
    if pending and not state.invited_for_ticket and not idp_pending:
        if inv is not None and inv.state == "expired":
            plan.blockers.append(
                f"{email} has an expired invitation: revoke it (hygiene) before inviting again"
            )
            plan.outcome = Outcome.BLOCKED
            return plan
        role, have, mods = _member_access(m)  # type: ignore[arg-type]
        if role not in (None, request.org_role) or have != projects or mods != set(plan.modules):
            plan.warnings.append(
                f"the pending invitation grants other access than asked (org role "
                f"{role.value if role else '?'}, "
                f"{', '.join(f'{p} {r.value}' for p, r in have.items()) or 'no project'}): "
                "change it after it is accepted"
            )
        add(
            OnboardStepKind.RESEND_INVITATION,
            email,
            "already invited and not yet accepted: resend, never a second invitation",
        )
    elif idp_managed:
        user = state.idp_user
        if user is not None and not user.active:
            plan.blockers.append(
                f"{email} exists in the IdP but is deactivated: reactivate on purpose, not "
                "through onboarding"
            )
            plan.outcome = Outcome.BLOCKED
            return plan
        if user is None:
            add(
                OnboardStepKind.IDP_CREATE_USER,
                email,
                "pre-provision the account in the IdP (SSO org)" + ref,
            )
        wanted = [(org_group(request.org_role), f"org role {request.org_role.value}")]
        wanted += [(project_group(p, r), f"{r.value} in {p}") for p, r in projects.items()]
        have_groups = {g.casefold() for g in state.idp_user_groups}
        known = {k.casefold(): (k, v) for k, v in state.idp_groups.items()}
        for group, what in wanted:
            if group.casefold() in have_groups:
                continue
            if group.casefold() not in known:
                plan.blockers.append(
                    f"the IdP has no group {group} (maps to {what}): create it in the IdP first"
                )
                continue
            name, gid = known[group.casefold()]
            add(
                OnboardStepKind.IDP_ADD_GROUP,
                name,
                f"mapped group: {what} (provisioning creates the member)",
                group_id=gid,
                email=email,
            )
        if plan.modules:
            add(
                OnboardStepKind.GRANT_MODULES,
                email,
                "modules asked for (no IdP group maps modules)",
                modules=[mod.value for mod in plan.modules],
            )
    else:
        add(
            OnboardStepKind.INVITE,
            email,
            "invite with exactly the roles and modules asked" + ref,
            org_role=request.org_role.value,
            projects={p: r.value for p, r in projects.items()},
            modules=[mod.value for mod in plan.modules],
            default_project=next(iter(projects), None),
            note=invite_note(request),
        )
    if plan.blockers:
        plan.outcome = Outcome.BLOCKED
        return plan
    if request.until is not None:
        grants: list[dict[str, str]] = [
            {"project": p, "role": r.value} for p, r in projects.items()
        ]
        grants += [{"module": mod.value} for mod in plan.modules]
        add(
            OnboardStepKind.RECORD_GRANT,
            email,
            f"temporary access until {request.until.isoformat()} (the expiry sweep removes it)",
            until=request.until.isoformat(),
            grants=grants,
            sponsor=request.requester or "",
        )
    plan.steps = steps
    plan.outcome = Outcome.READY if steps else Outcome.NOTHING_TO_DO
    return plan
