"""``AmplitudeScim``: the org through Amplitude's SCIM API only — what the real product offers.

Capabilities (``connectors.capabilities``): :class:`MemberDirectory` and
:class:`PermissionGroups`, plus :class:`Inviter` (defined here). It is deliberately *not*
:class:`Invitations`: SCIM can invite (``POST /Users``) and revoke a pending invite
(``active: false``, i.e. :meth:`AmplitudeScim.remove_member`), but it cannot list invitations
(pending invitees are ``active: true`` like everyone else) nor resend one, so a runbook asking
``has(org, Invitations)`` learns that it cannot. Nor does SCIM carry org roles,
project roles, modules, assets, API keys or an activity log: those capabilities are absent.

Amplitude's quirks handled here: the email (``userName``) is the id; ``filter`` supports only
``userName eq "…"`` (and ``displayName eq "…"`` on Groups); pages of at most 100;
``POST /Groups`` answers 200, not 201; a 409 on ``POST /Users`` means "already there".
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from connectors.capabilities import InviteSpec
from connectors.errors import InvalidRequestError
from connectors.http import HttpApi
from connectors.org.client import SYSTEM, backend_said_not_found, scim_api, segment
from connectors.org.payloads import ScimGroup, ScimList, ScimUser, parse
from connectors.rate import Limiter
from connectors.settings import Settings
from domain.models import Effect, Member, PermissionGroup, Role, WriteResult

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
PAGE_SIZE = 100  # Amplitude's maximum itemsPerPage

R = TypeVar("R", bound=BaseModel)


def norm(email: str) -> str:
    """Emails compare case-insensitively (the backend stores them lower-case)."""
    return email.strip().lower()


def unique(emails: Iterable[str]) -> list[str]:
    """Normalised emails, duplicates dropped, order kept."""
    return list(dict.fromkeys(norm(e) for e in emails))


def filter_value(value: str, *, operation: str) -> str:
    """A value quoted for a SCIM filter; a double quote would end the string early."""
    if '"' in value or "\\" in value:
        raise InvalidRequestError(
            "a quote or backslash cannot be matched by the SCIM filter",
            system=SYSTEM,
            operation=operation,
            subject=value,
        )
    return f'"{value}"'


class AmplitudeScim:
    """Members and permission groups over Amplitude's SCIM API (``/scim/1``).

    Args:
        api: the SCIM :class:`HttpApi` (see :func:`connectors.org.client.scim_api`).
        owns_client: close the HTTP client in :meth:`close` (not when the caller passed it).
    """

    def __init__(self, api: HttpApi, *, owns_client: bool = True) -> None:
        self.api = api
        self._owns_client = owns_client

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        client: httpx.Client | None = None,
        limiter: Limiter | None = None,
        attempts: int = 6,
    ) -> AmplitudeScim:
        """Build from settings; ``client``/``limiter`` for tests (see :func:`scim_api`)."""
        api = scim_api(settings, client=client, limiter=limiter, attempts=attempts)
        return cls(api, owns_client=client is None)

    def __repr__(self) -> str:
        return f"AmplitudeScim({self.api.base_url!r})"

    def close(self) -> None:
        """Close the HTTP client, when this connector created it."""
        if self._owns_client:
            self.api.close()

    # ------------------------------------------------------------------ paging
    def _pages(
        self,
        path: str,
        listing: type[ScimList[R]],
        *,
        operation: str,
        params: dict[str, Any] | None = None,
    ) -> Iterator[R]:
        """Every resource of a SCIM list, ``PAGE_SIZE`` at a time (startIndex is 1-based)."""
        start = 1
        while True:
            query = {**(params or {}), "startIndex": start, "itemsPerPage": PAGE_SIZE}
            data = self.api.json("GET", path, operation=operation, params=query)
            page = parse(listing, data, operation=operation)
            yield from page.resources
            start += len(page.resources)
            # An empty page ends the loop even if totalResults over-counts (a member removed
            # between two pages), so it never spins.
            if not page.resources or start > page.total_results:
                return

    # ------------------------------------------------------------------ MemberDirectory
    def get_member(self, email: str) -> Member | None:
        """The member with exactly this email (case-insensitive), or None.

        SCIM says neither org role nor whether an invite is pending: ``org_role`` is None and
        ``status`` is ``"unknown"``.

        Raises:
            InvalidRequestError: the email cannot be put in a SCIM filter.
            ConnectorError: the backend could not answer.
        """
        wanted = norm(email)
        flt = f"userName eq {filter_value(wanted, operation='get_member')}"
        data = self.api.json(
            "GET",
            "/Users",
            operation="get_member",
            subject=wanted,
            params={"filter": flt, "startIndex": 1, "itemsPerPage": PAGE_SIZE},
        )
        page = parse(ScimList[ScimUser], data, operation="get_member", subject=wanted)
        # Exact match only: a filter the backend interprets loosely must not return a
        # look-alike (another domain, a Cyrillic letter) as the person.
        for user in page.resources:
            if norm(user.user_name) == wanted:
                return user.to_member()
        return None

    def list_members(self) -> Iterator[Member]:
        """Every member and pending invitee, 100 per request.

        Raises:
            ConnectorError: the backend could not answer.
        """
        for user in self._pages("/Users", ScimList[ScimUser], operation="list_members"):
            yield user.to_member()

    def remove_member(self, email: str) -> WriteResult:
        """Remove a member or revoke their invite (``PATCH active: false``).

        Returns:
            ``deleted``, or ``noop("not a member")`` when nobody has this email.

        Raises:
            ConflictError: the backend refuses, with its reason (e.g. the sole Admin of a
                project).
            ConnectorError: any other failure.
        """
        who = norm(email)
        resp = self.api.request(
            "PATCH",
            f"/Users/{segment(who)}",
            operation="remove_member",
            subject=who,
            json={
                "schemas": [PATCH_SCHEMA],
                "Operations": [{"op": "replace", "path": "active", "value": False}],
            },
            ok=(200, 204, 404),
        )
        if resp.status_code == 404:
            backend_said_not_found(resp, operation="remove_member", subject=who)
            return WriteResult.noop("not a member")
        return WriteResult(effect=Effect.DELETED)

    # ------------------------------------------------------------------ Inviter
    def invite(self, spec: InviteSpec) -> WriteResult:
        """Invite through ``POST /Users``: the person becomes a pending Viewer.

        SCIM carries only the email and the name. What else the spec asks for (org role above
        Viewer, project roles, modules, a note, a default project) cannot be applied here; it
        is listed in ``detail["not_applied"]``, so the result says what was not done.

        Returns:
            ``created``, or ``noop("already a member or invited")`` on the backend's 409.

        Raises:
            ConnectorError: the backend refused otherwise or could not be reached.
        """
        who = norm(spec.email)
        resp = self.api.request(
            "POST",
            "/Users",
            operation="invite",
            subject=who,
            json={
                "schemas": [USER_SCHEMA],
                "userName": who,
                "name": {"givenName": spec.given_name, "familyName": spec.family_name},
                "emails": [{"value": who, "primary": True}],
                "active": True,
            },
            ok=(200, 201, 409),
        )
        if resp.status_code == 409:
            return WriteResult.noop("already a member or invited")
        return WriteResult(effect=Effect.CREATED, detail={"not_applied": not_applied(spec)})

    # ------------------------------------------------------------------ PermissionGroups
    def list_groups(self) -> list[PermissionGroup]:
        """Every permission group with its members (SCIM does not say what a group grants).

        Raises:
            ConnectorError: the backend could not answer.
        """
        return [
            g.to_group()
            for g in self._pages("/Groups", ScimList[ScimGroup], operation="list_groups")
        ]

    def _group(self, group_id: str, *, operation: str) -> ScimGroup:
        data = self.api.json(
            "GET", f"/Groups/{segment(group_id)}", operation=operation, subject=f"group {group_id}"
        )
        return parse(ScimGroup, data, operation=operation, subject=f"group {group_id}")

    def get_group(self, group_id: str) -> PermissionGroup:
        """One permission group.

        Raises:
            NotFoundError: there is no group with this id.
        """
        return self._group(group_id, operation="get_group").to_group()

    def group_by_name(self, name: str) -> PermissionGroup | None:
        """The permission group with exactly this display name, or None."""
        flt = f"displayName eq {filter_value(name, operation='group_by_name')}"
        for g in self._pages(
            "/Groups", ScimList[ScimGroup], operation="group_by_name", params={"filter": flt}
        ):
            if g.display_name == name:
                return g.to_group()
        return None

    def create_group(
        self, name: str, *, members: Sequence[str] = ()
    ) -> tuple[WriteResult, PermissionGroup]:
        """Create a permission group (``POST /Groups``, which Amplitude answers with 200).

        Returns:
            ``created`` and the group, or ``noop`` and the existing group of that name (its
            members untouched: use :meth:`add_group_members`).

        Raises:
            ConnectorError: the backend refused (e.g. an unknown member) or could not answer.
        """
        existing = self.group_by_name(name)
        if existing is not None:
            return WriteResult.noop("a group with this name exists", id=existing.id), existing
        data = self.api.json(
            "POST",
            "/Groups",
            operation="create_group",
            subject=name,
            json={
                "schemas": [GROUP_SCHEMA],
                "displayName": name,
                "members": [{"value": e} for e in unique(members)],
            },
            ok=(200, 201),
        )
        group = parse(ScimGroup, data, operation="create_group", subject=name).to_group()
        return WriteResult(effect=Effect.CREATED, detail={"id": group.id}), group

    def add_group_members(self, group_id: str, emails: Sequence[str]) -> WriteResult:
        """Add people to a permission group; those already in it are left alone.

        Returns:
            ``updated`` (``detail["added"]``), or ``noop`` when everyone is in already.

        Raises:
            NotFoundError: no such group, or one of the people is not a member of the org.
            ConnectorError: any other failure.
        """
        wanted = unique(emails)
        if not wanted:
            return WriteResult.noop("nobody to add")
        current = self._group(group_id, operation="add_group_members").emails()
        missing = [e for e in wanted if e not in current]
        if not missing:
            return WriteResult.noop("already in the group", group=group_id)
        self._patch_members(group_id, "add", missing, operation="add_group_members")
        return WriteResult(effect=Effect.UPDATED, detail={"group": group_id, "added": missing})

    def remove_group_members(self, group_id: str, emails: Sequence[str]) -> WriteResult:
        """Remove people from a permission group; their individual grants stay.

        Returns:
            ``updated`` (``detail["removed"]``), or ``noop`` when none of them is in it.

        Raises:
            NotFoundError: no such group.
            ConflictError: the removal would leave a project without an Admin.
            ConnectorError: any other failure.
        """
        wanted = unique(emails)
        if not wanted:
            return WriteResult.noop("nobody to remove")
        current = self._group(group_id, operation="remove_group_members").emails()
        present = [e for e in wanted if e in current]
        if not present:
            return WriteResult.noop("not in the group", group=group_id)
        self._patch_members(group_id, "remove", present, operation="remove_group_members")
        return WriteResult(effect=Effect.UPDATED, detail={"group": group_id, "removed": present})

    def _patch_members(self, group_id: str, op: str, emails: list[str], *, operation: str) -> None:
        self.api.request(
            "PATCH",
            f"/Groups/{segment(group_id)}",
            operation=operation,
            subject=f"group {group_id}: {', '.join(emails)}",
            json={
                "schemas": [PATCH_SCHEMA],
                "Operations": [
                    {"op": op, "path": "members", "value": [{"value": e} for e in emails]}
                ],
            },
        )


def not_applied(spec: InviteSpec) -> dict[str, Any]:
    """What an invitation asks for beyond what SCIM can carry (email and name)."""
    out: dict[str, Any] = {}
    if spec.org_role is not Role.VIEWER:
        out["org_role"] = spec.org_role.value
    if spec.projects:
        out["projects"] = {p: r.value for p, r in spec.projects.items()}
    if spec.modules:
        out["modules"] = [m.value for m in spec.modules]
    if spec.note:
        out["note"] = spec.note
    if spec.default_project:
        out["default_project"] = spec.default_project
    return out
