"""What the rest of the sandbox asks of the IdP (seeds, sign-in, the tests) and its
``/_sandbox/idp`` controls: re-sync everyone, list provisioning errors.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from scim2_models import Resource
from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.idp.directory import (
    GROUP,
    GROUP_SCHEMA,
    PROVIDER,
    USER,
    USER_SCHEMA,
    Directory,
    resource_model,
)
from sandbox.idp.models import IdpProvisioningError, IdpResource
from sandbox.idp.sessions import sessions_of, start_session
from sandbox.org.provisioning import PushResult
from sandbox.org.service import norm_email
from sandbox.world import World

control_router = APIRouter(prefix="/_sandbox/idp", tags=["sandbox control"])


def _model(type_: str, data: dict[str, Any]) -> Resource[Any]:
    with PROVIDER:
        return resource_model(type_).model_validate(data)


def idp_user_active(session: Session, email: str) -> bool | None:
    """True/False for a known IdP user, ``None`` when the IdP does not know the email."""
    rows = session.scalars(
        select(IdpResource.active).where(
            IdpResource.type == USER, IdpResource.email == norm_email(email)
        )
    ).all()
    return any(rows) if rows else None


def ensure_idp_user(
    session: Session,
    now: datetime,
    *,
    email: str,
    given_name: str,
    family_name: str,
    active: bool = True,
    aliases: tuple[str, ...] = (),
) -> str:
    """The IdP user with this email (userName), created or brought up to date; pushed into the
    org. ``aliases``: more addresses of the same person (``emails`` of type ``other``, never
    primary), as directories keep a person's old or short addresses. Returns its SCIM id.
    Idempotent."""
    d = Directory(session, now, trigger="ensure_idp_user")
    email = norm_email(email)
    name = {k: v for k, v in (("givenName", given_name), ("familyName", family_name)) if v}
    emails = [{"value": email, "type": "work", "primary": True}] + [
        {"value": norm_email(a), "type": "other"} for a in aliases if norm_email(a) != email
    ]
    row = d.find(USER, email)
    if row is None:
        user = _model(
            USER,
            {
                "schemas": [USER_SCHEMA],
                "userName": email,
                "name": name,
                "displayName": f"{given_name} {family_name}".strip() or email,
                "emails": emails,
                "active": active,
            },
        )
        return str(d.create(USER, user).id)
    data = {**row.data, "name": {**(row.data.get("name") or {}), **name}, "active": active}
    if aliases:
        data["emails"] = emails
    if data != row.data:
        d.update(USER, _model(USER, {**data, "id": row.id}))
    return row.id


def ensure_idp_group(session: Session, now: datetime, name: str, members: list[str]) -> str:
    """The IdP group of this name, holding at least ``members`` (SCIM ids or emails of IdP
    users; others stay); every listed member is pushed into the org. Returns its SCIM id.
    Idempotent.

    Raises:
        ValueError: a member is not an IdP user.
    """
    d = Directory(session, now, trigger="ensure_idp_group")
    ids = list(dict.fromkeys(_user_id(d, m) for m in members))
    row = d.find(GROUP, name)
    if row is None:
        group = _model(
            GROUP,
            {
                "schemas": [GROUP_SCHEMA],
                "displayName": name,
                "members": [{"value": i, "type": USER} for i in ids],
            },
        )
        return str(d.create(GROUP, group).id)  # pushes every member
    current = list(row.data.get("members") or [])
    have = {m.get("value") for m in current}
    added = [i for i in ids if i not in have]
    if added:
        current += [{"value": i, "type": USER} for i in added]
        d.update(GROUP, _model(GROUP, {**row.data, "id": row.id, "members": current}))
    d.push(set(ids) - set(added))  # the update pushed the added ones
    return row.id


def _user_id(d: Directory, ref: str) -> str:
    row = d.s.get(IdpResource, ref)
    if row is None or row.type != USER:
        row = d.find(USER, ref) or d.s.scalar(
            select(IdpResource).where(
                IdpResource.type == USER, IdpResource.email == norm_email(ref)
            )
        )
    if row is None:
        raise ValueError(f"{ref!r} is not a user of the identity provider")
    return row.id


def sync_all(session: Session, now: datetime) -> list[PushResult]:
    """Push every IdP user into the org, and deprovision the org members the IdP provisioned
    but no longer knows (what an IdP's "re-push all" does)."""
    return Directory(session, now, trigger="sync").sync()


def _world(request: Request) -> World:
    world: World = request.app.state.world  # Starlette's State is untyped: one set per app
    return world


@control_router.post("/sync")
def sync(request: Request) -> dict[str, Any]:
    """Re-push every IdP user; returns each push's result and a count per action."""
    world = _world(request)
    with world.db.session() as s:
        results = sync_all(s, world.clock.now())
    return {
        "counts": dict(Counter(r.action for r in results)),
        "results": [asdict(r) for r in results],
    }


@control_router.get("/errors")
def errors(
    request: Request,
    since: int = Query(0, ge=0, description="only errors with id > since"),
    email: str | None = None,
) -> dict[str, Any]:
    """Provisioning errors: pushes the org refused (the SCIM change itself stood)."""
    world = _world(request)
    with world.db.session() as s:
        q = select(IdpProvisioningError).where(IdpProvisioningError.id > since)
        if email is not None:
            q = q.where(IdpProvisioningError.email == norm_email(email))
        rows = s.scalars(q.order_by(IdpProvisioningError.id)).all()
        out = [
            {
                "id": e.id,
                "at": e.at.isoformat(),
                "email": e.email,
                "action": e.action,
                "trigger": e.trigger,
                "errors": e.errors,
            }
            for e in rows
        ]
    return {"errors": out, "count": len(out)}


def _session_user(s: Session, world: World, ref: str) -> str:
    """The id of the IdP user ``ref`` names (email, userName or id); 404 when none."""
    try:
        return _user_id(Directory(s, world.clock.now()), ref)
    except ValueError as exc:
        raise HTTPException(404, str(exc)) from exc


@control_router.post("/sessions")
def new_session(
    request: Request,
    user: str = Query(..., description="the user's email, userName or id"),
    client: str = Query("", max_length=200, description="what the session is for"),
) -> dict[str, Any]:
    """Start a live sign-in session of the user (as signing in to an app would)."""
    world = _world(request)
    with world.db.session() as s:
        user_id = _session_user(s, world, user)
        return {"id": start_session(s, user_id, world.clock.now(), client), "user_id": user_id}


@control_router.get("/sessions")
def list_sessions(
    request: Request, user: str = Query(..., description="the user's email, userName or id")
) -> dict[str, Any]:
    """Every session of the user, live or ended, and how many are live."""
    world = _world(request)
    with world.db.session() as s:
        user_id = _session_user(s, world, user)
        views = sessions_of(s, user_id)
    return {
        "user_id": user_id,
        "sessions": [asdict(v) for v in views],
        "live": sum(1 for v in views if v.ended_at is None),
    }
