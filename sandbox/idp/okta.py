"""Okta's Management API over the sandbox IdP's directory, at ``/okta/api/v1`` (the org's URL is
``/okta``, as ``https://acme.okta.com`` would be).

One store: every user and group here is the same as at the SCIM face (``/idp/scim/v2``), and
every change goes through :class:`sandbox.idp.directory.Directory`, so the groups the org maps
are pushed into it as Okta's Amplitude app integration pushes them (ids are the directory's).
The Okta lifecycle status is kept in ``IdpUserState`` (:func:`sandbox.idp.sessions.okta_status`);
SCIM's ``active`` follows it (true in the states whose account is enabled).

Imitated, as Okta documents them:

- ``GET /users`` (``limit`` default and max 200, ``after`` cursor, ``Link`` rel="next"; without
  ``filter``/``search`` DEPROVISIONED users are left out; ``q`` a prefix of firstName, lastName
  or email; ``filter`` on status, id, profile.login, profile.email, profile.firstName and
  profile.lastName with ``eq``; ``search`` on any property), ``POST /users?activate=`` (login
  and email as addresses, firstName and lastName required, login unique: 400 ``E0000001``),
  ``GET /users/{id or login}``, ``DELETE /users/{id}`` (deactivates, and deletes once
  DEPROVISIONED), ``GET /users/{id}/groups``.
- ``POST /users/{id}/lifecycle/{activate|reactivate|deactivate|suspend|unsuspend}``: activate
  from STAGED or DEPROVISIONED (to PROVISIONED: the sandbox keeps no passwords, so the person
  follows the activation link), reactivate from PROVISIONED, deactivate from any status but
  DEPROVISIONED, suspend from ACTIVE, unsuspend from SUSPENDED; anything else 403 ``E0000038``
  (``E0000016`` for activating an active user; 400 ``E0000001`` for suspend and unsuspend).
- ``DELETE /users/{id}/sessions?oauthTokens=`` ends the user's sessions (and marks their OAuth
  tokens revoked when ``oauthTokens=true``): 204.
- ``GET /groups`` (``q`` name prefix, ``search``, ``filter`` on type/id; ``limit`` default and
  max 10000), ``GET /groups/{id}``, ``GET /groups/{id}/users`` (``limit`` up to 1000),
  ``PUT``/``DELETE /groups/{id}/users/{uid}`` (204, also when nothing changes).
- Auth: ``SSWS <the world's IdP token>``, or a bearer token of ``/okta/oauth2/v1/token`` holding
  the route's scope (``okta.users.read``/``okta.groups.read`` or the ``.manage`` ones); 401
  ``E0000011`` otherwise, 403 ``E0000006`` for a token without the scope.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from scim2_models import InvalidValueException, Resource, UniquenessException
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sandbox.idp.directory import GROUP, PROVIDER, USER, USER_SCHEMA, Directory, resource_model
from sandbox.idp.models import IdpGroupMember, IdpResource, IdpSession, IdpUserState
from sandbox.idp.okta_oauth import bearer_scopes, ssws_ok
from sandbox.idp.okta_wire import (
    OktaError,
    OktaRoute,
    Predicate,
    expression,
    iso,
    link_header,
    not_found,
)
from sandbox.idp.sessions import end_sessions, okta_status, state_of
from sandbox.org.service import norm_email
from sandbox.world import World

router = APIRouter(prefix="/okta/api/v1", tags=["okta"], route_class=OktaRoute)

ACTIVE = frozenset({"ACTIVE", "PROVISIONED", "RECOVERY", "PASSWORD_EXPIRED", "LOCKED_OUT"})
USER_TYPE = "otyhandoversandbox"
_USER_FILTER = {
    (attr, "eq")
    for attr in (
        "status",
        "id",
        "profile.login",
        "profile.email",
        "profile.firstName",
        "profile.lastName",
    )
}
_GROUP_FILTER = {("type", "eq"), ("id", "eq")}
_CHUNK = 500


def _world(request: Request) -> World:
    world: World = request.app.state.world
    return world


def _authorize(request: Request, scope: str) -> None:
    """``SSWS`` with the world's IdP token, or a live bearer token holding ``scope`` (or the
    ``.manage`` scope that includes a ``.read`` one)."""
    scheme, _, credential = (request.headers.get("authorization") or "").partition(" ")
    world, credential = _world(request), credential.strip()
    if scheme == "SSWS" and credential and ssws_ok(world, credential):
        return
    base = f"{request.base_url}okta".rstrip("/")
    if scheme.lower() == "bearer" and credential:
        scopes = bearer_scopes(world, credential)
        if scopes is None:
            challenge = (
                f'Bearer authorization_uri="{base}/oauth2/v1/authorize", realm="IdP", '
                'error="invalid_token", error_description="The access token is invalid."'
            )
            raise OktaError(
                401, "E0000011", "Invalid token provided", headers={"WWW-Authenticate": challenge}
            )
        if scope not in scopes and scope.replace(".read", ".manage") not in scopes:
            challenge = (
                f'Bearer authorization_uri="{base}/oauth2/v1/authorize", realm="IdP", '
                f'scope="{scope}", error="insufficient_scope", '
                'error_description="The access token provided does not contain the required '
                'scopes."'
            )
            raise OktaError(
                403,
                "E0000006",
                "You do not have permission to perform the requested action",
                headers={"WWW-Authenticate": challenge},
            )
        return
    raise OktaError(401, "E0000011", "Invalid token provided")


# ---------------------------------------------------------------------------- JSON shapes
def user_json(s: Session, row: IdpResource, base: str) -> dict[str, Any]:
    """A user as Okta's API shows one."""
    data = row.data
    name = data.get("name") or {}
    emails = [e for e in data.get("emails") or [] if e.get("value")]
    emails.sort(key=lambda e: not e.get("primary"))
    login = row.user_name or ""
    email = emails[0]["value"] if emails else (login if "@" in login else None)
    second = emails[1]["value"] if len(emails) > 1 else None
    status = okta_status(s, row)
    state = s.get(IdpUserState, row.id)
    changed = state.status_changed if state is not None else None
    last_login = s.scalar(
        select(func.max(IdpSession.created_at)).where(IdpSession.user_id == row.id)
    )
    href = f"{base}/api/v1/users/{row.id}"
    links: dict[str, Any] = {"self": {"href": href}}
    for op, when in (
        ("activate", ("STAGED", "DEPROVISIONED")),
        ("deactivate", tuple(ACTIVE | {"STAGED", "SUSPENDED"})),
        ("suspend", ("ACTIVE",)),
        ("unsuspend", ("SUSPENDED",)),
        ("reactivate", ("PROVISIONED",)),
    ):
        if status in when:
            links[op] = {"href": f"{href}/lifecycle/{op}", "method": "POST"}
    return {
        "id": row.id,
        "status": status,
        "created": iso(row.created_at),
        "activated": None if status == "STAGED" else iso(row.created_at),
        "statusChanged": iso(changed),
        "lastLogin": iso(last_login),
        "lastUpdated": iso(max(row.updated_at, changed or row.updated_at)),
        "passwordChanged": None,
        "type": {"id": USER_TYPE},
        "profile": {
            "firstName": name.get("givenName"),
            "lastName": name.get("familyName"),
            "mobilePhone": None,
            "secondEmail": second,
            "login": login,
            "email": email,
        },
        "credentials": {"provider": {"type": "OKTA", "name": "OKTA"}},
        "_links": links,
    }


