"""Domain models: what Handover reasons about, apart from any vendor's wire format.

Connectors convert their payloads into these at the edge (STYLE.md point 12); planning and
policy (pure functions, no I/O) take and return them.
"""

from __future__ import annotations

import unicodedata
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from domain.escaping import quoted


def _email(value: str) -> str:
    """Emails are identifiers: trimmed, lower-case, exactly one @, a dotted domain."""
    v = value.strip().lower()
    local, _, domain = v.partition("@")
    if (
        not local
        or "@" in domain
        or "." not in domain
        or domain.startswith(".")
        or domain.endswith(".")
        or any(c.isspace() for c in v)
        or len(v) > 320
    ):
        raise ValueError(f"{quoted(value)} is not a valid email address")
    return v


Email = Annotated[str, AfterValidator(_email)]

# Besides letters, marks and digits (any script), what a plain local part may hold: the
# characters real mailboxes use. RFC 5322 allows more ({, }, |, `, $, /, =, …), and so do
# template, shell and SQL injection strings; no person's address needs them.
_LOCAL_EXTRA = frozenset(".+-_'")


def _word(c: str) -> bool:
    return unicodedata.category(c)[0] in "LMN"


def visible(value: str) -> str:
    """``value`` unchanged, or ValueError when it holds control, format (bidi overrides,
    zero-width joiners), private-use or unassigned characters: text a person typed and another
    reads must show what it says."""
    bad = [c for c in value if unicodedata.category(c).startswith("C")]
    if bad:
        names = ", ".join(sorted({f"U+{ord(c):04X}" for c in bad})[:5])
        raise ValueError(f"contains invisible or control characters ({names})")
    return value


def _plain_label(label: str) -> bool:
    return (
        0 < len(label) <= 63
        and all(_word(c) or c == "-" for c in label)
        and label[0] != "-"
        and label[-1] != "-"
        and not unicodedata.category(label[0]).startswith("M")
    )


def _plain_email(value: str) -> str:
    visible(value)
    local, _, domain = value.partition("@")
    if (
        not all(_word(c) or c in _LOCAL_EXTRA for c in local)
        or local.startswith(".")
        or local.endswith(".")
        or ".." in local
        or not all(_plain_label(label) for label in domain.split("."))
    ):
        raise ValueError(
            f"{value[:100]!r} is not a plain email address (before the @ only letters, digits "
            "and . _ + - '; after it, dot-separated labels of letters, digits and hyphens)"
        )
    return value


PlainEmail = Annotated[Email, AfterValidator(_plain_email)]
"""An ``Email`` as people and systems send it to us: letters, digits and ``. _ + - '`` before
the @ (no quoting, brackets, commas, semicolons, braces, backticks…), no invisible or control
characters. Look-alike *letters* (a Cyrillic U+0430 for a Latin "a") are letters: such an
address is valid and kept exactly as written (matching is exact; the runbooks report look-alike
accounts)."""


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Role(StrEnum):
    """Org and project roles, lowest first."""

    VIEWER = "viewer"
    MEMBER = "member"
    MANAGER = "manager"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)


class Module(StrEnum):
    GOVERN = "govern"
    EXPERIMENT = "experiment"
    AUDIENCES = "audiences"
    DATA_TABLES = "data_tables"


class AssetKind(StrEnum):
    DASHBOARD = "dashboard"
    CHART = "chart"
    NOTEBOOK = "notebook"
    COHORT = "cohort"
    METRIC = "metric"
    TRACKING_PLAN = "tracking_plan"
    PIPELINE = "pipeline"


class Effect(StrEnum):
    """What a write did (STYLE.md point 3)."""

    CREATED = "created"
    UPDATED = "updated"
    DELETED = "deleted"
    NOOP = "noop"
    ATTESTED = "attested"  # a person did it by hand (a human task) and said so


class WriteResult(Frozen):
    """The outcome of an idempotent write: its effect, and why when nothing was done."""

    effect: Effect
    reason: str = ""
    detail: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def noop(cls, reason: str, **detail: Any) -> WriteResult:
        return cls(effect=Effect.NOOP, reason=reason, detail=detail)

    def __str__(self) -> str:
        return f"noop({self.reason})" if self.effect is Effect.NOOP else self.effect.value


class ProjectGrant(Frozen):
    """A member's effective role in one project, and where it comes from."""

    project: str
    role: Role
    sources: tuple[str, ...] = ()  # "individual", "group:<name>"


