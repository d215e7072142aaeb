"""The mover runbooks' tasks (change of access, change of email): read, apply one step once per
case, verify on effective access, record. The rules are in ``domain.change``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, assert_never

from prefect import task

from connectors.capabilities import (
    AssetOwnership,
    Inviter,
    InviteSpec,
    ModuleAccess,
    PermissionGroups,
    ProjectAccess,
    has,
    require,
)
from domain.change import ChangePlan, ChangeStep, IdpView, org_group_role
from domain.models import IdpGroup, Member, PermissionGroup, Project, WriteResult
from domain.plan import is_mapped_idp_group
from domain.steps import (
    AddGroupMembership,
    GrantModules,
    HumanTask,
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
from tasks.human import do_human_task, task_checks
from tasks.runtime import UNCACHED, Runtime
from tasks.steps import StepScope, executor


@task(name="read_access", cache_policy=UNCACHED)
def read_access(
    rt: Runtime, emails: Sequence[str]
) -> tuple[dict[str, Member | None], list[PermissionGroup], list[Project]]:
    """The members (None: not in the org), every permission group and every project."""
    org = rt.org
    members = {e: org.get_member(e) for e in emails}
    groups = org.list_groups() if has(org, PermissionGroups) else []
    projects = org.list_projects() if has(org, ProjectAccess) else []
    return members, groups, projects


def manager_of(rt: Runtime, email: str) -> str | None:
    """The person's manager, from the HR roster (when there is one)."""
    roster = rt.roster
    entry = roster.get(email) if roster else None
    return entry.manager if entry else None


@task(name="count_assets", cache_policy=UNCACHED)
def count_assets(rt: Runtime, email: str) -> int:
    """How many assets ``email`` owns or left unassigned (0: the backend cannot say)."""
    org = rt.org
    if not has(org, AssetOwnership):
        return 0
    return len(org.list_assets(held_by=email))


@task(name="read_idp_identity", cache_policy=UNCACHED)
def read_idp_identity(rt: Runtime, email: str) -> tuple[str, list[IdpGroup]]:
    """The IdP user of ``email`` (its id; empty when the IdP has none) and the groups it is
    in."""
    user = rt.idp.find_user(email)
    return (user.id, rt.idp.groups_of(user.id)) if user is not None else ("", [])


@task(name="read_idp_view", cache_policy=UNCACHED)
def read_idp_view(rt: Runtime, member: Member | None) -> IdpView | None:
    """What the IdP says of an IdP-managed member (None: not IdP-managed, or no IdP user)."""
    if member is None or not member.idp_managed:
        return None
    user_id, groups = read_idp_identity.fn(rt, member.email)
    if not user_id:
        return None
    return IdpView(
        user_id=user_id,
        groups={g.name: g.id for g in groups},
        mapped={g.name: g.id for g in rt.idp.list_groups() if is_mapped_idp_group(g.name)},
    )


def mapped_groups_of(rt: Runtime, email: str) -> list[str]:
    """The mapped (``amplitude-…``) IdP groups ``email``'s IdP user is still in, by name."""
    _, groups = read_idp_identity.fn(rt, email)
    return sorted(g.name for g in groups if is_mapped_idp_group(g.name))


@executor(ChangeStep)
def execute_change_step(
    rt: Runtime, step: ChangeStep, scope: StepScope
) -> tuple[WriteResult, dict[str, Any]]:
    """Do one step of a change of access or email through the org (or a person, for a human
    task)."""
    if isinstance(step.params, HumanTask):
        return do_human_task(rt, step, step.params, scope)
    result = _change(rt, step, scope.subject)
    return result, dict(result.detail)


def _change(rt: Runtime, step: ChangeStep, subject: str) -> WriteResult:
    org = rt.org
    match step.params:
        case SetProjectRole(project=project, role=role, email=email):
            return require(
                org, ProjectAccess, system="org", operation="set_project_role"
            ).set_project_role(email or subject, project, role)
        case RemoveProjectRole(project=project):
            return require(
                org, ProjectAccess, system="org", operation="set_project_role"
            ).set_project_role(subject, project, None)
        case RemoveGroupMembership(email=email):
            groups = rt.org_as(PermissionGroups, "remove_group_members")
            return groups.remove_group_members(step.target, [email or subject])
        case AddGroupMembership(email=email):
            groups = rt.org_as(PermissionGroups, "add_group_members")
            return groups.add_group_members(step.target, [email])
        case SetOrgRole(role=role):
            return rt.org_as(ProjectAccess, "set_org_role").set_org_role(step.target, role)
        case GrantModules(modules=modules):
            return rt.org_as(ModuleAccess, "set_modules").set_modules(step.target, grant=modules)
        case RevokeModules(modules=modules):
            return rt.org_as(ModuleAccess, "set_modules").set_modules(step.target, revoke=modules)
        case InviteMember(role=role, projects=projects, modules=modules):
            return rt.org_as(Inviter, "invite").invite(
                InviteSpec(
                    email=step.target,
                    org_role=role,
                    projects=dict(projects),
                    modules=tuple(modules),
                    note=f"email change from {subject}",
                )
            )
        case TransferContent(to=to):
            return require(
                org, AssetOwnership, system="org", operation="transfer_all"
            ).transfer_all(step.target, to)
        case RemoveIdpGroup(user_id=user_id):
            return rt.idp.remove_from_group(step.target, user_id)
        case IdpAddGroup(group_id=group_id, email=email):
            user = rt.idp.find_user(email)
            if user is None:
                raise ValueError(f"idp: no user {email} to add to {step.target}")
            return rt.idp.add_to_group(group_id, user.id)
        case RemoveMember():
            return org.remove_member(step.target)
        case HumanTask():
            raise TypeError("a human task is a person's (execute_change_step)")
        case _:
            assert_never(step.params)