def group_json(row: IdpResource, base: str) -> dict[str, Any]:
    """A group as Okta's API shows one (every sandbox group is an Okta group)."""
    href = f"{base}/api/v1/groups/{row.id}"
    return {
        "id": row.id,
        "created": iso(row.created_at),
        "lastUpdated": iso(row.updated_at),
        "lastMembershipUpdated": iso(row.updated_at),
        "objectClass": ["okta:user_group"],
        "type": "OKTA_GROUP",
        "profile": {"name": row.display_name or "", "description": None},
        "_links": {
            "logo": [],
            "users": {"href": f"{href}/users"},
            "apps": {"href": f"{href}/apps"},
        },
    }


def _base(request: Request) -> str:
    return f"{request.base_url}okta"


# ---------------------------------------------------------------------------- lookups and pages
def _user_row(d: Directory, ref: str) -> IdpResource:
    """A user by id, or by login (Okta's ``GET /users/{login}``)."""
    row = d.s.get(IdpResource, ref)
    if row is None or row.type != USER:
        row = d.find(USER, ref)
    if row is None:
        raise not_found(ref, "User")
    return row


def _group_row(d: Directory, gid: str) -> IdpResource:
    row = d.s.get(IdpResource, gid)
    if row is None or row.type != GROUP:
        raise not_found(gid, "UserGroup")
    return row


