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
all content, take the old address out of the mapped IdP groups that provision it (IdP first),
and remove the old address. Each call plans only what is left, with stable step ids,
so a re-run continues where the last one stopped.

Both planners are short sequences of named rules, each a small pure function with its own
table of cases (``tests/domain/test_change_rules.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from domain.models import (
    Email,
    IdpGroup,
    Member,
    Module,
    PermissionGroup,
    Project,
    ProjectGrant,
    Role,
)
from domain.onboard import org_group
from domain.plan import eligible, is_mapped_idp_group
from domain.runbook import PlanStep, RunbookPlan
from domain.steps import (
    AddGroupMembership,
    ChangeParams,
    GrantModules,
    IdpAddGroup,
    InviteMember,
    RemoveGroupMembership,
    RemoveIdpGroup,
    RemoveMember,
    RemoveProjectRole,
    RevokeModules,
    SetOrgRole,
    SetProjectRole,
    TransferContent,
)
from domain.steps import (
    ChangeKind as ChangeKind,  # the step kinds of a change of access or email, named here too
)
from domain.tasks import change_access_task, copy_access_task, move_content_task

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


class IdpView(BaseModel):
    """What the IdP says of an IdP-managed member: their IdP user, the groups they are in and
    every mapped (``amplitude-…``) group the IdP has, by name (each with its id)."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    groups: dict[str, str] = Field(default_factory=dict)  # the user's groups: name → id
    mapped: dict[str, str] = Field(default_factory=dict)  # the IdP's mapped groups: name → id

    def group_id(self, name: str, *, mine: bool = False) -> str | None:
        """The id of the group ``name`` (case-insensitive): one the user is in (``mine``), or
        any mapped group of the IdP."""
        where = self.groups if mine else self.mapped
        return next((i for n, i in where.items() if n.casefold() == name.casefold()), None)


def org_group_role(name: str) -> Role | None:
    """The org role an IdP group maps to (``amplitude-org-<role>s``), if it is an org group."""
    m = re.fullmatch(r"amplitude-org-(admin|manager|member|viewer)s", name.casefold())
    return Role(m.group(1)) if m else None


class ChangePlan(RunbookPlan[ChangeStep]):
    """A change of access (or of email): its steps on effective access."""

    runbook: str = "change"
    target: dict[str, str | None] = Field(default_factory=dict)  # project → effective role
    target_org_role: str | None = None
    production_projects: list[str] = Field(default_factory=list)
    project_admins: list[str] = Field(default_factory=list)  # admins of the projects concerned
    new_email: str | None = None  # email change: the new address
    waiting_for_acceptance: bool = False  # email change: the invitee has not joined yet
    roles_by_api: bool = True  # False: a SCIM-only org, where a person changes roles
    modules_added: list[str] = Field(default_factory=list)  # asked (console plans only)

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
        than before, modules added (all empty for a narrowing-only plan). Where roles cannot be
        read (``roles_by_api`` False), every role asked counts as granted in production and the
        org role asked as widened: one approver too many is the safe side."""
        if not self.roles_by_api:
            return {
                "production_roles": tuple(sorted({r for r in self.target.values() if r})),
                "org_role": self.target_org_role,
                "modules": tuple(sorted(self.modules_added)),
            }
        prod = set(self.production_projects)
        roles: set[str] = set()
        org_roles: list[str] = []
        modules: set[str] = set()
        for s in self.steps:
            match s.params:
                case SetProjectRole(project=project, role=role):
                    if s.widening and project in prod:
                        roles.add(role.value)
                case SetOrgRole(role=role):
                    if s.widening:
                        org_roles.append(role.value)
                case IdpAddGroup():
                    if s.widening and (via := org_group_role(s.target)) is not None:
                        org_roles.append(via.value)
                case GrantModules(modules=mods):
                    if s.widening:
                        modules.update(m.value for m in mods)
                case InviteMember(role=role, projects=projects, modules=mods):
                    roles.update(r.value for p, r in projects.items() if p in prod)
                    if s.widening:
                        org_roles.append(role.value)
                        modules.update(m.value for m in mods)
        return {
            "production_roles": tuple(sorted(roles)),
            "org_role": org_roles[0] if org_roles else None,
            "modules": tuple(sorted(modules)),
        }


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


def _group_max(project: str, groups: Iterable[PermissionGroup]) -> Role | None:
    """The highest role ``groups`` grant in ``project``."""
    return _max_role([g.projects[project] for g in groups if project in g.projects])


def _widening(text: str, widening: bool) -> str:
    return text + (" (widening)" if widening else "")


def production_projects(projects: list[Project]) -> list[str]:
    """The org's production projects, by name."""
    return sorted(p.name for p in projects if p.environment.lower() == PRODUCTION)


def admins_of(names: Iterable[str], projects: list[Project], *, besides: str) -> list[str]:
    """The admins of the projects ``names`` (but ``besides``), by email."""
    by_name = {p.name: p for p in projects}
    return sorted({a for n in names if n in by_name for a in by_name[n].admins} - {besides})


# --- change of access: the rules -----------------------------------------------------------------
# Each rule is a small pure function; make_change_plan runs them in order.


def change_blockers(
    member: Member | None, request: ChangeRequest, *, projects: list[Project]
) -> list[str]:
    """Projects the org does not have; a person who is not a member."""
    names = {p.name for p in projects}
    unknown = sorted(p for p in request.projects if p not in names)
    blockers = [f"unknown project(s): {', '.join(unknown)}"] if unknown else []
    if member is None:
        blockers.append(f"{request.email} is not a member of the org")
    return blockers


def pending_warnings(member: Member) -> list[str]:
    """A change of someone who has not accepted their invitation yet."""
    if member.status == "joined":
        return []
    return [f"{member.email} has not accepted the invitation yet"]


def groups_to_leave(
    mine: list[PermissionGroup], request: ChangeRequest
) -> dict[str, PermissionGroup]:
    """The member's groups that grant more than the target in a project of the request (or
    anything, where the target is no access), by id, in the order they are found."""
    leaving: dict[str, PermissionGroup] = {}
    for project, role in sorted(request.projects.items()):
        for g in mine:
            granted = g.projects.get(project)
            if granted is not None and (role is None or granted.rank > role.rank):
                leaving[g.id] = g
    return leaving


def group_union_findings(
    member: Member,
    request: ChangeRequest,
    *,
    leaving: dict[str, PermissionGroup],
    idp: IdpView | None = None,
) -> tuple[list[str], list[str]]:
    """The group-union trap, per group being left: a warning (what it would leave in place)
    and, for an IdP-managed group the person's IdP user is not in (``idp``), a blocker (the
    IdP must change the membership; :func:`leave_group_steps` leaves the others in the IdP)."""
    warnings: list[str] = []
    blockers: list[str] = []
    for g in leaving.values():
        granted = ", ".join(f"{p}={r.value}" for p, r in sorted(g.projects.items()))
        trapped = [
            f"{p} ({g.projects[p].value} > {r.value if r else 'none'})"
            for p, r in sorted(request.projects.items())
            if p in g.projects and (r is None or g.projects[p].rank > r.rank)
        ]
        warnings.append(
            f"permission group {g.name!r} grants {granted}: the effective role is the highest "
            f"of the individual and group grants, so changing the individual grant alone would "
            f"leave {'; '.join(trapped)} — the plan removes {member.email} from the group"
        )
        if g.idp_managed and (idp is None or idp.group_id(g.name, mine=True) is None):
            blockers.append(
                f"permission group {g.name!r} is managed by the IdP: change the membership in "
                "the IdP (an org-side removal would be undone by the next sync)"
            )
    return warnings, blockers


def project_step(
    project: str, role: Role | None, *, cur: ProjectGrant | None, trapped: bool
) -> ChangeStep | None:
    """The step that makes ``project``'s individual grant the target ``role`` (None: remove it),
    if any; a project a group being left grants is set even at the same role."""
    cur_role = cur.role if cur else None
    if role is None:
        if cur is None or "individual" not in cur.sources:
            return None
        was = cur_role.value if cur_role else "none"
        reason = f"no access to {project} (was {was})"
        return ChangeStep.of(RemoveProjectRole(project=project), project, reason=reason)
    if cur_role == role and not trapped:
        return None
    widening = role.rank > _rank(cur_role)
    reason = f"{project}: {cur_role.value if cur_role else 'no access'} → {role.value}"
    return ChangeStep.of(
        SetProjectRole(project=project, role=role),
        project,
        reason=_widening(reason, widening),
        widening=widening,
    )


def requested_project_steps(
    member: Member, request: ChangeRequest, *, leaving: dict[str, PermissionGroup]
) -> list[ChangeStep]:
    """One step per project of the request whose individual grant must change."""
    eff = {g.project: g for g in member.projects}
    steps = [
        project_step(
            project,
            role,
            cur=eff.get(project),
            trapped=any(project in g.projects for g in leaving.values()),
        )
        for project, role in sorted(request.projects.items())
    ]
    return [s for s in steps if s is not None]


def kept_by_individual_grant(
    member: Member,
    request: ChangeRequest,
    *,
    mine: list[PermissionGroup],
    leaving: dict[str, PermissionGroup],
) -> tuple[list[ChangeStep], list[str]]:
    """What a group being left also gave outside the request, kept by an individual grant
    (unless the individual grant or a staying group already keeps it), with a warning."""
    eff = {g.project: g for g in member.projects}
    staying = [g for g in mine if g.id not in leaving]
    steps: list[ChangeStep] = []
    warnings: list[str] = []
    for project in sorted({p for g in leaving.values() for p in g.projects}):
        cur = eff.get(project)
        if project in request.projects or cur is None:
            continue
        ind_known = "individual" in cur.sources and _rank(_group_max(project, mine)) < cur.role.rank
        if ind_known or _rank(_group_max(project, staying)) >= cur.role.rank:
            continue
        steps.append(
            ChangeStep.of(
                SetProjectRole(project=project, role=cur.role),
                project,
                reason=f"keep {cur.role.value} in {project}, which a group being left gave",
            )
        )
        warnings.append(
            f"leaving the group(s) would also lower {project}: an individual "
            f"{cur.role.value} grant keeps it as it is"
        )
    return steps, warnings


def leave_group_steps(
    leaving: dict[str, PermissionGroup], *, idp: IdpView | None = None
) -> list[ChangeStep]:
    """Groups last: the individual grants are in place before a group's access goes. A group
    the IdP pushes is left in the IdP (the IdP wins, seed 003: an org-side removal would be
    undone by the next sync)."""
    steps: list[ChangeStep] = []
    for g in leaving.values():
        in_idp = idp.group_id(g.name, mine=True) if idp is not None and g.idp_managed else None
        if idp is not None and in_idp is not None:
            steps.append(
                ChangeStep.of(
                    RemoveIdpGroup(group=g.name, user_id=idp.user_id),
                    in_idp,
                    reason=f"leave IdP group {g.name!r} in the IdP (it grants more than the "
                    "target; the IdP pushes it)",
                )
            )
            continue
        steps.append(
            ChangeStep.of(
                RemoveGroupMembership(group=g.name),
                g.id,
                reason=f"leave permission group {g.name!r} (it grants more than the target)",
            )
        )
    return steps


def org_role_steps(member: Member, request: ChangeRequest) -> list[ChangeStep]:
    """The org role, when the request names another one."""
    role = request.org_role
    if role is None or role == member.org_role:
        return []
    widening = role.rank > _rank(member.org_role)
    was = member.org_role.value if member.org_role else "?"
    return [
        ChangeStep.of(
            SetOrgRole(role=role),
            member.email,
            reason=_widening(f"org role {was} → {role.value}", widening),
            widening=widening,
        )
    ]


def idp_org_role_steps(
    member: Member, request: ChangeRequest, idp: IdpView
) -> tuple[list[ChangeStep], list[str]]:
    """An IdP-managed member's org role, changed in the IdP (the IdP pushes the org role and
    wins, seed 003): into the target's org group, then out of the other org groups (never in
    none: the IdP would deprovision them); a blocker when the IdP has no such group."""
    role = request.org_role
    if role is None or role == member.org_role:
        return [], []
    want = org_group(role)
    want_id = idp.group_id(want)
    if want_id is None:
        return [], [f"the IdP has no group {want} (maps to org role {role.value}): create it"]
    widening = role.rank > _rank(member.org_role)
    was = member.org_role.value if member.org_role else "?"
    steps: list[ChangeStep] = []
    if idp.group_id(want, mine=True) is None:
        steps.append(
            ChangeStep.of(
                IdpAddGroup(group_id=want_id, email=member.email),
                want,
                reason=_widening(f"org role {was} → {role.value}, in the IdP", widening),
                widening=widening,
            )
        )
    for name, gid in sorted(idp.groups.items()):
        if org_group_role(name) is not None and name.casefold() != want.casefold():
            steps.append(
                ChangeStep.of(
                    RemoveIdpGroup(group=name, user_id=idp.user_id),
                    gid,
                    reason=f"org role {was} → {role.value}: out of {name} in the IdP",
                )
            )
    return steps, []


def org_admin_warnings(member: Member, request: ChangeRequest) -> list[str]:
    """Project roles below Admin asked for an org Admin (who is Admin everywhere)."""
    final = request.org_role or member.org_role
    lower = any(r is not None and r is not Role.ADMIN for r in request.projects.values())
    if final is Role.ADMIN and lower:
        return ["an org Admin has Admin in every project whatever the project role"]
    return []


def module_steps(member: Member, request: ChangeRequest) -> list[ChangeStep]:
    """Modules added (widening) and removed, when the member lacks or has them."""
    have = set(member.modules)
    grant = sorted((m for m in request.modules_add if m not in have), key=lambda m: m.value)
    revoke = sorted((m for m in request.modules_remove if m in have), key=lambda m: m.value)
    steps: list[ChangeStep] = []
    if grant:
        reason = f"add module(s) {', '.join(m.value for m in grant)}"
        steps.append(
            ChangeStep.of(GrantModules(modules=grant), member.email, reason=reason, widening=True)
        )
    if revoke:
        reason = f"remove module(s) {', '.join(m.value for m in revoke)}"
        steps.append(ChangeStep.of(RevokeModules(modules=revoke), member.email, reason=reason))
    return steps


def concerned_admins(
    member: Member,
    steps: list[ChangeStep],
    *,
    leaving: dict[str, PermissionGroup],
    projects: list[Project],
) -> list[str]:
    """The admins of the projects the change touches (its project steps, the groups left)."""
    concerned = {p for g in leaving.values() for p in g.projects}
    for s in steps:
        match s.params:
            case SetProjectRole(project=project) | RemoveProjectRole(project=project):
                concerned.add(project)
    return admins_of(concerned, projects, besides=member.email)


def make_change_plan(
    member: Member | None,
    groups: list[PermissionGroup],
    projects: list[Project],
    request: ChangeRequest,
    *,
    idp: IdpView | None = None,
) -> ChangePlan:
    """The plan that makes ``member``'s *effective* access the request's target (pure). For
    an IdP-managed member (``idp``: what the IdP says of them) the org role and the pushed
    groups are changed in the IdP, which wins role conflicts (seed 003)."""
    plan = ChangePlan(
        subject=request.email,
        target={p: (r.value if r else None) for p, r in sorted(request.projects.items())},
        target_org_role=request.org_role.value if request.org_role else None,
        production_projects=production_projects(projects),
        blockers=change_blockers(member, request, projects=projects),
    )
    if member is None or plan.blockers:
        return plan
    mine = _member_groups(member, groups)
    leaving = groups_to_leave(mine, request)
    idp = idp if member.idp_managed else None
    union_warnings, union_blockers = group_union_findings(member, request, leaving=leaving, idp=idp)
    kept, kept_warnings = kept_by_individual_grant(member, request, mine=mine, leaving=leaving)
    org_steps, org_blockers = (
        idp_org_role_steps(member, request, idp)
        if idp is not None
        else (org_role_steps(member, request), [])
    )
    steps = [
        *requested_project_steps(member, request, leaving=leaving),
        *kept,
        *leave_group_steps(leaving, idp=idp),
        *org_steps,
        *module_steps(member, request),
    ]
    warnings = [
        *pending_warnings(member),
        *union_warnings,
        *kept_warnings,
        *org_admin_warnings(member, request),
    ]
    return plan.model_copy(
        update={
            "steps": steps,
            "warnings": warnings,
            "blockers": union_blockers + org_blockers,
            "project_admins": concerned_admins(member, steps, leaving=leaving, projects=projects),
        }
    )


def make_console_change_plan(member: Member | None, request: ChangeRequest) -> ChangePlan:
    """The change on an org that can neither read nor set roles by API (SCIM only): one human
    task with the target (pure). Every project asked counts as production and its admins are
    unknown (the policy's fallback group fills that seat)."""
    target = {p: (r.value if r else None) for p, r in sorted(request.projects.items())}
    plan = ChangePlan(
        subject=request.email,
        target=target,
        target_org_role=request.org_role.value if request.org_role else None,
        production_projects=sorted(request.projects),
        roles_by_api=False,
        modules_added=sorted(m.value for m in request.modules_add),
        blockers=[f"{request.email} is not a member of the org"] if member is None else [],
    )
    if member is None:
        return plan
    task = change_access_task(
        request.email,
        projects=target,
        org_role=plan.target_org_role,
        modules_add=plan.modules_added,
        modules_remove=sorted(m.value for m in request.modules_remove),
    )
    step = ChangeStep.of(
        task,
        f"{task.task.value}:{request.email}",
        reason="roles, projects and modules: this org has no API for them (a person does it)",
        widening=bool(plan.approval_facts()["production_roles"] or plan.modules_added)
        or plan.target_org_role is not None,
    )
    return plan.model_copy(update={"steps": [step], "warnings": pending_warnings(member)})


def expected_access(member: Member, groups: list[PermissionGroup]) -> dict[str, Role]:
    """The individual project roles to invite a new address with, so that with the same groups
    its effective roles equal ``member``'s: the least individual grant that does (a grant
    hidden by a group's higher one becomes Viewer)."""
    mine = _member_groups(member, groups)
    out: dict[str, Role] = {}
    for g in member.projects:
        if "individual" not in g.sources:
            continue
        gmax = _group_max(g.project, mine)
        out[g.project] = g.role if _rank(gmax) < g.role.rank else Role.VIEWER
    return out


# --- change of email: the rules ------------------------------------------------------------------
def email_change_blockers(
    old: Member | None, new: Member | None, *, old_email: str, new_email: str
) -> list[str]:
    """Why nothing can be done (nothing either, without a blocker, once the old address is
    gone and the new one is there)."""
    if old_email == new_email:
        return ["the new address is the old one"]
    if old is None:
        return [f"{old_email} is not a member of the org"] if new is None else []
    if old.status != "joined":
        return [f"{old_email} has not joined the org (a pending invite): revoke it"]
    return []


def invite_new_address_step(
    old: Member, individual: dict[str, Role], *, old_email: str, new_email: str
) -> ChangeStep:
    """The new address invited with the old one's org role, project roles and modules."""
    invite = InviteMember(
        role=old.org_role or Role.VIEWER,
        projects=dict(sorted(individual.items())),
        modules=sorted(old.modules, key=lambda m: m.value),
    )
    reason = f"invite {new_email} with {old_email}'s org role, project roles and modules"
    return ChangeStep.of(invite, new_email, reason=reason, widening=True)


def align_new_address_steps(
    old: Member, new: Member, *, individual: dict[str, Role], old_email: str, new_email: str
) -> list[ChangeStep]:
    """The joined new address given what it lacks of the old one's org role, individual
    project roles and modules."""
    steps: list[ChangeStep] = []
    if new.org_role is not None and old.org_role is not None and new.org_role != old.org_role:
        steps.append(
            ChangeStep.of(
                SetOrgRole(role=old.org_role),
                new_email,
                reason=f"org role as {old_email}: {old.org_role.value}",
                widening=new.org_role.rank < old.org_role.rank,
            )
        )
    have = {g.project: g for g in new.projects}
    for project, role in sorted(individual.items()):
        cur = have.get(project)
        if cur is None or "individual" not in cur.sources or cur.role.rank < role.rank:
            steps.append(
                ChangeStep.of(
                    SetProjectRole(project=project, role=role, email=new_email),
                    f"{new_email} in {project}",
                    reason=f"{project}: {role.value} as {old_email}",
                    widening=True,
                )
            )
    missing = sorted(set(old.modules) - set(new.modules), key=lambda m: m.value)
    if missing:
        grant = GrantModules(modules=missing)
        reason = f"modules as {old_email}"
        steps.append(ChangeStep.of(grant, new_email, reason=reason, widening=True))
    return steps


def join_group_steps(
    old: Member,
    new: Member | None,
    *,
    groups: list[PermissionGroup],
    old_email: str,
    new_email: str,
) -> tuple[list[ChangeStep], list[str]]:
    """The new address into the old one's permission groups (a warning for an IdP-managed
    group: the IdP must add it)."""
    theirs = {g.id for g in _member_groups(new, groups)} if new else set()
    steps: list[ChangeStep] = []
    warnings: list[str] = []
    for g in _member_groups(old, groups):
        if g.id in theirs:
            continue
        steps.append(
            ChangeStep.of(
                AddGroupMembership(group=g.name, email=new_email),
                g.id,
                reason=f"join permission group {g.name!r} as {old_email}",
                widening=True,
            )
        )
        if g.idp_managed:
            warnings.append(
                f"permission group {g.name!r} is IdP-managed: add {new_email} in the IdP"
            )
    return steps, warnings


def move_and_remove_steps(
    old_email: str,
    new_email: str,
    *,
    owned_assets: int,
    old_idp: tuple[str, Sequence[IdpGroup]] = ("", ()),
) -> list[ChangeStep]:
    """All content to the new address, then the old address out of the mapped IdP groups its
    IdP user is in (``old_idp``: that user's id and groups; IdP first, or the next sync
    provisions the old address again), then removed from the org."""
    moved = f"transfer all of {old_email}'s content ({owned_assets} asset(s)) to {new_email}"
    user_id, groups = old_idp
    idp = [
        ChangeStep.of(
            RemoveIdpGroup(group=g.name, user_id=user_id),
            g.id,
            reason=f"IdP group {g.name} provisions {old_email}: remove it first, or the next "
            "sync adds the old address back",
        )
        for g in sorted(groups, key=lambda g: (g.name, g.id))
        if user_id and is_mapped_idp_group(g.name)
    ]
    return [
        ChangeStep.of(TransferContent(to=new_email), old_email, reason=moved),
        *idp,
        ChangeStep.of(RemoveMember(), old_email, reason=f"remove the old address {old_email}"),
    ]


def make_console_email_change_plan(
    old: Member | None,
    new: Member | None,
    *,
    old_email: str,
    new_email: str,
    old_idp: tuple[str, Sequence[IdpGroup]] = ("", ()),
) -> ChangePlan:
    """An email change on an org that cannot read roles or content by API (SCIM only), pure:
    the new address invited (SCIM), its access copied and the content transferred by a person
    (the transfer task stays open until the new address has joined: SCIM cannot tell), the old
    address out of its mapped IdP groups, then removed (SCIM)."""
    plan = ChangePlan(
        runbook="email_change",
        subject=old_email,
        new_email=new_email,
        roles_by_api=False,
        blockers=[f"{old_email} is not a member of the org"]
        if old is None and new is None
        else (["the new address is the old one"] if old_email == new_email else []),
    )
    if old is None or plan.blockers:
        return plan
    invite = (
        []
        if new is not None
        else [
            ChangeStep.of(
                InviteMember(role=Role.VIEWER, projects={}, modules=[]),
                new_email,
                reason=f"invite {new_email} (SCIM carries the email only)",
                widening=True,
            )
        ]
    )
    copy, move = copy_access_task(old_email, new_email), move_content_task(old_email, new_email)
    tasks = [
        ChangeStep.of(
            copy,
            f"{copy.task.value}:{new_email}",
            reason=f"{old_email}'s roles: this org has no API for them (a person does it)",
            widening=True,
        ),
        ChangeStep.of(
            move,
            f"{move.task.value}:{old_email}",
            reason="content: this org has no API for it (a person does it)",
        ),
    ]
    moves = move_and_remove_steps(old_email, new_email, owned_assets=0, old_idp=old_idp)[1:]
    return plan.model_copy(update={"steps": [*invite, *tasks, *moves]})


def new_address_blockers(new: Member | None, now: datetime, *, new_email: str) -> list[str]:
    """The joined new address must have signed in lately to receive content."""
    why = eligible(new, now) if new is not None else None
    if not why:
        return []
    return [f"{new_email} cannot receive content yet ({why}): they must sign in first"]


def waiting_warnings(*, old_email: str, new_email: str) -> list[str]:
    """The new address is invited but has not joined: the rest waits for a later run."""
    return [
        f"{new_email} has not accepted the invitation yet: once they have joined and "
        "signed in, run the same command again to transfer the content and remove "
        f"{old_email}"
    ]


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
    old_idp: tuple[str, Sequence[IdpGroup]] = ("", ()),
) -> ChangePlan:
    """What is left of an email change (pure): invite → (the person accepts) → groups,
    transfer all content, the old address out of its mapped IdP groups (``old_idp``: the old
    address's IdP user id and groups), remove the old address."""
    emails = {"old_email": old_email, "new_email": new_email}
    plan = ChangePlan(
        runbook="email_change",
        subject=old_email,
        new_email=new_email,
        production_projects=production_projects(projects),
        blockers=email_change_blockers(old, new, **emails),
    )
    if old is None or plan.blockers:
        return plan
    individual = expected_access(old, groups)
    plan.project_admins = admins_of(individual, projects, besides=old_email)
    if new is not None and new.status != "joined":
        update = {"waiting_for_acceptance": True, "warnings": waiting_warnings(**emails)}
        return plan.model_copy(update=update)
    first = (
        [invite_new_address_step(old, individual, **emails)]
        if new is None
        else align_new_address_steps(old, new, individual=individual, **emails)
    )
    joins, warnings = join_group_steps(old, new, groups=groups, **emails)
    moves = move_and_remove_steps(old_email, new_email, owned_assets=owned_assets, old_idp=old_idp)
    return plan.model_copy(
        update={
            "steps": [*first, *joins, *moves],
            "warnings": warnings,
            "blockers": new_address_blockers(new, now, new_email=new_email),
        }
    )
