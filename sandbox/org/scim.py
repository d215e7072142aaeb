"""``/scim/1``: the org's SCIM API, faithful to Amplitude's (only what it really offers).

Amplitude's quirks kept on purpose, because connectors must cope with them:
- POST /Users invites (the person is pending, yet ``active: true``) and answers 201 with the
  request body; the email (``userName``) is the id and can never change;
- ``active: false`` through PUT or PATCH removes a member or revokes a pending invite;
  DELETE answers 204;
- lists page with ``startIndex``/``itemsPerPage`` (at most 100) and filter only
  ``userName eq "…"``;
- Groups are permission groups; POST /Groups answers 200 (not 201); PATCH adds/removes members.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import func, select

from sandbox.control import world_of
from sandbox.org.models import Member, PermissionGroup
from sandbox.org.service import Conflict, Invalid, NotFound, OrgError, OrgService, norm_email

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
MAX_PAGE = 100
_FILTER = re.compile(r'^\s*userName\s+eq\s+"([^"]*)"\s*$', re.I)
_GROUP_FILTER = re.compile(r'^\s*displayName\s+eq\s+"([^"]*)"\s*$', re.I)


def scim_error(status: int, detail: str) -> JSONResponse:
    return JSONResponse(
        {"schemas": [ERROR_SCHEMA], "status": str(status), "detail": detail},
        status_code=status,
        media_type="application/scim+json",
    )


async def org_error_handler(request: Request, exc: OrgError) -> JSONResponse:
    """OrgError → the error shape of the API that was called (SCIM or admin JSON)."""
    if request.url.path.startswith("/scim/"):
        return scim_error(exc.status, exc.message)
    return JSONResponse({"error": exc.message, "status": exc.status}, status_code=exc.status)


def require_scim_key(request: Request) -> None:
    expected = f"Bearer {world_of(request).credentials.org_scim_key}"
    if request.headers.get("authorization") != expected:
        raise OrgErrorUnauthorized("invalid or missing SCIM key (Authorization: Bearer <key>)")


class OrgErrorUnauthorized(OrgError):
    status = 401


router = APIRouter(
    prefix="/scim/1", tags=["org SCIM (Amplitude)"], dependencies=[Depends(require_scim_key)]
)


def user_resource(m: Member) -> dict[str, Any]:
    return {
        "schemas": [USER_SCHEMA],
        "id": m.email,
        "userName": m.email,
        "name": {"givenName": m.given_name, "familyName": m.family_name},
        "emails": [{"value": m.email, "primary": True}],
        "active": True,  # pending invitees are active too, as in Amplitude
        "meta": {"resourceType": "User"},
    }


def group_resource(org: OrgService, g: PermissionGroup) -> dict[str, Any]:
    return {
        "schemas": [GROUP_SCHEMA],
        "id": str(g.id),
        "displayName": g.display_name,
        "members": [{"value": e, "display": e} for e in org.group_members(g.id)],
        "meta": {"resourceType": "Group"},
    }


def list_response(resources: list[dict[str, Any]], total: int, start: int) -> dict[str, Any]:
    return {
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": len(resources),
        "Resources": resources,
    }


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise Invalid("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise Invalid("the body must be a JSON object")
    return body


def _email_of(body: dict[str, Any]) -> str:
    user_name = body.get("userName")
    if not isinstance(user_name, str) or "@" not in user_name:
        raise Invalid("userName must be the person's email address")
    return norm_email(user_name)


def _names(body: dict[str, Any]) -> tuple[str, str]:
    name = body.get("name") or {}
    if not isinstance(name, dict):
        raise Invalid("name must be an object with givenName and familyName")
    return str(name.get("givenName") or ""), str(name.get("familyName") or "")


def _page(start: int, items: int) -> tuple[int, int]:
    if start < 1:
        raise Invalid("startIndex starts at 1")
    if items < 0 or items > MAX_PAGE:
        raise Invalid(f"itemsPerPage must be between 0 and {MAX_PAGE}")
    return start, items


# ---------------------------------------------------------------------------- Users
@router.get("/Users")
def list_users(
    request: Request,
    startIndex: int = Query(1),
    itemsPerPage: int = Query(MAX_PAGE),
    filter: str | None = Query(None),
) -> JSONResponse:
    start, items = _page(startIndex, itemsPerPage)
    email = None
    if filter is not None:
        m = _FILTER.match(filter)
        if not m:
            raise Invalid('only the filter userName eq "<email>" is supported')
        email = m.group(1)
    world = world_of(request)
    with world.db.session() as s:
        total, rows = OrgService(s, world.clock.now()).list_members(
            start=start, count=items, email=email
        )
        body = list_response([user_resource(m) for m in rows], total, start)
    return JSONResponse(body, media_type="application/scim+json")


@router.get("/Users/{user_id}")
def get_user(request: Request, user_id: str) -> JSONResponse:
    world = world_of(request)
    with world.db.session() as s:
        m = OrgService(s, world.clock.now()).member(user_id)
        return JSONResponse(user_resource(m), media_type="application/scim+json")


@router.post("/Users", status_code=201)
async def create_user(request: Request) -> JSONResponse:
    body = await _json(request)
    email = _email_of(body)
    given, family = _names(body)
    world = world_of(request)
    with world.db.session() as s:
        org = OrgService(s, world.clock.now())
        if org.find_member(email) is not None:
            return scim_error(409, f"User {email} already exists in this organization")
        org.invite(email, given_name=given, family_name=family)
    # Amplitude answers with the request body, not with the stored resource.
    return JSONResponse(body, status_code=201, media_type="application/scim+json")


def _deactivate_or_update(
    request: Request, user_id: str, *, active: Any, email: str | None, names: tuple[str, str] | None
) -> Response:
    world = world_of(request)
    with world.db.session() as s:
        org = OrgService(s, world.clock.now())
        m = org.member(user_id)
        if email is not None and email != m.email:
            raise Invalid(
                "userName (the email) is the user's id and cannot be changed; "
                "invite the new address, transfer content, remove the old one"
            )
        if active is False:
            org.remove_member(m.email, reason="scim active=false")
            return Response(status_code=204)
        if active not in (True, None):
            raise Invalid("active must be true or false")
        if names is not None:
            m.given_name, m.family_name = names
        return JSONResponse(user_resource(m), media_type="application/scim+json")


@router.put("/Users/{user_id}")
async def replace_user(request: Request, user_id: str) -> Response:
    body = await _json(request)
    return _deactivate_or_update(
        request, user_id, active=body.get("active", True), email=_email_of(body), names=_names(body)
    )


@router.patch("/Users/{user_id}")
async def patch_user(request: Request, user_id: str) -> Response:
    body = await _json(request)
    ops = body.get("Operations")
    if not isinstance(ops, list) or not ops:
        raise Invalid("PATCH needs a non-empty Operations list")
    active: Any = None
    email = None
    given_family: list[str] | None = None
    for op in ops:
        if not isinstance(op, dict) or str(op.get("op", "")).lower() not in ("replace", "add"):
            raise Invalid("only replace/add operations are supported on Users")
        path, value = op.get("path"), op.get("value")
        pairs = value.items() if path is None and isinstance(value, dict) else [(path, value)]
        for key, val in pairs:
            if key == "active":
                # Booleans, or the strings "True"/"False" that Azure AD sends; nothing else
                # (a typo must not remove a member).
                if isinstance(val, bool):
                    active = val
                elif isinstance(val, str) and val.lower() in ("true", "false"):
                    active = val.lower() == "true"
                else:
                    raise Invalid(f"active must be true or false, not {val!r}")
            elif key == "userName":
                email = norm_email(str(val))
            elif key in ("name.givenName", "name.familyName"):
                given_family = given_family or ["", ""]
                given_family[0 if key.endswith("givenName") else 1] = str(val)
            else:
                raise Invalid(f"attribute {key!r} cannot be patched")
    names = None
    if given_family is not None:
        world = world_of(request)
        with world.db.session() as s:
            m = OrgService(s, world.clock.now()).member(user_id)
            names = (given_family[0] or m.given_name, given_family[1] or m.family_name)
    return _deactivate_or_update(request, user_id, active=active, email=email, names=names)


@router.delete("/Users/{user_id}", status_code=204)
def delete_user(request: Request, user_id: str) -> Response:
    world = world_of(request)
    with world.db.session() as s:
        org = OrgService(s, world.clock.now())
        org.member(user_id)
        org.remove_member(user_id, reason="scim delete")
    return Response(status_code=204)


# ---------------------------------------------------------------------------- Groups
@router.get("/Groups")
def list_groups(
    request: Request,
    startIndex: int = Query(1),
    itemsPerPage: int = Query(MAX_PAGE),
    filter: str | None = Query(None),
) -> JSONResponse:
    start, items = _page(startIndex, itemsPerPage)
    world = world_of(request)
    with world.db.session() as s:
        org = OrgService(s, world.clock.now())
        q = select(PermissionGroup)
        if filter is not None:
            m = _GROUP_FILTER.match(filter)
            if not m:
                raise Invalid('only the filter displayName eq "<name>" is supported')
            q = q.where(PermissionGroup.display_name == m.group(1))
        total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
        rows = s.scalars(q.order_by(PermissionGroup.id).offset(start - 1).limit(items)).all()
        body = list_response([group_resource(org, g) for g in rows], total, start)
    return JSONResponse(body, media_type="application/scim+json")


def _group_id(group_id: str) -> int:
    if not group_id.isdigit():
        raise NotFound(f"no permission group {group_id}")
    return int(group_id)


@router.get("/Groups/{group_id}")
def get_group(request: Request, group_id: str) -> JSONResponse:
    world = world_of(request)
    with world.db.session() as s:
        org = OrgService(s, world.clock.now())
        return JSONResponse(
            group_resource(org, org.group(_group_id(group_id))), media_type="application/scim+json"
        )


def _member_values(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, dict) and "value" in v for v in value):
        raise Invalid('members must be a list of {"value": "<email>"}')
    return [norm_email(str(v["value"])) for v in value]


@router.post("/Groups")
async def create_group(request: Request) -> JSONResponse:
    body = await _json(request)
    name = body.get("displayName")
    if not isinstance(name, str) or not name.strip():
        raise Invalid("displayName is required")
    members = _member_values(body.get("members", []))
    world = world_of(request)
    with world.db.session() as s:
        org = OrgService(s, world.clock.now())
        g = org.create_group(name.strip(), members=members)
        # Amplitude answers 200 (not 201) to a group creation.
        return JSONResponse(
            group_resource(org, g), status_code=200, media_type="application/scim+json"
        )


@router.patch("/Groups/{group_id}")
async def patch_group(request: Request, group_id: str) -> JSONResponse:
    body = await _json(request)
    ops = body.get("Operations")
    if not isinstance(ops, list) or not ops:
        raise Invalid("PATCH needs a non-empty Operations list")
    world = world_of(request)
    with world.db.session() as s:
        org = OrgService(s, world.clock.now())
        g = org.group(_group_id(group_id))
        for op in ops:
            kind = str(op.get("op", "")).lower() if isinstance(op, dict) else ""
            path = op.get("path") if isinstance(op, dict) else None
            value = op.get("value") if isinstance(op, dict) else None
            if kind == "add" and path in (None, "members"):
                org.add_group_members(g.id, _member_values(value))
            elif kind == "remove" and path == "members":
                org.remove_group_members(g.id, _member_values(value))
            elif kind == "remove" and isinstance(path, str) and path.startswith("members["):
                m = re.match(r'members\[value eq "([^"]+)"\]', path)
                if not m:
                    raise Invalid(f"unsupported path {path!r}")
                org.remove_group_members(g.id, [m.group(1)])
            elif kind == "replace" and path == "displayName" and isinstance(value, str):
                name = value.strip()
                if not name:
                    raise Invalid("displayName cannot be empty")
                taken = s.scalar(
                    select(PermissionGroup).where(
                        PermissionGroup.display_name == name, PermissionGroup.id != g.id
                    )
                )
                if taken is not None:
                    raise Conflict(f"a permission group named {name!r} exists")
                g.display_name = name
            elif kind == "replace" and path == "members":
                wanted = set(_member_values(value))
                current = set(org.group_members(g.id))
                org.add_group_members(g.id, sorted(wanted - current))
                org.remove_group_members(g.id, sorted(current - wanted))
            else:
                raise Invalid(f"unsupported operation {op!r}")
        return JSONResponse(group_resource(org, g), media_type="application/scim+json")


@router.delete("/Groups/{group_id}", status_code=204)
def delete_group(request: Request, group_id: str) -> Response:
    world = world_of(request)
    with world.db.session() as s:
        OrgService(s, world.clock.now()).delete_group(_group_id(group_id))
    return Response(status_code=204)