def _rows(
    s: Session, type_: str, after: str | None, ids: list[str] | None = None
) -> Iterator[IdpResource]:
    """Rows of a type in id order after the cursor, read a chunk at a time."""
    cursor = after or ""
    while True:
        q = select(IdpResource).where(IdpResource.type == type_, IdpResource.id > cursor)
        if ids is not None:
            q = q.where(IdpResource.id.in_(ids))
        chunk = s.scalars(q.order_by(IdpResource.id).limit(_CHUNK)).all()
        yield from chunk
        if len(chunk) < _CHUNK:
            return
        cursor = chunk[-1].id


def _page(
    request: Request,
    items: Iterator[tuple[str, dict[str, Any]]],
    keep: Predicate,
    limit: int,
) -> JSONResponse:
    """At most ``limit`` of the kept items, with the ``Link`` to the next page when more."""
    out: list[dict[str, Any]] = []
    more = False
    for _, obj in items:
        if not keep(obj):
            continue
        if len(out) == limit:
            more = True
            break
        out.append(obj)
    after = out[-1]["id"] if more and out else None
    return JSONResponse(out, headers={"Link": link_header(request, after, limit)})


def _keep_all(obj: dict[str, Any]) -> bool:
    return True


# ---------------------------------------------------------------------------- users
@router.get("/users")
def list_users(
    request: Request,
    q: str | None = None,
    filter: str | None = None,
    search: str | None = None,
    after: str | None = None,
    limit: int = Query(200, ge=1),
) -> JSONResponse:
    """List, find (``q``), filter or search users, a page at a time."""
    _authorize(request, "okta.users.read")
    limit = min(limit, 200)
    keep: Predicate
    if search:
        keep = expression(search)
    elif filter:
        keep = expression(filter, _USER_FILTER)
    elif q:
        prefix = q.lower()

        def keep(o: dict[str, Any]) -> bool:
            p = o["profile"]
            return o["status"] != "DEPROVISIONED" and any(
                str(p.get(k) or "").lower().startswith(prefix)
                for k in ("firstName", "lastName", "email")
            )
    else:

        def keep(o: dict[str, Any]) -> bool:
            return bool(o["status"] != "DEPROVISIONED")

    world, base = _world(request), _base(request)
    with world.db.session() as s:
        items = ((r.id, user_json(s, r, base)) for r in _rows(s, USER, after))
        return _page(request, items, keep, limit)


def _new_user_model(profile: dict[str, Any], active: bool) -> Resource[Any]:
    login, email = str(profile["login"]), str(profile["email"])
    first, last = str(profile["firstName"]), str(profile["lastName"])
    emails = [{"value": norm_email(email), "type": "work", "primary": True}]
    if profile.get("secondEmail"):
        emails.append({"value": norm_email(str(profile["secondEmail"])), "type": "other"})
    data = {
        "schemas": [USER_SCHEMA],
        "userName": login,
        "name": {"givenName": first, "familyName": last},
        "displayName": f"{first} {last}",
        "emails": emails,
        "active": active,
    }
    with PROVIDER:
        return resource_model(USER).model_validate(data)


def _check_profile(profile: Any) -> dict[str, Any]:
    """Okta's default profile rules: login and email are addresses, names are required."""
    if not isinstance(profile, dict):
        raise OktaError(400, "E0000001", "Api validation failed: profile", ("profile: required",))
    causes = []
    for key in ("login", "email", "firstName", "lastName"):
        value = profile.get(key)
        if not isinstance(value, str) or not value.strip():
            causes.append(f"{key}: The field cannot be left blank")
    for key in ("login", "email", "secondEmail"):
        value = profile.get(key)
        if isinstance(value, str) and value.strip() and "@" not in value:
            what = (
                "Username must be in the form of an email address"
                if key == "login"
                else ("Does not match required pattern")
            )
            causes.append(f"{key}: {what}")
    if causes:
        first = causes[0].partition(":")[0]
        raise OktaError(400, "E0000001", f"Api validation failed: {first}", tuple(causes))
    return profile