class Member(Frozen):
    """A person (or service account) in the org, joined or invited."""

    email: Email
    given_name: str = ""
    family_name: str = ""
    org_role: Role | None = None  # None where the backend does not say (real Amplitude SCIM)
    status: str = "joined"  # joined | pending
    last_login_at: datetime | None = None
    invited_at: datetime | None = None
    note: str = ""
    idp_managed: bool = False
    modules: tuple[Module, ...] = ()
    projects: tuple[ProjectGrant, ...] = ()
    groups: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.given_name} {self.family_name}".strip()


class Invitation(Frozen):
    email: Email
    state: str  # pending | expired | accepted | revoked
    sent_at: datetime
    last_sent_at: datetime
    expires_at: datetime
    resend_count: int = 0
    invited_by: str = ""


class PermissionGroup(Frozen):
    id: str
    name: str
    members: tuple[str, ...] = ()
    projects: dict[str, Role] = Field(default_factory=dict)
    idp_managed: bool = False


class Project(Frozen):
    id: str
    name: str
    environment: str = ""
    admins: tuple[str, ...] = ()


class Asset(Frozen):
    id: str
    kind: AssetKind
    name: str
    project: str
    owner: str | None  # None: unassigned
    former_owner: str | None = None


class ApiKey(Frozen):
    """An API key as people see it: never the secret, only a hint."""

    id: str
    name: str
    kind: str
    project: str
    managers: tuple[str, ...]
    status: str
    secret_hint: str = ""
    rotation_count: int = 0


class OrgEvent(Frozen):
    at: datetime
    actor: str
    action: str
    target: str = ""
    details: dict[str, Any] = Field(default_factory=dict)


class IdpUser(Frozen):
    id: str
    user_name: str
    email: str | None = None  # the primary (or first) email
    given_name: str = ""
    family_name: str = ""
    active: bool = True
    groups: tuple[str, ...] = ()
    emails: tuple[str, ...] = ()  # every email, lower-case (aliases included)
    # The vendor's lifecycle state where it has one (Okta: STAGED, PROVISIONED, ACTIVE,
    # SUSPENDED, DEPROVISIONED, …); "" where ``active`` is all the IdP says (SCIM, Entra).
    status: str = ""

    @property
    def address(self) -> str:
        """The one address Handover records this person under: the userName when it is an
        address (what the person signs in with), else the primary email; "" when neither."""
        name = self.user_name.strip().lower()
        return name if "@" in name else (self.email or "")

    @property
    def addresses(self) -> tuple[str, ...]:
        """Every address this person is known by: the canonical one first, then aliases."""
        found = [self.address, self.user_name.strip().lower(), *(self.emails or ())]
        return tuple(dict.fromkeys(a for a in found if "@" in a))


class IdpGroup(Frozen):
    id: str
    name: str
    members: tuple[str, ...] = ()  # user ids


class RosterStatus(StrEnum):
    ACTIVE = "active"
    TERMINATED = "terminated"
    LEAVE = "leave"


class RosterEntry(Frozen):
    """One person in the HR roster."""

    email: Email
    name: str = Field(min_length=1, max_length=200)
    status: RosterStatus
    manager: Email | None = None
    department: str = ""
    end_date: date | None = None


class HrEmployee(RosterEntry):
    """One person as an HR system's API describes them: their roster entry and the HR system's
    own id for them (what a vendor's webhook names when it carries no email)."""

    id: str = Field(min_length=1, max_length=128)


class AccessRequest(Frozen):
    """An access request, parsed and validated from a ticket (INTERFACES.md)."""

    ticket: str | None = None
    email: Email
    projects: dict[str, Role] = Field(min_length=1)
    org_role: Role = Role.VIEWER
    modules: tuple[Module, ...] = ()
    until: date | None = None
    justification: str = ""
    sow: str = ""
    temporary: bool = False
    requester: str | None = None
    org: str = ""  # the org to join ("": the main one)


class Ticket(Frozen):
    key: str
    summary: str
    status: str
    issue_type: str
    description: str = ""
    labels: tuple[str, ...] = ()
    reporter: str | None = None  # the reporter's email, as Jira gives it; None when it gives none
    url: str = ""
    reporter_account: str = ""  # Jira's id of the reporter's account (accountId, or Server name)
    reporter_name: str = ""  # the display name: for messages only, never an identity
    request_type: str = ""  # Jira Service Management's request type name; "" outside JSM
