"""Wire payloads of the org backend, private to ``connectors.org`` (STYLE.md point 12).

SCIM resources as Amplitude speaks them and the admin API's JSON are validated on arrival and
turned into :mod:`domain.models` here, at the edge; nothing outside this package sees them.
Fields use the domain's own types (``Email``, ``Role``, ``Module``), so once an answer is parsed
its conversion cannot fail. Unknown fields are ignored (a vendor adding one must not break a
run); a missing or malformed field is a :class:`connectors.errors.PermanentError` naming the
operation, never a pydantic error leaking out of the connector.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, ValidationError

from connectors.errors import PermanentError
from domain.models import ApiKey as ApiKeyInfo
from domain.models import (
    Asset,
    AssetKind,
    Email,
    Invitation,
    Member,
    Module,
    OrgEvent,
    PermissionGroup,
    Project,
    ProjectGrant,
    Role,
)

SYSTEM = "org"
# Real Amplitude SCIM cannot tell a pending invitee (``active: true`` too) from a joined member.
UNKNOWN_STATUS = "unknown"


def _utc(value: datetime) -> datetime:
    # The backend's clock is UTC; a time without a zone is read as UTC rather than local time.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]
M = TypeVar("M", bound=BaseModel)


class Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


def parse(model: type[M], data: Any, *, operation: str, subject: str | None = None) -> M:
    """Validate an answer of the backend into ``model``.

    Raises:
        PermanentError: the answer does not have the documented shape (retrying cannot help).
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        where = ".".join(str(p) for p in errors[0]["loc"]) if errors else ""
        msg = errors[0]["msg"] if errors else "invalid"
        raise PermanentError(
            f"unexpected answer from the backend ({where}: {msg})",
            system=SYSTEM,
            operation=operation,
            subject=subject,
        ) from exc


# ---------------------------------------------------------------------------- SCIM
class ScimName(Wire):
    given_name: str | None = Field(None, alias="givenName")
    family_name: str | None = Field(None, alias="familyName")


class ScimUser(Wire):
    user_name: Email = Field(alias="userName")
    name: ScimName = Field(default_factory=ScimName)
    active: bool = True

    def to_member(self) -> Member:
        # SCIM carries neither org role nor status: say "unknown", do not guess "joined".
        return Member(
            email=self.user_name,
            given_name=self.name.given_name or "",
            family_name=self.name.family_name or "",
            org_role=None,
            status=UNKNOWN_STATUS,
        )


class ScimMemberRef(Wire):
    value: str


class ScimGroup(Wire):
    id: str
    display_name: str = Field(alias="displayName")
    members: list[ScimMemberRef] = Field(default_factory=list)

    def emails(self) -> set[str]:
        return {m.value.strip().lower() for m in self.members}

    def to_group(self) -> PermissionGroup:
        # SCIM groups say who is in them, not what they grant: projects stay empty.
        return PermissionGroup(
            id=self.id,
            name=self.display_name,
            members=tuple(sorted(self.emails())),
        )


R = TypeVar("R", bound=BaseModel)


class ScimList(Wire, Generic[R]):
    total_results: int = Field(alias="totalResults")
    resources: list[R] = Field(default_factory=list, alias="Resources")


# ---------------------------------------------------------------------------- admin API
class AdminSource(Wire):
    source: str
    role: Role
    group: str | None = None

    def label(self) -> str:
        return "individual" if self.source == "individual" else f"group:{self.group}"


class AdminProjectRole(Wire):
    project: str
    role: Role
    sources: list[AdminSource] = Field(default_factory=list)

    def to_grant(self) -> ProjectGrant:
        return ProjectGrant(
            project=self.project, role=self.role, sources=tuple(s.label() for s in self.sources)
        )


class AdminGroupRef(Wire):
    id: int
    display_name: str


class AdminMember(Wire):
    """A member as ``GET /members`` (summary) or ``GET /members/{email}`` (detail) gives it."""

    email: Email
    given_name: str = ""
    family_name: str = ""
    org_role: Role
    status: str
    invited_at: UtcDatetime | None = None
    last_login_at: UtcDatetime | None = None
    note: str = ""
    idp_managed: bool = False
    modules: list[Module] = Field(default_factory=list)
    projects: list[AdminProjectRole] = Field(default_factory=list)
    groups: list[AdminGroupRef] = Field(default_factory=list)

    def to_member(self) -> Member:
        return Member(
            email=self.email,
            given_name=self.given_name,
            family_name=self.family_name,
            org_role=self.org_role,
            status=self.status,
            last_login_at=self.last_login_at,
            invited_at=self.invited_at,
            note=self.note,
            idp_managed=self.idp_managed,
            modules=tuple(self.modules),
            projects=tuple(p.to_grant() for p in self.projects),
            # Group ids (what add/remove_group_members take), not display names.
            groups=tuple(str(g.id) for g in self.groups),
        )