@router.post("/users")
async def create_user(
    request: Request, activate: bool = True, provider: bool = False
) -> JSONResponse:
    """Create a user: STAGED (``activate=false``), else activated — ACTIVE with a password,
    PROVISIONED without one (the activation email is the person's way in)."""
    _authorize(request, "okta.users.manage")
    try:
        body = await request.json()
    except ValueError as exc:
        raise OktaError(400, "E0000003", "The request body was not well-formed.") from exc
    if not isinstance(body, dict):
        raise OktaError(400, "E0000003", "The request body was not well-formed.")
    profile = _check_profile(body.get("profile"))
    password = ((body.get("credentials") or {}).get("password") or {}).get("value")
    status = "STAGED" if not activate else "ACTIVE" if password or provider else "PROVISIONED"
    world, base = _world(request), _base(request)
    with world.db.session() as s:
        d = Directory(s, world.clock.now(), trigger="Okta create user")
        group_ids = [str(g) for g in body.get("groupIds") or []]
        groups = [_group_row(d, g) for g in group_ids]
        try:
            created = d.create(USER, _new_user_model(profile, status in ACTIVE))
        except UniquenessException as exc:
            raise OktaError(
                400,
                "E0000001",
                "Api validation failed: login",
                ("login: An object with this field already exists in the current organization",),
            ) from exc
        row = _user_row(d, str(created.id))
        state = state_of(s, row.id)
        state.status, state.status_changed = status, world.clock.now()
        for group in groups:
            _set_member(d, group, row.id, present=True)
        return JSONResponse(user_json(s, row, base))


@router.get("/users/{ref}")
def get_user(request: Request, ref: str) -> JSONResponse:
    """A user by id or login."""
    _authorize(request, "okta.users.read")
    world = _world(request)
    with world.db.session() as s:
        row = _user_row(Directory(s, world.clock.now()), ref)
        return JSONResponse(user_json(s, row, _base(request)))


def _transition(d: Directory, row: IdpResource, status: str) -> None:
    """Move a user to ``status``; SCIM's ``active`` follows (pushing the change into the org)."""
    active = status in ACTIVE
    if row.active != active:
        data = {**row.data, "id": row.id, "active": active}
        with PROVIDER:
            d.update(USER, resource_model(USER).model_validate(data))
    state = state_of(d.s, row.id)
    state.status, state.status_changed = status, d.now


def _not_allowed() -> OktaError:
    return OktaError(403, "E0000038", "This operation is not allowed in the user's current status.")


def _activation(request: Request, send_email: bool) -> dict[str, Any]:
    if send_email:
        return {}
    token = secrets.token_urlsafe(15)
    return {"activationUrl": f"{_base(request)}/welcome/{token}", "activationToken": token}


@router.post("/users/{ref}/lifecycle/{operation}")
def lifecycle(
    request: Request,
    ref: str,
    operation: str,
    sendEmail: bool = True,
) -> JSONResponse:
    """One lifecycle operation, allowed only from the statuses Okta allows it from."""
    _authorize(request, "okta.users.manage")
    world = _world(request)
    with world.db.session() as s:
        d = Directory(s, world.clock.now(), trigger=f"Okta lifecycle {operation}")
        row = _user_row(d, ref)
        status = okta_status(s, row)
        answer: dict[str, Any] = {}
        if operation == "activate":
            if status in ACTIVE:
                raise OktaError(
                    403, "E0000016", "Activation failed because the user is already active"
                )
            if status not in ("STAGED", "DEPROVISIONED"):
                raise _not_allowed()
            _transition(d, row, "PROVISIONED")
            answer = _activation(request, sendEmail)
        elif operation == "reactivate":
            if status != "PROVISIONED":
                raise _not_allowed()
            answer = _activation(request, sendEmail)
        elif operation == "deactivate":
            if status == "DEPROVISIONED":
                raise _not_allowed()
            _transition(d, row, "DEPROVISIONED")
        elif operation in ("suspend", "unsuspend"):
            if status != ("ACTIVE" if operation == "suspend" else "SUSPENDED"):
                raise OktaError(400, "E0000001", f"Api validation failed: {operation}")
            _transition(d, row, "SUSPENDED" if operation == "suspend" else "ACTIVE")
        else:
            raise OktaError(404, "E0000008", "The requested path was not found")
        return JSONResponse(answer)


@router.delete("/users/{ref}")
def delete_user(request: Request, ref: str) -> Response:
    """Deactivate a user not yet DEPROVISIONED; delete one that is (Okta's two-step delete)."""
    _authorize(request, "okta.users.manage")
    world = _world(request)
    with world.db.session() as s:
        d = Directory(s, world.clock.now(), trigger="Okta delete user")
        row = _user_row(d, ref)
        if okta_status(s, row) != "DEPROVISIONED":
            _transition(d, row, "DEPROVISIONED")
        else:
            d.delete(USER, row.id)
    return Response(status_code=204)


