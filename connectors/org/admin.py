"""``SandboxOrg``: the org through SCIM *and* the sandbox's admin API — every org capability.

It composes :class:`~connectors.org.scim.AmplitudeScim` for what Amplitude's SCIM really offers
(removing members, group membership), so those paths are the same code against the sandbox as
against Amplitude, and uses ``/admin/v1`` for what Amplitude keeps in its UI: member details
(org role, status, last login, modules, project roles and their sources, groups), invitations,
org and project roles, modules, groups with the projects they grant, and (from
:class:`~connectors.org.content.SandboxContent`) assets, transfers, API keys, the activity log.

Capabilities: MemberDirectory, Invitations, ProjectAccess, ModuleAccess, PermissionGroups,
AssetOwnership, KeyManagement, OrgActivityLog. Writes are idempotent: each reads the backend's
answer (``{"changed": …}``, 409 on a duplicate invite, 404 on a missing invitation) and reports
``created | updated | deleted | noop(reason)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from connectors.capabilities import InviteSpec
from connectors.http import HttpApi
from connectors.org.client import admin_api, backend_said_not_found, segment
from connectors.org.content import SandboxContent
from connectors.org.payloads import (
    AdminChange,
    AdminEffectiveRoles,
    AdminGroup,
    AdminGroups,
    AdminInvitation,
    AdminInvitations,
    AdminInvited,
    AdminMember,
    AdminMemberPage,
    AdminModules,
    AdminProjects,
    parse,
)
from connectors.org.scim import AmplitudeScim, norm, unique
from connectors.rate import Limiter
from connectors.settings import Settings
from domain.models import (
    Effect,
    Invitation,
    Member,
    Module,
    PermissionGroup,
    Project,
    ProjectGrant,
    Role,
    WriteResult,
)

MEMBER_PAGE = 1000

M = TypeVar("M", bound=BaseModel)


class SandboxOrg(SandboxContent):
    """Every org capability, over ``/scim/1`` and ``/admin/v1``.

    Args:
        admin: the admin :class:`HttpApi` (see :func:`connectors.org.client.admin_api`).
        scim: the SCIM connector used for member removal and group membership.
        owns_client: close the admin HTTP client in :meth:`close`.
    """

    def __init__(self, *, admin: HttpApi, scim: AmplitudeScim, owns_client: bool = True) -> None:
        self.admin = admin
        self.scim = scim
        self._owns_client = owns_client

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        client: httpx.Client | None = None,
        scim_limiter: Limiter | None = None,
        admin_limiter: Limiter | None = None,
        attempts: int = 6,
    ) -> SandboxOrg:
        """Build both APIs from settings; ``client`` and limiters for tests."""
        scim = AmplitudeScim.from_settings(
            settings, client=client, limiter=scim_limiter, attempts=attempts
        )
        admin = admin_api(settings, client=client, limiter=admin_limiter, attempts=attempts)
        return cls(admin=admin, scim=scim, owns_client=client is None)

    def __repr__(self) -> str:
        return f"SandboxOrg({self.admin.base_url!r})"

    def close(self) -> None:
        """Close the HTTP clients this connector created."""
        self.scim.close()
        if self._owns_client:
            self.admin.close()

    # ------------------------------------------------------------------ MemberDirectory
    def get_member(self, email: str) -> Member | None:
        """The member (or pending invitee) with this email, in full detail, or None.

        Returns:
            org role, status, last login, modules, effective project roles with their sources
            (``individual``, ``group:<name>``) and permission group ids.

        Raises:
            ConnectorError: the backend could not answer.
        """
        who = norm(email)
        resp = self.admin.request(
            "GET", f"/members/{segment(who)}", operation="get_member", subject=who, ok=(200, 404)
        )
        if resp.status_code == 404:
            backend_said_not_found(resp, operation="get_member", subject=who)
            return None
        return parse(AdminMember, resp.json(), operation="get_member", subject=who).to_member()

    def list_members(self) -> Iterator[Member]:
        """Every member and invitee with org role, status, last login and modules (no project
        roles: ask :meth:`get_member` for one person's)."""
        seen = 0
        while True:
            data = self.admin.json(
                "GET",
                "/members",
                operation="list_members",
                params={"offset": seen, "limit": MEMBER_PAGE},
            )
            page = parse(AdminMemberPage, data, operation="list_members")
            for m in page.members:
                yield m.to_member()
            seen += len(page.members)
            if not page.members or seen >= page.total:
                return

    def remove_member(self, email: str) -> WriteResult:
        """Remove a member or revoke their invite, through SCIM as in the real product.

        Returns:
            ``deleted``, or ``noop("not a member")``.

        Raises:
            ConflictError: e.g. "… is the sole Admin of project Development".
        """
        return self.scim.remove_member(email)

    # ------------------------------------------------------------------ Invitations
    def invite(self, spec: InviteSpec) -> WriteResult:
        """Invite with everything the spec grants (org role, project roles, modules, note).

        Returns:
            ``created`` (``detail["expires_at"]``), or ``noop("already a member or invited")``.

        Raises:
            NotFoundError: a project of the spec does not exist.
            InvalidRequestError: the spec is refused (bad role or module).
        """
        who = norm(spec.email)
        body: dict[str, Any] = {
            "email": who,
            "given_name": spec.given_name,
            "family_name": spec.family_name,
            "org_role": spec.org_role.value,
            "projects": {p: r.value for p, r in spec.projects.items()},
            "modules": [m.value for m in spec.modules],
            "note": spec.note,
            "default_project": spec.default_project,
        }
        resp = self.admin.request(
            "POST", "/members", operation="invite", subject=who, json=body, ok=(201, 409)
        )
        if resp.status_code == 409:
            return WriteResult.noop("already a member or invited")
        inv = parse(AdminInvited, resp.json(), operation="invite", subject=who).invitation
        return WriteResult(effect=Effect.CREATED, detail={"expires_at": inv.expires_at.isoformat()})

    def list_invitations(self, state: str | None = None) -> list[Invitation]:
        """Invitations, optionally in one state: pending, expired, accepted or revoked."""
        params = {"state": state} if state else None
        data = self.admin.json(
            "GET", "/invitations", operation="list_invitations", subject=state, params=params
        )
        page = parse(AdminInvitations, data, operation="list_invitations")
        return [i.to_invitation() for i in page.invitations]

    def resend_invitation(self, email: str) -> WriteResult:
        """Send the invitation again (its 14 days start over).

        Returns:
            ``updated`` (``detail["expires_at"]``), or ``noop`` when no invitation is pending
            (the person joined, or was never invited).
        """
        return self._invitation_action(email, "resend", Effect.UPDATED)

    def revoke_invitation(self, email: str) -> WriteResult:
        """Revoke a pending invitation: ``deleted``, or ``noop`` when none is pending."""
        return self._invitation_action(email, "revoke", Effect.DELETED)

    def _invitation_action(self, email: str, action: str, effect: Effect) -> WriteResult:
        who, operation = norm(email), f"{action}_invitation"
        resp = self.admin.request(
            "POST",
            f"/invitations/{segment(who)}/{action}",
            operation=operation,
            subject=who,
            ok=(200, 404),
        )
        if resp.status_code == 404:
            backend_said_not_found(resp, operation=operation, subject=who)
            return WriteResult.noop("no pending invitation")
        inv = parse(AdminInvitation, resp.json(), operation=operation, subject=who)
        return WriteResult(effect=effect, detail={"expires_at": inv.expires_at.isoformat()})

    # ------------------------------------------------------------------ ProjectAccess
    def list_projects(self) -> list[Project]:
        """Every project with its environment and its (effective) Admins."""
        data = self.admin.json("GET", "/projects", operation="list_projects")
        return [
            p.to_project() for p in parse(AdminProjects, data, operation="list_projects").projects
        ]

    def effective_access(self, email: str) -> list[ProjectGrant]:
        """Per project, the highest of the individual and group grants, with their sources.

        Raises:
            NotFoundError: no such member.
        """
        page = self._member(
            "GET", email, "/effective-roles", AdminEffectiveRoles, operation="effective_access"
        )
        return [p.to_grant() for p in page.projects]

    def set_org_role(self, email: str, role: Role) -> WriteResult:
        """Set the org role: ``updated``, or ``noop`` when it is that already.

        Raises:
            ConflictError: demoting the sole Admin of the org or of a project.
            NotFoundError: no such member.
        """
        change = self._member(
            "PUT",
            email,
            "/org-role",
            AdminChange,
            operation="set_org_role",
            json={"role": role.value},
        )
        return _change_result(change, f"already {role.value}")

    def set_project_role(self, email: str, project: str, role: Role | None) -> WriteResult:
        """Set (``None``: remove) the individual grant in a project; group grants stay.

        Returns:
            ``updated`` (``detail`` old/new/effective: access may remain through a group) or
            ``deleted`` when a grant was removed, else ``noop``.

        Raises:
            ConflictError: the change would leave the project without an Admin.
            NotFoundError: no such member or project.
        """
        who = norm(email)
        path = f"/members/{segment(who)}/projects/{segment(project)}"
        subject = f"{who} in {project}"
        if role is None:
            data = self.admin.json("DELETE", path, operation="set_project_role", subject=subject)
            change = parse(AdminChange, data, operation="set_project_role", subject=subject)
            if change.changed:
                return WriteResult(effect=Effect.DELETED, detail=_change_detail(change))
            return WriteResult.noop("no individual grant", **_change_detail(change))
        data = self.admin.json(
            "PUT", path, operation="set_project_role", subject=subject, json={"role": role.value}
        )
        change = parse(AdminChange, data, operation="set_project_role", subject=subject)
        return _change_result(change, f"already {role.value} in {project}")

    # ------------------------------------------------------------------ ModuleAccess
    def get_modules(self, email: str) -> list[Module]:
        """The add-on modules granted to a member.

        Raises:
            NotFoundError: no such member.
        """
        return list(self._member("GET", email, "", AdminMember, operation="get_modules").modules)

    def set_modules(
        self, email: str, *, grant: Iterable[Module] = (), revoke: Iterable[Module] = ()
    ) -> WriteResult:
        """Grant and revoke modules in one call: ``updated`` or ``noop``.

        Raises:
            NotFoundError: no such member.
        """
        add, remove = [m.value for m in grant], [m.value for m in revoke]
        if not add and not remove:
            return WriteResult.noop("no module to change")
        result = self._member(
            "PUT",
            email,
            "/modules",
            AdminModules,
            operation="set_modules",
            json={"add": add, "remove": remove},
        )
        modules = [m.value for m in result.modules]
        if not result.changed:
            return WriteResult.noop("modules already so", modules=modules)
        return WriteResult(effect=Effect.UPDATED, detail={"modules": modules})

    # ------------------------------------------------------------------ PermissionGroups
    def list_groups(self) -> list[PermissionGroup]:
        """Every permission group with its members, the projects it grants, and whether the
        IdP manages it (the admin API says what SCIM does not)."""
        data = self.admin.json("GET", "/groups", operation="list_groups")
        return [g.to_group() for g in parse(AdminGroups, data, operation="list_groups").groups]

    def create_group(
        self,
        name: str,
        *,
        members: Sequence[str] = (),
        projects: dict[str, Role] | None = None,
    ) -> tuple[WriteResult, PermissionGroup]:
        """Create a permission group granting ``projects``.

        Returns:
            ``created`` and the group, or ``noop`` and the existing group of that name.

        Raises:
            NotFoundError: a member or project does not exist.
        """
        for g in self.list_groups():
            if g.name == name:
                return WriteResult.noop("a group with this name exists", id=g.id), g
        body = {
            "display_name": name,
            "members": unique(members),
            "projects": {p: r.value for p, r in (projects or {}).items()},
        }
        data = self.admin.json("POST", "/groups", operation="create_group", subject=name, json=body)
        group = parse(AdminGroup, data, operation="create_group", subject=name).to_group()
        return WriteResult(effect=Effect.CREATED, detail={"id": group.id}), group

    def add_group_members(self, group_id: str, emails: Sequence[str]) -> WriteResult:
        """Add people to a group (through SCIM): ``updated`` or ``noop``."""
        return self.scim.add_group_members(group_id, emails)

    def remove_group_members(self, group_id: str, emails: Sequence[str]) -> WriteResult:
        """Remove people from a group (through SCIM); their individual grants stay.

        Raises:
            ConflictError: the removal would leave a project without an Admin.
        """
        return self.scim.remove_group_members(group_id, emails)

    def _member(
        self,
        method: str,
        email: str,
        tail: str,
        model: type[M],
        *,
        operation: str,
        json: dict[str, Any] | None = None,
    ) -> M:
        """``method /members/<email><tail>`` (about that member), the answer parsed as ``model``."""
        who = norm(email)
        data = self.admin.json(
            method, f"/members/{segment(who)}{tail}", operation=operation, subject=who, json=json
        )
        return parse(model, data, operation=operation, subject=who)


def _change_detail(change: AdminChange) -> dict[str, Any]:
    return {k: v for k, v in change.model_dump().items() if k != "changed" and v is not None}


def _change_result(change: AdminChange, noop_reason: str) -> WriteResult:
    if not change.changed:
        return WriteResult.noop(noop_reason, **_change_detail(change))
    return WriteResult(effect=Effect.UPDATED, detail=_change_detail(change))