@task(name="verify_change", cache_policy=UNCACHED)
def verify_change(rt: Runtime, plan: ChangePlan) -> dict[str, str]:
    """Re-read the *effective* access: check → ``pass`` or ``fail: why``."""
    org = rt.org
    out: dict[str, str] = {}
    member = org.get_member(plan.subject)
    if member is None:
        return {"member_exists": f"fail: {plan.subject} is not in the org"}
    eff = {
        g.project: g.role.value
        for g in require(
            org, ProjectAccess, system="org", operation="effective_access"
        ).effective_access(plan.subject)
    }
    for project, role in plan.target.items():
        got = eff.get(project)
        out[f"effective:{project}"] = (
            "pass" if got == role else f"fail: effective {got or 'none'}, target {role or 'none'}"
        )
    if plan.target_org_role:
        got_org = member.org_role.value if member.org_role else None
        out["org_role"] = (
            "pass" if got_org == plan.target_org_role else f"fail: org role is {got_org}"
        )
        if member.idp_managed:  # the next sync pushes the IdP's org groups: they must agree
            view = read_idp_view.fn(rt, member)
            roles = sorted(
                r.value for n in (view.groups if view else {}) if (r := org_group_role(n))
            )
            out["idp_org_group"] = (
                "pass" if roles == [plan.target_org_role] else f"fail: the IdP maps {roles}"
            )
    mods = set(member.modules)
    for s in plan.steps:
        match s.params:
            case GrantModules(modules=added):
                missing = sorted(m.value for m in set(added) - mods)
                out["modules_added"] = "pass" if not missing else f"fail: missing {missing}"
            case RevokeModules(modules=removed):
                left = sorted(m.value for m in set(removed) & mods)
                out["modules_removed"] = "pass" if not left else f"fail: still has {left}"
    return out


@task(name="verify_email_change", cache_policy=UNCACHED)
def verify_email_change(rt: Runtime, old: Member, new_email: str) -> dict[str, str]:
    """The new address has the old one's org role, effective roles and modules; the old one is
    gone and owns nothing."""
    org = rt.org
    out: dict[str, str] = {}

    def check(name: str, ok: bool, why: str) -> None:
        out[name] = "pass" if ok else f"fail: {why}"

    new = org.get_member(new_email)
    check("new_joined", new is not None and new.status == "joined", f"{new_email} has not joined")
    if new is not None:
        check(
            "same_org_role",
            old.org_role is None or new.org_role == old.org_role,
            f"{new.org_role} ≠ {old.org_role}",
        )
        want = {g.project: g.role.value for g in old.projects}
        got = {
            g.project: g.role.value
            for g in require(
                org, ProjectAccess, system="org", operation="effective_access"
            ).effective_access(new_email)
        }
        check("same_effective_roles", want == got, f"{got} ≠ {want}")
        check(
            "same_modules",
            set(old.modules) <= set(new.modules),
            f"missing {sorted(m.value for m in set(old.modules) - set(new.modules))}",
        )
    check("old_removed", org.get_member(old.email) is None, f"{old.email} is still in the org")
    mapped = mapped_groups_of(rt, old.email)
    check("old_out_of_idp_groups", not mapped, f"{old.email} is still in the IdP groups {mapped}")
    if has(org, AssetOwnership):
        left = org.list_assets(held_by=old.email)
        check("content_moved", not left, f"{len(left)} asset(s) not moved")
    return out


@task(name="verify_console_change", cache_policy=UNCACHED)
def verify_console_change(rt: Runtime, plan: ChangePlan, *, case_id: int | None) -> dict[str, str]:
    """What can be read back of a change a person did in the console: the member is still in
    the org; the task is ``attested by …``. Roles cannot be read on this org: they are not
    checked, never reported as passed."""
    member = rt.org.get_member(plan.subject)
    out = {"in_org": "pass" if member is not None else f"fail: {plan.subject} is not in the org"}
    return out | task_checks(rt, plan.steps, case_id)


@task(name="verify_console_email_change", cache_policy=UNCACHED)
def verify_console_email_change(
    rt: Runtime, plan: ChangePlan, *, case_id: int | None
) -> dict[str, str]:
    """What can be read back of an email change done partly in the console: the new address is
    in the org, the old one is gone and in no mapped IdP group; the tasks are ``attested by
    …`` (roles and content cannot be read on this org: never reported as passed)."""
    old, new = plan.subject, plan.new_email or ""
    org = rt.org
    out = {
        "new_in_org": "pass" if org.get_member(new) is not None else f"fail: {new} is not in it",
        "old_removed": "pass" if org.get_member(old) is None else f"fail: {old} is still in it",
    }
    mapped = mapped_groups_of(rt, old)
    out["old_out_of_idp_groups"] = "pass" if not mapped else f"fail: still in {mapped}"
    return out | task_checks(rt, plan.steps, case_id)