@router.get("/users/{ref}/groups")
def user_groups(
    request: Request, ref: str, after: str | None = None, limit: int = Query(10000, ge=1)
) -> JSONResponse:
    """The groups a user is a member of."""
    _authorize(request, "okta.users.read")
    world, base = _world(request), _base(request)
    with world.db.session() as s:
        d = Directory(s, world.clock.now())
        row = _user_row(d, ref)
        ids = list(
            s.scalars(select(IdpGroupMember.group_id).where(IdpGroupMember.member_id == row.id))
        )
        items = ((g.id, group_json(g, base)) for g in _rows(s, GROUP, after, ids))
        return _page(request, items, _keep_all, min(limit, 10000))


@router.delete("/users/{ref}/sessions")
def clear_sessions(request: Request, ref: str, oauthTokens: bool = False) -> Response:
    """End every session of the user (Okta's "Clear User Sessions"); with ``oauthTokens=true``
    the OAuth and OpenID Connect tokens issued to them are revoked too."""
    _authorize(request, "okta.users.manage")
    world = _world(request)
    with world.db.session() as s:
        row = _user_row(Directory(s, world.clock.now()), ref)
        end_sessions(s, row.id, world.clock.now(), tokens=oauthTokens)
    return Response(status_code=204)


# ---------------------------------------------------------------------------- groups
@router.get("/groups")
def list_groups(
    request: Request,
    q: str | None = None,
    filter: str | None = None,
    search: str | None = None,
    after: str | None = None,
    limit: int = Query(10000, ge=1),
) -> JSONResponse:
    """List groups: all, by name prefix (``q``), or by ``filter``/``search``."""
    _authorize(request, "okta.groups.read")
    keep: Predicate = _keep_all
    if search:
        keep = expression(search)
    elif filter:
        keep = expression(filter, _GROUP_FILTER)
    elif q:
        prefix = q.lower()

        def keep(o: dict[str, Any]) -> bool:
            return str(o["profile"]["name"]).lower().startswith(prefix)

    world, base = _world(request), _base(request)
    with world.db.session() as s:
        items = ((g.id, group_json(g, base)) for g in _rows(s, GROUP, after))
        return _page(request, items, keep, min(limit, 10000))


@router.get("/groups/{gid}")
def get_group(request: Request, gid: str) -> JSONResponse:
    _authorize(request, "okta.groups.read")
    world = _world(request)
    with world.db.session() as s:
        row = _group_row(Directory(s, world.clock.now()), gid)
        return JSONResponse(group_json(row, _base(request)))


@router.get("/groups/{gid}/users")
def group_users(
    request: Request, gid: str, after: str | None = None, limit: int = Query(1000, ge=1)
) -> JSONResponse:
    """The group's members, as users, a page at a time."""
    _authorize(request, "okta.groups.read")
    world, base = _world(request), _base(request)
    with world.db.session() as s:
        d = Directory(s, world.clock.now())
        row = _group_row(d, gid)
        ids = sorted(d.member_ids(row.id))
        items = ((u.id, user_json(s, u, base)) for u in _rows(s, USER, after, ids))
        return _page(request, items, _keep_all, min(limit, 1000))


def _set_member(d: Directory, group: IdpResource, user_id: str, *, present: bool) -> None:
    """Add or remove one member through the directory (which pushes the change)."""
    members = [m for m in group.data.get("members") or [] if m.get("value") != user_id]
    if present:
        members.append({"value": user_id, "type": USER})
    if members == list(group.data.get("members") or []):
        return
    data = {**group.data, "id": group.id, "members": members}
    try:
        with PROVIDER:
            d.update(GROUP, resource_model(GROUP).model_validate(data))
    except InvalidValueException as exc:
        raise OktaError(400, "E0000001", "Api validation failed: members") from exc


@router.put("/groups/{gid}/users/{uid}")
def add_member(request: Request, gid: str, uid: str) -> Response:
    """Assign a user to a group (no change when they are in it already)."""
    _authorize(request, "okta.groups.manage")
    world = _world(request)
    with world.db.session() as s:
        d = Directory(s, world.clock.now(), trigger=f"Okta add {uid} to {gid}")
        group = _group_row(d, gid)
        user = _user_row(d, uid)
        _set_member(d, group, user.id, present=True)
    return Response(status_code=204)


@router.delete("/groups/{gid}/users/{uid}")
def remove_member(request: Request, gid: str, uid: str) -> Response:
    """Unassign a user from a group (no change when they are not in it)."""
    _authorize(request, "okta.groups.manage")
    world = _world(request)
    with world.db.session() as s:
        d = Directory(s, world.clock.now(), trigger=f"Okta remove {uid} from {gid}")
        group = _group_row(d, gid)
        user = _user_row(d, uid)
        _set_member(d, group, user.id, present=False)
    return Response(status_code=204)
