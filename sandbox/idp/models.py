"""Tables of the sandbox identity provider: SCIM resources, group membership, provisioning errors.

Each SCIM resource is kept whole as JSON (what scim2-server validated), with a few columns
copied out of it for lookups. Living on :class:`sandbox.db.Base` puts them in the world's one
database, so a restart keeps them and ``/_sandbox/reset`` wipes them with everything else.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from sandbox.db import Base


class IdpResource(Base):
    """One SCIM resource (a User or a Group)."""

    __tablename__ = "idp_resources"
    # userName (Users) and displayName (Groups) are unique per type, compared as SCIM compares
    # caseExact=false strings; the database enforces it too, as a last line of defence.
    __table_args__ = (UniqueConstraint("type", "name_key"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    type: Mapped[str] = mapped_column(String(32), index=True)  # User | Group
    user_name: Mapped[str | None] = mapped_column(String(320), default=None)
    display_name: Mapped[str | None] = mapped_column(String(320), default=None)
    # The comparison key of userName (Users) or displayName (Groups): lower-case, NFC.
    name_key: Mapped[str] = mapped_column(String(320), index=True)
    # The address the org knows the person by (userName, or the primary email), lower-case.
    email: Mapped[str | None] = mapped_column(String(320), index=True, default=None)
    active: Mapped[bool] = mapped_column(default=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # The resource as SCIM JSON, without id, meta, password and the computed User.groups.
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class IdpGroupMember(Base):
    """Index of Group.members (the JSON stays the truth), to find a user's groups quickly."""

    __tablename__ = "idp_group_members"

    group_id: Mapped[str] = mapped_column(
        ForeignKey("idp_resources.id", ondelete="CASCADE"), primary_key=True
    )
    member_id: Mapped[str] = mapped_column(
        ForeignKey("idp_resources.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class IdpProvisioningError(Base):
    """A push into the org that failed; a real IdP shows these to its admins, and so do we."""

    __tablename__ = "idp_provisioning_errors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime]
    email: Mapped[str] = mapped_column(String(320), index=True)
    action: Mapped[str] = mapped_column(String(32))
    trigger: Mapped[str] = mapped_column(String(200), default="")
    errors: Mapped[list[Any]] = mapped_column(JSON, default=list)


class OidcCode(Base):
    """An authorization code of the OIDC provider (sandbox.idp.oidc): single use, short-lived,
    bound to its client, redirect URI and PKCE challenge."""

    __tablename__ = "idp_oidc_codes"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    redirect_uri: Mapped[str] = mapped_column(String(2000))
    user_id: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(200), default="openid")
    nonce: Mapped[str | None] = mapped_column(String(500), default=None)
    code_challenge: Mapped[str] = mapped_column(String(128))
    auth_time: Mapped[datetime]
    expires_at: Mapped[datetime]
    used: Mapped[bool] = mapped_column(default=False)


class OidcDeviceGrant(Base):
    """One device authorization (RFC 8628): pending until the person enters the user code and
    signs in (approved) or declines (denied); ``used`` once its tokens were issued."""

    __tablename__ = "idp_oidc_device_grants"

    device_code: Mapped[str] = mapped_column(String(64), primary_key=True)
    # Stored normalised: upper-case, without the dash shown to the person.
    user_code: Mapped[str] = mapped_column(String(16), unique=True, index=True)
    client_id: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(200), default="openid")
    status: Mapped[str] = mapped_column(String(16), default="pending")  # approved|denied|used
    user_id: Mapped[str | None] = mapped_column(String(64), default=None)
    auth_time: Mapped[datetime | None] = mapped_column(default=None)
    interval: Mapped[int] = mapped_column(Integer, default=5)
    last_poll_at: Mapped[datetime | None] = mapped_column(default=None)
    expires_at: Mapped[datetime]


class IdpSession(Base):
    """One sign-in session of an IdP user (the sandbox's OpenID Connect sign-ins start one;
    tests start them through ``/_sandbox/idp/sessions``): live until ended, by the user's
    Okta "Clear User Sessions" or Graph ``revokeSignInSessions``."""

    __tablename__ = "idp_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        ForeignKey("idp_resources.id", ondelete="CASCADE"), index=True
    )
    client: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime]
    ended_at: Mapped[datetime | None] = mapped_column(default=None)
    # Whether the OAuth tokens issued in this session were revoked too (Okta's oauthTokens=true;
    # Graph always revokes refresh tokens with the sessions).
    tokens_revoked: Mapped[bool] = mapped_column(default=False)


class IdpUserState(Base):
    """What the vendors' APIs say of a user beyond SCIM's ``active``: Okta's lifecycle status
    and Graph's ``signInSessionsValidFromDateTime``. A user without a row is ACTIVE or
    DEPROVISIONED as its ``active`` says, with no revocation yet."""

    __tablename__ = "idp_user_states"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("idp_resources.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(32), default="")
    status_changed: Mapped[datetime | None] = mapped_column(default=None)
    sessions_valid_from: Mapped[datetime | None] = mapped_column(default=None)
