"""The org side of SCIM provisioning: what the IdP pushes into the org.

The IdP calls :func:`push_identity` for one person after every change of theirs (and for
everyone on a sync). Mapped IdP groups (by name) decide the person's org role and project roles:

- ``amplitude-org-<role>s`` (``admins``, ``managers``, ``members``, ``viewers``) → org role;
- ``amplitude-project-<role>s-<project>`` → a role in that project, pushed as an org permission
  group of the same name (Okta-style "push groups"), so the union rule applies as in the product.

Active and in at least one mapped group → provisioned (invited if absent; the IdP mapping wins
over manual roles). Inactive, or in no mapped group → removed, if the IdP had provisioned them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.org.models import GroupMember, Member, PermissionGroup, Role
from sandbox.org.service import OrgError, OrgService, norm_email

_ORG = re.compile(r"^amplitude-org-(admin|manager|member|viewer)s$", re.I)
_PROJECT = re.compile(r"^amplitude-project-(admin|manager|member|viewer)s-(.+)$", re.I)


@dataclass(frozen=True)
class GroupMapping:
    """What one IdP group means in the org: a role, in the org or (``project`` set) in one
    project."""

    role: Role
    project: str | None = None


def mapping_of(group_name: str) -> GroupMapping | None:
    """The org meaning of an IdP group name, or ``None`` for an unmapped group."""
    if m := _ORG.match(group_name):
        return GroupMapping(role=Role(m.group(1).lower()))
    if m := _PROJECT.match(group_name):
        return GroupMapping(role=Role(m.group(1).lower()), project=m.group(2))
    return None


@dataclass
class PushResult:
    """What a push did to the org, and what it could not do (a provisioning error)."""

    email: str
    action: str = "noop"  # provisioned | updated | deprovisioned | noop | error
    errors: list[str] = field(default_factory=list)


def push_identity(
    session: Session,
    now: datetime,
    *,
    email: str,
    given_name: str = "",
    family_name: str = "",
    active: bool,
    groups: list[str],
) -> PushResult:
    """Make the org agree with the IdP about one person (idempotent)."""
    email = norm_email(email)
    org = OrgService(session, now)  # the SCIM integration acts with the org's API token
    res = PushResult(email=email)
    mapped = {g: mp for g in groups if (mp := mapping_of(g)) is not None}
    member = org.find_member(email)
    if not active or not mapped:
        if member is not None and member.idp_managed:
            try:
                with session.begin_nested():
                    org.remove_member(email, reason="idp deprovisioned")
                res.action = "deprovisioned"
            except OrgError as e:
                res.action, res.errors = "error", [e.message]
        return res
    org_roles = [mp.role for mp in mapped.values() if mp.project is None]
    org_role = max(org_roles, key=lambda r: r.rank) if org_roles else None
    try:
        with session.begin_nested():
            if member is None:
                member, _ = org.invite(
                    email,
                    given_name=given_name,
                    family_name=family_name,
                    org_role=(org_role or Role.VIEWER).value,
                    idp_managed=True,
                )
                res.action = "provisioned"
            elif not member.idp_managed:
                member.idp_managed = True
                res.action = "updated"
            if org_role is not None and member.org_role != org_role.value:
                org.set_org_role(email, org_role.value)
                res.action = res.action if res.action != "noop" else "updated"
    except OrgError as e:
        res.action, res.errors = "error", [e.message]
        return res
    wanted: set[int] = set()
    for name, mp in mapped.items():
        if mp.project is None:
            continue
        try:
            project = org.project(mp.project)
        except OrgError as e:
            res.errors.append(f"group {name}: {e.message}")
            continue
        group = session.scalar(select(PermissionGroup).where(PermissionGroup.display_name == name))
        if group is None:
            group = org.create_group(name, projects={project.name: mp.role.value}, idp_managed=True)
        wanted.add(group.id)
        if session.get(GroupMember, (group.id, email)) is None:
            org.add_group_members(group.id, [email])
            res.action = res.action if res.action != "noop" else "updated"
    pushed = session.scalars(
        select(PermissionGroup.id)
        .join(GroupMember, GroupMember.group_id == PermissionGroup.id)
        .where(GroupMember.email == email, PermissionGroup.idp_managed.is_(True))
    ).all()
    for gid in set(pushed) - wanted:
        try:
            with session.begin_nested():
                org.remove_group_members(gid, [email])
            res.action = res.action if res.action != "noop" else "updated"
        except OrgError as e:
            res.errors.append(e.message)
    if res.errors and res.action == "noop":
        res.action = "error"
    return res


def idp_managed_members(session: Session) -> list[str]:
    """Emails of the members the IdP provisioned (a sync checks each of them)."""
    return list(session.scalars(select(Member.email).where(Member.idp_managed.is_(True))))