class AdminMemberPage(Wire):
    total: int
    members: list[AdminMember]


class AdminEffectiveRoles(Wire):
    projects: list[AdminProjectRole]


class AdminInvitation(Wire):
    email: Email
    state: str
    sent_at: UtcDatetime
    last_sent_at: UtcDatetime
    expires_at: UtcDatetime
    resend_count: int = 0
    invited_by: str = ""

    def to_invitation(self) -> Invitation:
        return Invitation(
            email=self.email,
            state=self.state,
            sent_at=self.sent_at,
            last_sent_at=self.last_sent_at,
            expires_at=self.expires_at,
            resend_count=self.resend_count,
            invited_by=self.invited_by,
        )


class AdminInvited(Wire):
    invitation: AdminInvitation


class AdminInvitations(Wire):
    invitations: list[AdminInvitation]


class AdminProject(Wire):
    id: int
    name: str
    environment: str = ""
    admins: list[str] = Field(default_factory=list)

    def to_project(self) -> Project:
        return Project(
            id=str(self.id), name=self.name, environment=self.environment, admins=tuple(self.admins)
        )


class AdminProjects(Wire):
    projects: list[AdminProject]


class AdminChange(Wire):
    """The answer of ``PUT``/``DELETE`` on a role: old and new, and whether anything changed."""

    changed: bool
    old: str | None = None
    new: str | None = None
    effective: str | None = None


class AdminModules(Wire):
    modules: list[Module]
    changed: bool


class AdminGroup(Wire):
    id: int
    display_name: str
    idp_managed: bool = False
    projects: dict[str, Role] = Field(default_factory=dict)
    members: list[str] = Field(default_factory=list)

    def to_group(self) -> PermissionGroup:
        return PermissionGroup(
            id=str(self.id),
            name=self.display_name,
            members=tuple(sorted(self.members)),
            projects=dict(self.projects),
            idp_managed=self.idp_managed,
        )


class AdminGroups(Wire):
    groups: list[AdminGroup]


class AdminAsset(Wire):
    id: int
    kind: AssetKind
    name: str
    project: str | None = None
    project_id: int
    owner: str | None = None
    former_owner: str | None = None

    def to_asset(self) -> Asset:
        return Asset(
            id=str(self.id),
            kind=self.kind,
            name=self.name,
            project=self.project or str(self.project_id),
            owner=self.owner,
            former_owner=self.former_owner,
        )


class AdminAssetPage(Wire):
    total: int
    assets: list[AdminAsset]


class AdminTransfer(Wire):
    transferred: list[int]
    unchanged: list[int] = Field(default_factory=list)
    to: str
    warnings: list[str] = Field(default_factory=list)


class AdminApiKey(Wire):
    id: int
    name: str
    kind: str
    project: str
    managers: list[str] = Field(default_factory=list)
    status: str
    secret_hint: str = ""
    rotation_count: int = 0

    def to_key(self) -> ApiKeyInfo:
        return ApiKeyInfo(
            id=str(self.id),
            name=self.name,
            kind=self.kind,
            project=self.project,
            managers=tuple(self.managers),
            status=self.status,
            secret_hint=self.secret_hint,
            rotation_count=self.rotation_count,
        )


class AdminApiKeys(Wire):
    api_keys: list[AdminApiKey]


class AdminRotatedKey(AdminApiKey):
    # A SecretStr from the moment it is parsed: no repr, log line or error shows it.
    secret: SecretStr


class AdminRevokedKey(AdminApiKey):
    changed: bool


class AdminEvent(Wire):
    at: UtcDatetime
    actor: str
    action: str
    target: str = ""
    details: dict[str, Any] = Field(default_factory=dict)

    def to_event(self) -> OrgEvent:
        return OrgEvent(
            at=self.at,
            actor=self.actor,
            action=self.action,
            target=self.target,
            details=self.details,
        )


class AdminEvents(Wire):
    events: list[AdminEvent]
