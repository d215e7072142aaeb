"""Mover plans: change one member's access (seed 002) or their email address (seed 001).

:func:`make_change_plan` is pure: the member as the org sees them (effective project roles with
their sources), the permission groups (what each grants), the projects and the request. It
plans on *effective* permissions: Amplitude grants the union (highest) of the individual grant
and every group grant, so narrowing the individual grant alone can leave a group granting more
(the group-union trap). The plan then says so and proposes leaving that group, so the effective
role really becomes the target; what else such a group gave is kept by an individual grant.

Widening steps are flagged (:attr:`ChangeStep.widening`), and :meth:`ChangePlan.approval_facts`
gives the gate what the policy matches on (production roles widened, an org role widened, the
modules added); a narrowing-only plan matches no specific rule and goes through the default one.

:func:`make_email_change_plan` is pure too: invite the new address with the same org role,
project roles, groups and modules; once it has joined (and signed in within 30 days), transfer
all content and remove the old address. Each call plans only what is left, with stable step ids,
so a re-run continues where the last one stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain.models import Email, Member, Module, PermissionGroup, Project, ProjectGrant, Role
from domain.plan import eligible
from domain.runbook import PlanStep, RunbookPlan
from domain.steps import (
    ChangeKind as ChangeKind,  # the step kinds of a change of access or email, named here too
)
from domain.steps import ChangeParams

PRODUCTION = "production"


class ChangeStep(PlanStep):
    """One step of a change of access or email; ``id`` is ``kind:target``."""

    kind: ChangeKind
    params: ChangeParams
    widening: bool = False


class ChangeRequest(BaseModel):
    """The target: per project a role (``None``: no individual grant and no group access),
    an org role, modules to add and to remove."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    email: Email
    projects: dict[str, Role | None] = Field(default_factory=dict, max_length=50)
    org_role: Role | None = None
    modules_add: tuple[Module, ...] = ()
    modules_remove: tuple[Module, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> ChangeRequest:
        if any(not p.strip() or len(p) > 200 for p in self.projects):
            raise ValueError("project names must be non-empty (at most 200 characters)")
        both = set(self.modules_add) & set(self.modules_remove)
        if both:
            raise ValueError(f"modules both added and removed: {sorted(m.value for m in both)}")
        if not (self.projects or self.org_role or self.modules_add or self.modules_remove):
            raise ValueError("nothing to change: give --project, --org-role or a module")
        return self


class ChangePlan(RunbookPlan[ChangeStep]):
    """A change of access (or of email): its steps on effective access."""

    runbook: str = "change"
    target: dict[str, str | None] = Field(default_factory=dict)  # project → effective role
    target_org_role: str | None = None
    production_projects: list[str] = Field(default_factory=list)
    project_admins: list[str] = Field(default_factory=list)  # admins of the projects concerned
    new_email: str | None = None  # email change: the new address
    waiting_for_acceptance: bool = False  # email change: the invitee has not joined yet

    def record_text(self, status: str, failed: list[str]) -> str:
        what = (
            f"Email change {self.subject} → {self.new_email}"
            if self.new_email
            else f"Access change of {self.subject}"
        )
        return "\n".join(
            [
                f"{what}: {status}.",
                f"Plan {self.hash[:12]}: "
                + (", ".join(f"{k} {n}" for k, n in sorted(self.counts_by_kind().items())) or "-"),
                *(f"Warning: {w}" for w in self.warnings),
                self.verification_line(failed),
            ]
        )

    def title(self) -> str:
        if self.new_email:
            return f"Email change {self.subject} → {self.new_email}"
        return f"Access change of {self.subject}"

    def headline(self) -> str:
        return "widens access" if self.widening else "narrows access"

    def outcome_steps(self) -> list[dict[str, Any]]:
        return self.step_rows("widening")

    @property
    def widening(self) -> bool:
        return any(s.widening for s in self.steps)

    def approval_facts(self) -> dict[str, Any]:
        """What the approval policy matches on: production roles and org role granted more
        than before, modules added (all empty for a narrowing-only plan)."""
        prod = set(self.production_projects)
        roles = sorted(
            {
                s.params["role"]
                for s in self.steps
                if s.widening
                and s.kind in (ChangeKind.SET_PROJECT_ROLE, ChangeKind.INVITE_MEMBER)
                and s.params.get("project") in prod
            }
            | {
                r
                for s in self.steps
                if s.kind is ChangeKind.INVITE_MEMBER
                for p, r in s.params.get("projects", {}).items()
                if p in prod
            }
        )
        org = next(
            (
                s.params["role"]
                for s in self.steps
                if s.widening
                and s.kind in (ChangeKind.SET_ORG_ROLE, ChangeKind.INVITE_MEMBER)
                and s.params.get("role")
            ),
            None,
        )
        mods = sorted(
            {
                m
                for s in self.steps
                if s.widening and s.kind in (ChangeKind.GRANT_MODULES, ChangeKind.INVITE_MEMBER)
                for m in s.params.get("modules", [])
            }
        )
        return {"production_roles": tuple(roles), "org_role": org, "modules": tuple(mods)}


def _rank(role: Role | None) -> int:
    return -1 if role is None else role.rank


def _member_groups(member: Member, groups: list[PermissionGroup]) -> list[PermissionGroup]:
    ids = set(member.groups)
    return sorted(
        (g for g in groups if g.id in ids or member.email in g.members),
        key=lambda g: (g.name, g.id),
    )


def _max_role(roles: list[Role]) -> Role | None:
    return max(roles, key=lambda r: r.rank) if roles else None


def _stepper(steps: list[ChangeStep]) -> Callable[..., None]:
    def add(
        kind: ChangeKind, target: str, reason: str, *, widening: bool = False, **params: Any
    ) -> None:
        steps.append(
            ChangeStep(
                id=f"{kind.value}:{target}",
                kind=kind,
                target=target,
                reason=reason,
                params=params,
                widening=widening,
            )
        )

    return add


def make_change_plan(
    member: Member | None,
    groups: list[PermissionGroup],
    projects: list[Project],
    request: ChangeRequest,
) -> ChangePlan:
    """The plan that makes ``member``'s *effective* access the request's target (pure)."""
    plan = ChangePlan(subject=request.email)
    plan.target = {p: (r.value if r else None) for p, r in sorted(request.projects.items())}
    plan.target_org_role = request.org_role.value if request.org_role else None
    by_name = {p.name: p for p in projects}
    plan.production_projects = sorted(
        p.name for p in projects if p.environment.lower() == PRODUCTION
    )
    unknown = sorted(p for p in request.projects if p not in by_name)
    if unknown:
        plan.blockers.append(f"unknown project(s): {', '.join(unknown)}")
    if member is None:
        plan.blockers.append(f"{request.email} is not a member of the org")
    if plan.blockers:
        return plan
    assert member is not None
    if member.status != "joined":
        plan.warnings.append(f"{member.email} has not accepted the invitation yet")
    steps: list[ChangeStep] = []
    add = _stepper(steps)
    mine = _member_groups(member, groups)
    eff: dict[str, ProjectGrant] = {g.project: g for g in member.projects}

    # --- which groups must go: those granting more than the target (or anything, for none) ---
    leaving: dict[str, PermissionGroup] = {}
    for project, role in sorted(request.projects.items()):
        for g in mine:
            granted = g.projects.get(project)
            if granted is not None and (role is None or granted.rank > role.rank):
                leaving[g.id] = g
    staying = [g for g in mine if g.id not in leaving]

    def group_max(project: str, among: list[PermissionGroup]) -> Role | None:
        return _max_role([g.projects[project] for g in among if project in g.projects])

    for g in leaving.values():
        granted = ", ".join(f"{p}={r.value}" for p, r in sorted(g.projects.items()))
        trapped = [
            f"{p} ({g.projects[p].value} > {r.value if r else 'none'})"
            for p, r in sorted(request.projects.items())
            if p in g.projects and (r is None or g.projects[p].rank > r.rank)
        ]
        plan.warnings.append(
            f"permission group {g.name!r} grants {granted}: the effective role is the highest "
            f"of the individual and group grants, so changing the individual grant alone would "
            f"leave {'; '.join(trapped)} — the plan removes {member.email} from the group"
        )
        if g.idp_managed:
            plan.blockers.append(
                f"permission group {g.name!r} is managed by the IdP: change the membership in "
                "the IdP (an org-side removal would be undone by the next sync)"
            )

    # --- the projects of the request -----------------------------------------------------------
    for project, role in sorted(request.projects.items()):
        cur = eff.get(project)
        cur_role = cur.role if cur else None
        individual = cur is not None and "individual" in cur.sources
        trapped = any(project in g.projects for g in leaving.values())
        if role is None:
            if individual:
                add(
                    ChangeKind.REMOVE_PROJECT_ROLE,
                    project,
                    f"no access to {project} (was {cur_role.value if cur_role else 'none'})",
                    project=project,
                )
            continue
        if cur_role == role and not trapped:
            continue
        widening = role.rank > _rank(cur_role)
        add(
            ChangeKind.SET_PROJECT_ROLE,
            project,
            f"{project}: {cur_role.value if cur_role else 'no access'} → {role.value}"
            + (" (widening)" if widening else ""),
            widening=widening,
            project=project,
            role=role.value,
        )

    # --- what a group being left also gave, outside the request: kept individually ----------
    for project in sorted({p for g in leaving.values() for p in g.projects}):
        if project in request.projects or project not in eff:
            continue
        cur = eff[project]
        all_max = group_max(project, mine)
        ind_known = "individual" in cur.sources and _rank(all_max) < cur.role.rank
        if ind_known or _rank(group_max(project, staying)) >= cur.role.rank:
            continue
        add(
            ChangeKind.SET_PROJECT_ROLE,
            project,
            f"keep {cur.role.value} in {project}, which a group being left gave",
            project=project,
            role=cur.role.value,
        )
        plan.warnings.append(
            f"leaving the group(s) would also lower {project}: an individual "
            f"{cur.role.value} grant keeps it as it is"
        )

    # --- groups last: the individual grants are in place before a group's access goes --------
    for g in leaving.values():
        add(
            ChangeKind.REMOVE_GROUP_MEMBERSHIP,
            g.id,
            f"leave permission group {g.name!r} (it grants more than the target)",
            group=g.name,
        )

    # --- org role --------------------------------------------------------------------------
    if request.org_role is not None and request.org_role != member.org_role:
        widening = request.org_role.rank > _rank(member.org_role)
        add(
            ChangeKind.SET_ORG_ROLE,
            member.email,
            f"org role {member.org_role.value if member.org_role else '?'} → "
            f"{request.org_role.value}" + (" (widening)" if widening else ""),
            widening=widening,
            role=request.org_role.value,
        )
    final_org = request.org_role or member.org_role
    if final_org is Role.ADMIN and any(
        r is not None and r is not Role.ADMIN for r in request.projects.values()
    ):
        plan.warnings.append("an org Admin has Admin in every project whatever the project role")

    # --- modules ----------------------------------------------------------------------------
    have = set(member.modules)
    grant = sorted(m.value for m in request.modules_add if m not in have)
    revoke = sorted(m.value for m in request.modules_remove if m in have)
    if grant:
        add(
            ChangeKind.GRANT_MODULES,
            member.email,
            f"add module(s) {', '.join(grant)}",
            widening=True,
            modules=grant,
        )
    if revoke:
        add(
            ChangeKind.REVOKE_MODULES,
            member.email,
            f"remove module(s) {', '.join(revoke)}",
            modules=revoke,
        )

    concerned = [
        s.params["project"]
        for s in steps
        if s.kind in (ChangeKind.SET_PROJECT_ROLE, ChangeKind.REMOVE_PROJECT_ROLE)
    ] + [p for g in leaving.values() for p in g.projects]
    plan.project_admins = sorted(
        {a for p in concerned if p in by_name for a in by_name[p].admins} - {member.email}
    )
    plan.steps = steps
    return plan


def expected_access(member: Member, groups: list[PermissionGroup]) -> dict[str, Role]:
    """The individual project roles to invite a new address with, so that with the same groups
    its effective roles equal ``member``'s: the least individual grant that does (a grant
    hidden by a group's higher one becomes Viewer)."""
    mine = _member_groups(member, groups)
    out: dict[str, Role] = {}
    for g in member.projects:
        if "individual" not in g.sources:
            continue
        gmax = _max_role([x.projects[g.project] for x in mine if g.project in x.projects])
        out[g.project] = g.role if _rank(gmax) < g.role.rank else Role.VIEWER
    return out


def make_email_change_plan(
    old: Member | None,
    new: Member | None,
    groups: list[PermissionGroup],
    projects: list[Project],
    *,
    old_email: str,
    new_email: str,
    now: datetime,
    owned_assets: int = 0,
) -> ChangePlan:
    """What is left of an email change (pure): invite → (the person accepts) → groups,
    transfer all content, remove the old address."""
    plan = ChangePlan(runbook="email_change", subject=old_email, new_email=new_email)
    plan.production_projects = sorted(
        p.name for p in projects if p.environment.lower() == PRODUCTION
    )
    if old_email == new_email:
        plan.blockers.append("the new address is the old one")
        return plan
    if old is None:
        if new is None:
            plan.blockers.append(f"{old_email} is not a member of the org")
        return plan  # nothing left to do (the old address is gone)
    if old.status != "joined":
        plan.blockers.append(f"{old_email} has not joined the org (a pending invite): revoke it")
        return plan
    steps: list[ChangeStep] = []
    add = _stepper(steps)
    mine = _member_groups(old, groups)
    individual = expected_access(old, groups)
    by_name = {p.name: p for p in projects}
    plan.project_admins = sorted(
        {a for p in individual if p in by_name for a in by_name[p].admins} - {old_email}
    )
    if new is None:
        add(
            ChangeKind.INVITE_MEMBER,
            new_email,
            f"invite {new_email} with {old_email}'s org role, project roles and modules",
            widening=True,
            role=(old.org_role or Role.VIEWER).value,
            projects={p: r.value for p, r in sorted(individual.items())},
            modules=sorted(m.value for m in old.modules),
        )
    elif new.status != "joined":
        plan.waiting_for_acceptance = True
    else:
        if new.org_role is not None and old.org_role is not None and new.org_role != old.org_role:
            add(
                ChangeKind.SET_ORG_ROLE,
                new_email,
                f"org role as {old_email}: {old.org_role.value}",
                widening=new.org_role.rank < old.org_role.rank,
                role=old.org_role.value,
            )
        have = {g.project: g for g in new.projects}
        for project, role in sorted(individual.items()):
            cur = have.get(project)
            if cur is None or "individual" not in cur.sources or cur.role.rank < role.rank:
                add(
                    ChangeKind.SET_PROJECT_ROLE,
                    f"{new_email} in {project}",
                    f"{project}: {role.value} as {old_email}",
                    widening=True,
                    email=new_email,
                    project=project,
                    role=role.value,
                )
        missing = sorted(m.value for m in set(old.modules) - set(new.modules))
        if missing:
            add(
                ChangeKind.GRANT_MODULES,
                new_email,
                f"modules as {old_email}",
                widening=True,
                modules=missing,
            )
    if new is None or new.status == "joined":
        new_groups = {g.id for g in _member_groups(new, groups)} if new else set()
        for g in mine:
            if g.id not in new_groups:
                add(
                    ChangeKind.ADD_GROUP_MEMBERSHIP,
                    g.id,
                    f"join permission group {g.name!r} as {old_email}",
                    widening=True,
                    group=g.name,
                    email=new_email,
                )
                if g.idp_managed:
                    plan.warnings.append(
                        f"permission group {g.name!r} is IdP-managed: add {new_email} in the IdP"
                    )
        add(
            ChangeKind.TRANSFER_CONTENT,
            old_email,
            f"transfer all of {old_email}'s content ({owned_assets} asset(s)) to {new_email}",
            to=new_email,
        )
        add(ChangeKind.REMOVE_MEMBER, old_email, f"remove the old address {old_email}")
        if new is not None:
            why = eligible(new, now)
            if why:
                plan.blockers.append(
                    f"{new_email} cannot receive content yet ({why}): they must sign in first"
                )
    if plan.waiting_for_acceptance:
        plan.warnings.append(
            f"{new_email} has not accepted the invitation yet: once they have joined and "
            "signed in, run the same command again to transfer the content and remove "
            f"{old_email}"
        )
    # Widening (for the policy) is about the new address's grants: facts from the invite.
    plan.steps = steps
    return plan
