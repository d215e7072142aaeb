"""The mover runbooks' tasks (change of access, change of email): read, apply one step once per
case, verify on effective access, record. The rules are in ``domain.change``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect import task

from connectors.capabilities import AssetOwnership, InviteSpec, PermissionGroups, ProjectAccess, has
from domain.change import ChangeKind, ChangePlan, ChangeStep
from domain.models import Member, Module, PermissionGroup, Project, Role, WriteResult
from tasks.runtime import runtime
from tasks.steps import StepScope, executor


@task(name="read_access")
def read_access(
    emails: Sequence[str],
) -> tuple[dict[str, Member | None], list[PermissionGroup], list[Project]]:
    """The members (None: not in the org), every permission group and every project."""
    org = runtime().org
    members = {e: org.get_member(e) for e in emails}
    groups = org.list_groups() if has(org, PermissionGroups) else []
    projects = org.list_projects() if has(org, ProjectAccess) else []
    return members, groups, projects


def manager_of(email: str) -> str | None:
    """The person's manager, from the HR roster (when there is one)."""
    roster = runtime().roster
    entry = roster.get(email) if roster else None
    return entry.manager if entry else None


@task(name="count_assets")
def count_assets(email: str) -> int:
    org = runtime().org
    if not has(org, AssetOwnership):
        return 0
    return len(org.list_assets(owner=email)) + len(org.list_assets(former_owner=email))


@executor(ChangeStep)
def execute_change_step(step: ChangeStep, scope: StepScope) -> tuple[WriteResult, dict[str, Any]]:
    """Do one step of a change of access or email through the org."""
    result = _change(step, scope.subject)
    return result, dict(result.detail)


def _change(step: ChangeStep, subject: str) -> WriteResult:
    org, p = runtime().org, step.params
    who = p.get("email", subject)
    match step.kind:
        case ChangeKind.SET_PROJECT_ROLE:
            return org.set_project_role(who, p["project"], Role(p["role"]))
        case ChangeKind.REMOVE_PROJECT_ROLE:
            return org.set_project_role(who, p["project"], None)
        case ChangeKind.REMOVE_GROUP_MEMBERSHIP:
            return org.remove_group_members(step.target, [who])
        case ChangeKind.ADD_GROUP_MEMBERSHIP:
            return org.add_group_members(step.target, [who])
        case ChangeKind.SET_ORG_ROLE:
            return org.set_org_role(step.target, Role(p["role"]))
        case ChangeKind.GRANT_MODULES:
            return org.set_modules(step.target, grant=[Module(m) for m in p["modules"]])
        case ChangeKind.REVOKE_MODULES:
            return org.set_modules(step.target, revoke=[Module(m) for m in p["modules"]])
        case ChangeKind.INVITE_MEMBER:
            return org.invite(
                InviteSpec(
                    email=step.target,
                    org_role=Role(p["role"]),
                    projects={k: Role(v) for k, v in p["projects"].items()},
                    modules=tuple(Module(m) for m in p["modules"]),
                    note=f"email change from {subject}",
                )
            )
        case ChangeKind.TRANSFER_CONTENT:
            return org.transfer_all(step.target, p["to"])
        case ChangeKind.REMOVE_MEMBER:
            return org.remove_member(step.target)
    raise ValueError(f"unknown step kind {step.kind}")


@task(name="verify_change")
def verify_change(plan: ChangePlan) -> dict[str, str]:
    """Re-read the *effective* access: check → ``pass`` or ``fail: why``."""
    org = runtime().org
    out: dict[str, str] = {}
    member = org.get_member(plan.subject)
    if member is None:
        return {"member_exists": f"fail: {plan.subject} is not in the org"}
    eff = {g.project: g.role.value for g in org.effective_access(plan.subject)}
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
    mods = {m.value for m in member.modules}
    for s in plan.steps:
        if s.kind is ChangeKind.GRANT_MODULES:
            missing = set(s.params["modules"]) - mods
            out["modules_added"] = "pass" if not missing else f"fail: missing {sorted(missing)}"
        if s.kind is ChangeKind.REVOKE_MODULES:
            left = set(s.params["modules"]) & mods
            out["modules_removed"] = "pass" if not left else f"fail: still has {sorted(left)}"
    return out


@task(name="verify_email_change")
def verify_email_change(old: Member, new_email: str) -> dict[str, str]:
    """The new address has the old one's org role, effective roles and modules; the old one is
    gone and owns nothing."""
    org = runtime().org
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
        got = {g.project: g.role.value for g in org.effective_access(new_email)}
        check("same_effective_roles", want == got, f"{got} ≠ {want}")
        check(
            "same_modules",
            set(old.modules) <= set(new.modules),
            f"missing {sorted(m.value for m in set(old.modules) - set(new.modules))}",
        )
    check("old_removed", org.get_member(old.email) is None, f"{old.email} is still in the org")
    if has(org, AssetOwnership):
        left = org.list_assets(owner=old.email) + org.list_assets(former_owner=old.email)
        check("content_moved", not left, f"{len(left)} asset(s) not moved")
    return out
