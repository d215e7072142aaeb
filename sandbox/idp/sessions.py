"""The IdP users' sign-in sessions and vendor lifecycle state, shared by the imitations of
Okta's Management API and Microsoft Graph (both read and end the same sessions), the sandbox's
OpenID Connect provider (a sign-in starts one) and the ``/_sandbox/idp/sessions`` controls.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from sandbox.idp.models import IdpResource, IdpSession, IdpUserState


@dataclass(frozen=True)
class SessionView:
    """One session as the controls show it."""

    id: str
    client: str
    created_at: str
    ended_at: str | None
    tokens_revoked: bool


def start_session(s: Session, user_id: str, now: datetime, client: str = "") -> str:
    """A new live session of the user; its id."""
    sid = "102" + secrets.token_urlsafe(18)  # Okta's session ids start so; opaque elsewhere
    s.add(IdpSession(id=sid, user_id=user_id, client=client, created_at=now))
    return sid


def end_sessions(s: Session, user_id: str, now: datetime, *, tokens: bool) -> int:
    """End every live session of the user (and mark their OAuth tokens revoked when
    ``tokens``); the number ended. Also what a revocation leaves readable: Graph's
    ``signInSessionsValidFromDateTime`` becomes ``now``."""
    result = s.execute(
        update(IdpSession)
        .where(IdpSession.user_id == user_id, IdpSession.ended_at.is_(None))
        .values(ended_at=now, tokens_revoked=tokens)
    )
    state = state_of(s, user_id)
    state.sessions_valid_from = now
    return int(getattr(result, "rowcount", 0) or 0)


def live_sessions(s: Session, user_id: str) -> list[IdpSession]:
    """The user's sessions not ended, oldest first."""
    return list(
        s.scalars(
            select(IdpSession)
            .where(IdpSession.user_id == user_id, IdpSession.ended_at.is_(None))
            .order_by(IdpSession.created_at)
        )
    )


def sessions_of(s: Session, user_id: str) -> list[SessionView]:
    """Every session of the user, oldest first, as the controls show them."""
    rows = s.scalars(
        select(IdpSession).where(IdpSession.user_id == user_id).order_by(IdpSession.created_at)
    )
    return [
        SessionView(
            id=r.id,
            client=r.client,
            created_at=r.created_at.isoformat(),
            ended_at=r.ended_at.isoformat() if r.ended_at else None,
            tokens_revoked=r.tokens_revoked,
        )
        for r in rows
    ]


def state_of(s: Session, user_id: str) -> IdpUserState:
    """The user's vendor state row, created (empty) when missing."""
    state = s.get(IdpUserState, user_id)
    if state is None:
        state = IdpUserState(user_id=user_id)
        s.add(state)
        s.flush()
    return state


def okta_status(s: Session, row: IdpResource) -> str:
    """The user's Okta lifecycle status: the one Okta's API last set, else what SCIM's
    ``active`` implies (ACTIVE, or DEPROVISIONED once deactivated)."""
    state = s.get(IdpUserState, row.id)
    if state is not None and state.status:
        # A SCIM or control change of `active` since overrides a status it contradicts.
        active_statuses = {"ACTIVE", "PROVISIONED", "RECOVERY", "PASSWORD_EXPIRED", "LOCKED_OUT"}
        if row.active and state.status in active_statuses:
            return state.status
        if not row.active and state.status not in active_statuses:
            return state.status
    return "ACTIVE" if row.active else "DEPROVISIONED"
