"""Tables of the sandbox org backend (members, projects, roles, modules, groups, invitations,
assets, transfers, API keys, org audit log).

Email is the member's identifier, as in Amplitude: it is the primary key and never changes;
an email change is a new member. A pending invitee is a member with status ``pending``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from sandbox.db import Base


class Role(StrEnum):
    """Org and project roles, lowest first (the order is used for 'highest grant wins')."""

    VIEWER = "viewer"
    MEMBER = "member"
    MANAGER = "manager"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return list(Role).index(self)


class Module(StrEnum):
    """Add-on modules, granted separately from roles."""

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


INVITE_TTL_DAYS = 14
RECEIVER_LOGIN_DAYS = 30


class Member(Base):
    __tablename__ = "org_members"

    email: Mapped[str] = mapped_column(String(320), primary_key=True)  # stored lower-case
    given_name: Mapped[str] = mapped_column(String(200), default="")
    family_name: Mapped[str] = mapped_column(String(200), default="")
    org_role: Mapped[str] = mapped_column(String(16), default=Role.VIEWER.value)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | joined
    invited_at: Mapped[datetime]
    joined_at: Mapped[datetime | None] = mapped_column(default=None)
    last_login_at: Mapped[datetime | None] = mapped_column(default=None)
    note: Mapped[str] = mapped_column(String(2000), default="")
    default_project_id: Mapped[int | None] = mapped_column(default=None)
    idp_managed: Mapped[bool] = mapped_column(default=False)


class Project(Base):
    __tablename__ = "org_projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    environment: Mapped[str] = mapped_column(String(32), default="production")


class ProjectRole(Base):
    """An individual project grant (group grants live on the group)."""

    __tablename__ = "org_project_roles"

    email: Mapped[str] = mapped_column(
        ForeignKey("org_members.email", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[int] = mapped_column(
        ForeignKey("org_projects.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(16))


class ModuleGrant(Base):
    __tablename__ = "org_module_grants"

    email: Mapped[str] = mapped_column(
        ForeignKey("org_members.email", ondelete="CASCADE"), primary_key=True
    )
    module: Mapped[str] = mapped_column(String(32), primary_key=True)


class PermissionGroup(Base):
    __tablename__ = "org_groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), unique=True)
    # Set when the group is pushed by the IdP (SCIM push groups); the IdP mapping then wins.
    idp_managed: Mapped[bool] = mapped_column(default=False)


class GroupProjectRole(Base):
    __tablename__ = "org_group_project_roles"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("org_groups.id", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[int] = mapped_column(
        ForeignKey("org_projects.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(16))


class GroupMember(Base):
    __tablename__ = "org_group_members"

    group_id: Mapped[int] = mapped_column(
        ForeignKey("org_groups.id", ondelete="CASCADE"), primary_key=True
    )
    email: Mapped[str] = mapped_column(
        ForeignKey("org_members.email", ondelete="CASCADE"), primary_key=True
    )


class Invitation(Base):
    """The lifecycle of one invite; the pending member row carries the roles it grants."""

    __tablename__ = "org_invitations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    invited_by: Mapped[str] = mapped_column(String(320), default="")
    sent_at: Mapped[datetime]
    last_sent_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    resend_count: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    # pending | accepted | revoked   (expired is derived from expires_at and the clock)
    decided_at: Mapped[datetime | None] = mapped_column(default=None)


class Asset(Base):
    __tablename__ = "org_assets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    name: Mapped[str] = mapped_column(String(300))
    project_id: Mapped[int] = mapped_column(ForeignKey("org_projects.id"), index=True)
    # None = unassigned (the owner was removed); former_owner keeps who it belonged to.
    owner_email: Mapped[str | None] = mapped_column(String(320), index=True, default=None)
    former_owner_email: Mapped[str | None] = mapped_column(String(320), index=True, default=None)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Transfer(Base):
    """An ownership transfer; there is no undo (the product offers none)."""

    __tablename__ = "org_transfers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset_id: Mapped[int] = mapped_column(ForeignKey("org_assets.id"))
    from_email: Mapped[str | None] = mapped_column(String(320))
    to_email: Mapped[str] = mapped_column(String(320))
    actor: Mapped[str] = mapped_column(String(320))
    at: Mapped[datetime]


class ApiKey(Base):
    __tablename__ = "org_api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32), default="ingestion")  # ingestion | export
    project_id: Mapped[int] = mapped_column(ForeignKey("org_projects.id"))
    managers: Mapped[list[Any]] = mapped_column(JSON, default=list)  # emails
    secret_hash: Mapped[str] = mapped_column(String(64), index=True)
    secret_hint: Mapped[str] = mapped_column(String(16))  # last 4 characters, for people
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | revoked
    created_at: Mapped[datetime]
    rotated_at: Mapped[datetime | None] = mapped_column(default=None)
    rotation_count: Mapped[int] = mapped_column(default=0)


class OrgEvent(Base):
    """The org's own audit log: logins, exports, changes (what a security review reads)."""

    __tablename__ = "org_audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(320), index=True)
    action: Mapped[str] = mapped_column(String(64), index=True)
    target: Mapped[str] = mapped_column(String(320), default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


__all__ = [
    "INVITE_TTL_DAYS",
    "RECEIVER_LOGIN_DAYS",
    "ApiKey",
    "Asset",
    "AssetKind",
    "GroupMember",
    "GroupProjectRole",
    "Invitation",
    "Member",
    "Module",
    "OrgEvent",
    "PermissionGroup",
    "Project",
    "ProjectRole",
    "Role",
    "Transfer",
    "UniqueConstraint",
]
