"""Capabilities as small Protocols (STYLE.md point 2). A runbook depends on the capability it
needs, and asks :func:`has` (or :func:`require`, which raises ``CapabilityMissing``) before a
step: real Amplitude has no API for ownership transfer, key rotation or project roles.

Writes are idempotent and return :class:`domain.models.WriteResult` (created | updated |
deleted | noop(reason)); errors are those of :mod:`connectors.errors`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol, TypeVar, runtime_checkable

from pydantic import SecretStr
from typing_extensions import TypeIs

from connectors.errors import CapabilityMissing
from domain.identity import ChatMember
from domain.models import (
    AccessRequest,
    Asset,
    HrEmployee,
    IdpGroup,
    IdpUser,
    Invitation,
    Member,
    Module,
    OrgEvent,
    PermissionGroup,
    Project,
    ProjectGrant,
    Role,
    RosterEntry,
    Ticket,
    WriteResult,
)
from domain.models import ApiKey as ApiKeyInfo

C = TypeVar("C")


def has(connector: object, capability: type[C]) -> TypeIs[C]:
    """Whether ``connector`` offers ``capability`` (a runtime-checkable Protocol); the type
    checker then knows it does."""
    return isinstance(connector, capability)


def require(connector: object, capability: type[C], *, system: str, operation: str) -> C:
    """``connector`` as a ``capability`` it must offer for ``operation``.

    Raises:
        CapabilityMissing: the backend has no API for it (a SCIM-only org, say): said
            explicitly, never an attribute error half-way through a run.
    """
    if not isinstance(connector, capability):
        raise CapabilityMissing(
            f"{system}: {operation} needs {capability.__name__}, which this backend does not offer",
            system=system,
            operation=operation,
        )
    return connector


def capabilities_of(connector: object) -> list[str]:
    """The names of every capability ``connector`` offers (for plans and the README)."""
    return [c.__name__ for c in ALL_CAPABILITIES if isinstance(connector, c)]


# ---------------------------------------------------------------------------- org backend
@dataclass(frozen=True)
class InviteSpec:
    """What an invitation grants (org role, per-project roles, modules, a note)."""

    email: str
    given_name: str = ""
    family_name: str = ""
    org_role: Role = Role.VIEWER
    projects: dict[str, Role] = field(default_factory=dict)
    modules: tuple[Module, ...] = ()
    note: str = ""
    default_project: str | None = None


@runtime_checkable
class MemberDirectory(Protocol):
    """Who is in the org (joined or invited), and removing them."""

    def get_member(self, email: str) -> Member | None:
        """The member with exactly this email (case-insensitive), or None."""
        ...

    def list_members(self) -> Iterator[Member]:
        """Every member, paged through as the backend allows."""
        ...

    def remove_member(self, email: str) -> WriteResult:
        """Remove a member or revoke their pending invite; ``noop`` when already gone.

        Raises:
            ConflictError: the backend refuses (e.g. the sole Admin of the org or a project).
        """
        ...


@runtime_checkable
class Inviter(Protocol):
    """Inviting a person, and nothing more (a SCIM-only backend such as real Amplitude)."""

    def invite(self, spec: InviteSpec) -> WriteResult:
        """Invite (``created``), or ``noop`` when already a member or invited."""
        ...


@runtime_checkable
class Invitations(Protocol):
    def invite(self, spec: InviteSpec) -> WriteResult:
        """Invite (``created``), or ``noop`` when the person is already a member or invited."""
        ...

    def list_invitations(self, state: str | None = None) -> list[Invitation]: ...

    def resend_invitation(self, email: str) -> WriteResult: ...

    def revoke_invitation(self, email: str) -> WriteResult:
        """``deleted``, or ``noop`` when no invitation is pending."""
        ...


@runtime_checkable
class ProjectAccess(Protocol):
    """Org role and per-project roles (effective = highest of individual and group grants)."""

    def list_projects(self) -> list[Project]: ...

    def effective_access(self, email: str) -> list[ProjectGrant]: ...

    def set_org_role(self, email: str, role: Role) -> WriteResult: ...

    def set_project_role(self, email: str, project: str, role: Role | None) -> WriteResult:
        """Set the individual grant (``None`` removes it); group grants are untouched."""
        ...


@runtime_checkable
class ModuleAccess(Protocol):
    def get_modules(self, email: str) -> list[Module]: ...

    def set_modules(
        self, email: str, *, grant: Iterable[Module] = (), revoke: Iterable[Module] = ()
    ) -> WriteResult: ...


@runtime_checkable
class PermissionGroups(Protocol):
    def list_groups(self) -> list[PermissionGroup]: ...

    def add_group_members(self, group_id: str, emails: Sequence[str]) -> WriteResult: ...

    def remove_group_members(self, group_id: str, emails: Sequence[str]) -> WriteResult:
        """Individual grants of the people removed stay (the product's rule)."""
        ...


@runtime_checkable
class AssetOwnership(Protocol):
    def list_assets(
        self,
        *,
        owner: str | None = None,
        former_owner: str | None = None,
        unassigned: bool | None = None,
        held_by: str | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[Asset]:
        """Assets matching every filter given: ``held_by`` is what a person owns or, removed,
        left unassigned (``owner`` or ``former_owner``) in one read; ``ids`` those assets only."""
        ...

    def transfer_assets(self, asset_ids: Sequence[str], to: str) -> WriteResult:
        """Transfer (final); ``noop`` for assets the receiver owns already.

        Raises:
            ConflictError: the receiver is not joined or has not logged in within 30 days.
        """
        ...

    def transfer_all(self, from_email: str, to: str, *, project: str | None = None) -> WriteResult:
        """Everything ``from_email`` owns, or left unassigned, goes to ``to`` (bulk transfer)."""
        ...


@runtime_checkable
class KeyManagement(Protocol):
    def list_keys(self, *, manager: str | None = None) -> list[ApiKeyInfo]: ...

    def rotate_key(
        self, key_id: str, *, idempotency_key: str | None = None
    ) -> tuple[WriteResult, SecretStr]:
        """A new secret (the old one stops working at once); the secret is a SecretStr. The same
        ``idempotency_key`` again returns the same rotation instead of a second one."""
        ...

    def revoke_key(self, key_id: str) -> WriteResult: ...

    def remove_key_manager(self, key_id: str, email: str) -> WriteResult:
        """Take a leaver off a key's managers, so a later run does not rotate it again."""
        ...


@runtime_checkable
class OrgActivityLog(Protocol):
    def events(
        self,
        *,
        actor: str | None = None,
        target: str | None = None,
        since: datetime | None = None,
        action: str | None = None,
    ) -> list[OrgEvent]: ...


# ---------------------------------------------------------------------------- identity provider
@runtime_checkable
class UserDirectory(Protocol):
    def find_user(self, email: str) -> IdpUser | None:
        """By userName or email, case-insensitive."""
        ...

    def create_user(
        self, *, email: str, given_name: str = "", family_name: str = "", active: bool = True
    ) -> tuple[WriteResult, IdpUser]: ...

    def set_active(self, user_id: str, active: bool) -> WriteResult: ...


@runtime_checkable
class GroupMembership(Protocol):
    def list_groups(self) -> list[IdpGroup]: ...

    def find_group(self, name: str) -> IdpGroup | None: ...

    def groups_of(self, user_id: str) -> list[IdpGroup]: ...

    def add_to_group(self, group_id: str, user_id: str) -> WriteResult: ...

    def remove_from_group(self, group_id: str, user_id: str) -> WriteResult: ...


@runtime_checkable
class SessionControl(Protocol):
    """Ending a user's sign-in sessions at the IdP (Okta's "Clear User Sessions", Graph's
    ``revokeSignInSessions``): deactivation stops new sign-ins, but a live session keeps working
    until it expires. A generic SCIM 2.0 IdP has no such API."""

    def end_sessions(self, user_id: str) -> WriteResult:
        """End every session of the user, and the OAuth tokens the IdP issued them where its
        API allows. Raises ``NotFoundError`` for an unknown user."""
        ...

    def sessions_ended_since(self, user_id: str, when: datetime) -> bool | None:
        """Whether the IdP says every session of the user begun before ``when`` is ended;
        ``None`` where its API cannot say (the verification then reports what the API
        answered when the sessions were ended, never a pass it did not read)."""
        ...


@runtime_checkable
class IdentityProvider(UserDirectory, GroupMembership, Protocol):
    """What every IdP connector offers (SCIM 2.0 and the vendors' APIs alike): its users and
    their group memberships."""


# ---------------------------------------------------------------------------- people systems
@dataclass(frozen=True)
class MessageRef:
    """Where a posted message lives (to update it later)."""

    channel: str
    ts: str


@runtime_checkable
class Messenger(Protocol):
    def user_id(self, email: str) -> str | None: ...

    def email_of(self, user_id: str) -> str | None: ...

    def dm(self, email: str, text: str, blocks: list[dict[str, Any]] | None = None) -> MessageRef:
        """A direct message to a person, found by email."""
        ...

    def post(
        self, channel: str, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> MessageRef: ...

    def update(
        self, ref: MessageRef, text: str, blocks: list[dict[str, Any]] | None = None
    ) -> WriteResult: ...

    def open_view(self, trigger_id: str, view: dict[str, Any]) -> str:
        """Open a modal for the person whose click carried ``trigger_id``; the view's id."""
        ...


@runtime_checkable
class ChatMembers(Protocol):
    """Who an account of the chat workspace is: what a click is checked against."""

    def member(self, user_id: str) -> ChatMember | None:
        """The account behind ``user_id`` as the workspace describes it now (never cached:
        deactivation and guest status change), or None when the workspace has no such user.

        Raises:
            ConnectorError: the workspace could not be asked.
        """
        ...


@runtime_checkable
class Tickets(Protocol):
    def create(
        self,
        *,
        project: str,
        issue_type: str,
        summary: str,
        description: str = "",
        labels: Sequence[str] = (),
        once: str | None = None,
    ) -> Ticket:
        """``once``: a label naming the request; an issue carrying it is returned, not
        created again."""
        ...

    def get(self, key: str) -> Ticket: ...

    def comment(self, key: str, body: str) -> WriteResult: ...

    def search(self, jql: str, *, limit: int = 50) -> list[Ticket]: ...

    def transition_to(self, key: str, status: str) -> WriteResult:
        """Move to ``status`` by the transition whose target it is; ``noop`` if already there."""
        ...

    def read_access_request(self, key: str, *, today: date | None = None) -> AccessRequest:
        """The access request an Access Request ticket carries.

        Raises:
            AccessRequestError: what is wrong with it, every problem with its line.
        """
        ...


@runtime_checkable
class Roster(Protocol):
    def get(self, email: str) -> RosterEntry | None: ...

    def entries(self) -> list[RosterEntry]: ...


@runtime_checkable
class HrDirectory(Protocol):
    """The HR system's API read by its own employee id (connectors/hris: HiBob, BambooHR,
    Merge, Personio): how a vendor webhook that names only an id is resolved to a person."""

    def employee(self, employee_id: str) -> HrEmployee | None:
        """The employee with this HR id, or None when the HR system knows nobody by it.

        Raises:
            ConnectorError: the HR system refused (AuthError) or could not answer.
        """
        ...


ALL_CAPABILITIES: tuple[type, ...] = (
    MemberDirectory,
    Inviter,
    Invitations,
    ProjectAccess,
    ModuleAccess,
    PermissionGroups,
    AssetOwnership,
    KeyManagement,
    OrgActivityLog,
    UserDirectory,
    GroupMembership,
    SessionControl,
    Messenger,
    ChatMembers,
    Tickets,
    Roster,
    HrDirectory,
)
