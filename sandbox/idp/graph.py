"""Microsoft Entra ID's faces for the sandbox IdP: the Microsoft identity platform's token
endpoint (``/entra/{tenant}/oauth2/v2.0/token``) and Microsoft Graph v1.0 (``/graph/v1.0/…``) over
the same directory as the SCIM face, so every change pushes mapped groups into the org as
Entra's Amplitude provisioning does (:class:`sandbox.idp.directory.Directory`).

Imitated from Microsoft's documentation:

- **Token endpoint** (OAuth 2.0 client credentials flow): ``grant_type=client_credentials``,
  the client authenticated by ``client_secret_post`` or ``client_secret_basic``,
  ``scope=https://graph.microsoft.com/.default``; answers ``token_type``, ``expires_in`` 3599,
  ``ext_expires_in`` and an RS256 JWT access token (``aud`` Graph, ``tid``, ``appid``, the app's
  ``roles``); refusals as ``{error, error_description, error_codes, timestamp, trace_id,
  correlation_id, error_uri}`` with Entra's AADSTS numbers (90002 unknown tenant, 700016 unknown
  app, 7000215 wrong secret, 7000216 no secret, 70003 grant, 1002012 scope).
- **Graph**: a bearer token the endpoint issued, unexpired, for this tenant (401
  ``InvalidAuthenticationToken`` otherwise), whose roles allow the call (403
  ``Authorization_RequestDenied``). Users (``id`` a GUID, ``userPrincipalName``, ``mail``,
  ``otherMails``, ``proxyAddresses``, ``givenName``, ``surname``, ``displayName``,
  ``accountEnabled``, ``signInSessionsValidFromDateTime``; only Graph's default set unless
  ``$select``'ed), groups (``id``, ``displayName``, ``mailEnabled``, ``securityEnabled``, …),
  ``$filter`` (:mod:`sandbox.idp.odata`), ``$select``, ``$top`` (1 to 999; 100 by default) with
  ``@odata.nextLink`` (an absolute URL with a ``$skiptoken``), ``$count=true`` only with
  ``ConsistencyLevel: eventual``, ``memberOf`` (its OData cast to groups only with both),
  ``members/$ref`` add (204; 400 "One or more added object references already exist") and
  remove (204; 404 when not a member), ``revokeSignInSessions`` (200 ``{"value": true}``; ends
  the user's sessions and their tokens, :func:`sandbox.idp.sessions.end_sessions`). Errors as
  ``{"error": {"code", "message", "innerError": {"date", "request-id", "client-request-id"}}}``.

The user's ``mail`` is the SCIM primary email, ``otherMails`` the other emails, and
``proxyAddresses`` (read-only, as Exchange keeps it) ``SMTP:`` the mail and ``smtp:`` each other
address; ``mailNickname`` is SCIM's ``nickName``. Every group is a security group. The token
endpoint is neither rate-limited nor faulted (like the OIDC provider); Graph is (API ``graph``).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwk import RSAKey
from scim2_models import Resource, SCIMException, UniquenessException
from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.db import Setting
from sandbox.idp.directory import (
    GROUP,
    GROUP_SCHEMA,
    PROVIDER,
    USER,
    USER_SCHEMA,
    Directory,
    comparison_key,
    resource_model,
)
from sandbox.idp.models import IdpGroupMember, IdpResource, IdpUserState
from sandbox.idp.odata import Filter, FilterError, parse_filter
from sandbox.idp.oidc import _KEY_SETTING, signing_key
from sandbox.idp.sessions import end_sessions
from sandbox.org.service import norm_email
from sandbox.world import Credentials, World

GRAPH = "/graph/v1.0"
GRAPH_AUDIENCE = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"  # Microsoft Graph's own application id
TOKEN_TTL = timedelta(seconds=3599)
DEFAULT_TOP, MAX_TOP = 100, 999
_MEDIA = "application/json;odata.metadata=minimal;odata.streaming=true;charset=utf-8"
_NOT_FOUND = (
    "Resource '{}' does not exist or one of its queried reference-property objects are not present."
)

# Application permissions (app roles) and what each route accepts (least privileged first).
HANDOVER_ROLES = ("User.ReadWrite.All", "GroupMember.ReadWrite.All", "User.RevokeSessions.All")
ADMIN_ROLES = (*HANDOVER_ROLES, "Group.ReadWrite.All", "Directory.ReadWrite.All")
READ_USERS = {
    "User.Read.All",
    "User.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
}
WRITE_USERS = {"User.ReadWrite.All", "Directory.ReadWrite.All"}
REVOKE = {"User.RevokeSessions.All", "User.ReadWrite.All", "Directory.ReadWrite.All"}
READ_GROUPS = {
    "GroupMember.Read.All",
    "GroupMember.ReadWrite.All",
    "Group.Read.All",
    "Group.ReadWrite.All",
    "Directory.Read.All",
    "Directory.ReadWrite.All",
}
WRITE_MEMBERS = {"GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"}
WRITE_GROUPS = {"Group.Create", "Group.ReadWrite.All", "Directory.ReadWrite.All"}

# What Graph returns of a user when nothing is $select'ed, and what may be $select'ed at all.
USER_DEFAULT = (
    "businessPhones",
    "displayName",
    "givenName",
    "id",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
)
USER_PROPS = (
    *USER_DEFAULT,
    "accountEnabled",
    "createdDateTime",
    "mailNickname",
    "otherMails",
    "proxyAddresses",
    "signInSessionsValidFromDateTime",
)
GROUP_PROPS = (
    "id",
    "createdDateTime",
    "description",
    "displayName",
    "groupTypes",
    "mail",
    "mailEnabled",
    "mailNickname",
    "securityEnabled",
)
USER_FILTERABLE = {
    "id": "value",
    "userPrincipalName": "value",
    "mail": "value",
    "displayName": "value",
    "givenName": "value",
    "surname": "value",
    "accountEnabled": "value",
    "mailNickname": "value",
    "otherMails": "collection",
    "proxyAddresses": "collection",
}
GROUP_FILTERABLE = {
    "id": "value",
    "displayName": "value",
    "mailNickname": "value",
    "mailEnabled": "value",
    "securityEnabled": "value",
}
_WRITABLE_USER = {
    "accountEnabled",
    "displayName",
    "givenName",
    "surname",
    "mail",
    "otherMails",
    "mailNickname",
    "userPrincipalName",
    "passwordProfile",
}

token_router = APIRouter(prefix="/entra", tags=["Microsoft Entra ID (token endpoint)"])
router = APIRouter(prefix=GRAPH, tags=["Microsoft Graph"])


class GraphError(Exception):
    """A Graph error answer (raised by the routes, answered by :func:`graph_error_handler`)."""

    def __init__(
        self, status: int, code: str, message: str, details: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def _now_text(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _headers() -> dict[str, str]:
    rid = str(uuid.uuid4())
    return {"request-id": rid, "client-request-id": rid}


async def graph_error_handler(request: Request, exc: Exception) -> Response:
    """Graph's error shape, with the innerError's date and request ids."""
    assert isinstance(exc, GraphError)
    headers = _headers()
    error: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.details:
        error["details"] = exc.details
    error["innerError"] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "request-id": headers["request-id"],
        "client-request-id": headers["client-request-id"],
    }
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="", authorization_uri="", client_id=""'
    return JSONResponse({"error": error}, status_code=exc.status, headers=headers)


def _world(request: Request) -> World:
    world: World = request.app.state.world  # Starlette's State is untyped: one set per app
    return world


# --------------------------------------------------------------------------- token endpoint
@dataclass(frozen=True)
class App:
    """An app registration of the sandbox's tenant."""

    client_id: str
    secret: str
    name: str
    roles: tuple[str, ...]


def apps(creds: Credentials) -> dict[str, App]:
    """The tenant's app registrations: Handover's, and an administrator's."""
    return {
        creds.entra_client_id: App(
            creds.entra_client_id, creds.entra_client_secret, "Handover", HANDOVER_ROLES
        ),
        creds.entra_admin_client_id: App(
            creds.entra_admin_client_id,
            creds.entra_admin_client_secret,
            "Sandbox administrator",
            ADMIN_ROLES,
        ),
    }


def _aadsts(status: int, error: str, number: int, message: str) -> JSONResponse:
    """An RFC 6749 §5.2 answer as Entra gives it: AADSTS number, trace and correlation ids on
    the following lines of ``error_description``, and the same in fields of their own."""
    now = datetime.now(UTC)
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
    body = {
        "error": error,
        "error_description": f"AADSTS{number}: {message} Trace ID: {trace} "
        f"Correlation ID: {correlation} Timestamp: {stamp}".replace(" Trace ID:", "\r\nTrace ID:")
        .replace(" Correlation ID:", "\r\nCorrelation ID:")
        .replace(" Timestamp:", "\r\nTimestamp:"),
        "error_codes": [number],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"https://login.microsoftonline.com/error?code={number}",
    }
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    return JSONResponse(body, status_code=status, headers=headers)


def _basic(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        user, sep, password = base64.b64decode(value.strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (unquote(user), unquote(password)) if sep else None


@token_router.post("/{tenant}/oauth2/v2.0/token")
async def token(tenant: str, request: Request) -> Response:
    """The client credentials grant of the Microsoft identity platform (v2.0 endpoint)."""
    world = _world(request)
    creds = world.credentials
    form = dict(parse_qsl((await request.body()).decode(errors="replace")))
    if tenant.lower() != creds.entra_tenant_id:
        return _aadsts(
            400,
            "invalid_request",
            90002,
            f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
            "and are signing into the correct cloud.",
        )
    if form.get("grant_type") != "client_credentials":
        return _aadsts(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{form.get('grant_type', '')}'.",
        )
    basic = _basic(request.headers.get("authorization", ""))
    if basic is not None and "client_secret" in form:
        return _aadsts(
            400, "invalid_request", 50194, "Only one client authentication method may be used."
        )
    client_id, secret = (
        basic if basic is not None else (form.get("client_id", ""), form.get("client_secret"))
    )
    app = apps(creds).get(client_id)
    if app is None:
        return _aadsts(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{client_id}' was not found in the directory '{tenant}'.",
        )
    if not secret:
        return _aadsts(
            401,
            "invalid_client",
            7000216,
            "'client_assertion', 'client_secret' or 'request' is required for the "
            "'client_credentials' grant type.",
        )
    if not hmac.compare_digest(secret.encode(), app.secret.encode()):
        return _aadsts(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is "
            f"the client secret value, not the client secret ID, for a secret added to app "
            f"'{client_id}'.",
        )
    scope = form.get("scope", "")
    if scope not in (f"{GRAPH_AUDIENCE}/.default", f"{GRAPH_APP_ID}/.default"):
        return _aadsts(
            400,
            "invalid_scope",
            1002012,
            f"The provided value for scope {scope} is not valid. Client credential flows must "
            "have a scope value with /.default suffixed to the resource identifier "
            "(application ID URI).",
        )
    now = datetime.now(UTC)  # real time, as sandbox.idp.oidc: the client checks its own clock
    claims = {
        "aud": GRAPH_AUDIENCE,
        "iss": f"https://sts.windows.net/{creds.entra_tenant_id}/",
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int((now + TOKEN_TTL).timestamp()),
        "app_displayname": app.name,
        "appid": app.client_id,
        "idtyp": "app",
        "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, app.client_id)),
        "roles": list(app.roles),
        "sub": str(uuid.uuid5(uuid.NAMESPACE_URL, app.client_id)),
        "tid": creds.entra_tenant_id,
        "uti": secrets.token_urlsafe(16),
        "ver": "1.0",
    }
    key = signing_key(world)
    access = jwt.encode({"alg": "RS256", "kid": key.kid, "typ": "JWT"}, claims, key)
    seconds = int(TOKEN_TTL.total_seconds())
    body = {
        "token_type": "Bearer",
        "expires_in": seconds,
        "ext_expires_in": seconds,
        "access_token": access,
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


_PUBLIC_KEYS: dict[tuple[str, str], RSAKey] = {}


def _verifying_key(world: World) -> RSAKey:
    """The public half of the world's signing key, imported once per key (importing the
    private key, as :func:`signing_key` does, checks it: a tenth of a second a call)."""
    with world.db.session() as s:
        row = s.get(Setting, _KEY_SETTING)
        value = dict(row.value) if row is not None else {}
    if not value:
        value = dict(signing_key(world).as_dict(private=False))  # made on first use
    ident = (str(value.get("kid")), str(value.get("n")))
    key = _PUBLIC_KEYS.get(ident)
    if key is None:
        public: dict[str, str | list[str]] = {
            k: str(value[k]) for k in ("kty", "n", "e", "kid") if k in value
        }
        key = _PUBLIC_KEYS[ident] = RSAKey.import_key(public)
    return key


def _roles(request: Request, allowed: set[str]) -> None:
    """Check the bearer token (signature, audience, tenant, expiry) and its roles.

    Raises:
        GraphError: 401 InvalidAuthenticationToken, or 403 Authorization_RequestDenied.
    """
    world = _world(request)
    scheme, _, raw = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
    try:
        decoded = jwt.decode(raw.strip(), _verifying_key(world), algorithms=["RS256"])
        jwt.JWTClaimsRegistry(
            aud={"essential": True, "value": GRAPH_AUDIENCE},
            tid={"essential": True, "value": world.credentials.entra_tenant_id},
            exp={"essential": True},
        ).validate(decoded.claims)
    except ExpiredTokenError as exc:
        raise GraphError(
            401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired."
        ) from exc
    except (JoseError, ValueError) as exc:
        raise GraphError(
            401, "InvalidAuthenticationToken", "Access token validation failure."
        ) from exc
    if not set(decoded.claims.get("roles") or []) & allowed:
        raise GraphError(
            403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation."
        )


# --------------------------------------------------------------------------- ids and JSON
def gid(row_id: str) -> str:
    """The directory's row id as Graph shows it: a GUID."""
    try:
        return str(uuid.UUID(hex=row_id))
    except ValueError:
        return row_id


def rid(graph_id: str) -> str:
    """A Graph id back to the directory's row id."""
    try:
        return uuid.UUID(graph_id).hex
    except ValueError:
        return graph_id


def _iso(when: datetime | None) -> str | None:
    if when is None:
        return None
    return _now_text(when if when.tzinfo else when.replace(tzinfo=UTC))


def user_json(s: Session, row: IdpResource) -> dict[str, Any]:
    """Every property of a user as Graph shows it."""
    data = row.data
    emails = [e for e in data.get("emails") or [] if e.get("value")]
    primary = next((e for e in emails if e.get("primary")), None)
    mail = str(primary["value"]).lower() if primary else None
    others = [str(e["value"]).lower() for e in emails if e is not primary]
    name = data.get("name") or {}
    upn = str(data.get("userName") or "")
    state = s.get(IdpUserState, row.id)
    valid_from = state.sessions_valid_from if state and state.sessions_valid_from else None
    return {
        "id": gid(row.id),
        "businessPhones": [],
        "displayName": data.get("displayName"),
        "givenName": name.get("givenName"),
        "jobTitle": data.get("title"),
        "mail": mail,
        "mobilePhone": None,
        "officeLocation": None,
        "preferredLanguage": data.get("preferredLanguage"),
        "surname": name.get("familyName"),
        "userPrincipalName": upn,
        "accountEnabled": row.active,
        "createdDateTime": _iso(row.created_at),
        "mailNickname": data.get("nickName") or upn.split("@", 1)[0],
        "otherMails": others,
        "proxyAddresses": ([f"SMTP:{mail}"] if mail else []) + [f"smtp:{o}" for o in others],
        # Graph sets it when the user is created and when sessions are revoked.
        "signInSessionsValidFromDateTime": _iso(valid_from or row.created_at),
    }


def group_json(row: IdpResource) -> dict[str, Any]:
    """Every property of a (security) group as Graph shows it."""
    name = row.display_name or ""
    return {
        "id": gid(row.id),
        "createdDateTime": _iso(row.created_at),
        "description": row.data.get("description"),
        "displayName": name,
        "groupTypes": [],
        "mail": None,
        "mailEnabled": False,
        "mailNickname": row.data.get("mailNickname")
        or re.sub(r"[^A-Za-z0-9._-]", "", name)[:64]
        or "group",
        "securityEnabled": True,
    }


def _select(request: Request, allowed: tuple[str, ...], type_: str) -> list[str] | None:
    raw = request.query_params.get("$select")
    if raw is None:
        return None
    wanted = [p.strip() for p in raw.split(",") if p.strip()]
    by_lower = {p.lower(): p for p in allowed}
    out = []
    for p in wanted:
        if p.lower() not in by_lower:
            raise GraphError(
                400,
                "BadRequest",
                f"Parsing OData Select and Expand failed: Could not find a property named "
                f"'{p}' on type 'microsoft.graph.{type_}'.",
            )
        out.append(by_lower[p.lower()])
    return out


def _shape(obj: dict[str, Any], fields: list[str] | None, default: tuple[str, ...]) -> dict:
    keep = fields if fields is not None else list(default)
    return {k: obj.get(k) for k in keep}


def _context(request: Request, entity_set: str, fields: list[str] | None, one: bool) -> str:
    base = str(request.base_url).rstrip("/") + GRAPH
    cols = f"({','.join(fields)})" if fields else ""
    return f"{base}/$metadata#{entity_set}{cols}{'/$entity' if one else ''}"


def _ok(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=_headers(), media_type=_MEDIA)


def _no_content() -> Response:
    return Response(status_code=204, headers=_headers())


# --------------------------------------------------------------------------- collections
def _advanced(request: Request) -> bool:
    eventual = request.headers.get("consistencylevel", "").lower() == "eventual"
    count = request.query_params.get("$count", "").lower()
    if count == "true" and not eventual:
        raise GraphError(400, "Request_BadRequest", "$count is not currently supported.")
    return eventual and count == "true"


def _filter(
    request: Request, props: dict[str, str], resource: str, advanced: bool
) -> Filter | None:
    raw = request.query_params.get("$filter")
    if raw is None:
        return None
    try:
        parsed = parse_filter(raw, props, resource)
    except FilterError as exc:
        raise GraphError(400, exc.code, exc.message) from exc
    if parsed.advanced and not advanced:
        raise GraphError(
            400,
            "Request_UnsupportedQuery",
            "Operator is not supported because the required parameters might be missing. "
            "Try adding $count with a value of true and set the ConsistencyLevel header to "
            "eventual.",
        )
    return parsed


def _top(request: Request) -> int:
    raw = request.query_params.get("$top")
    if raw is None:
        return DEFAULT_TOP
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_TOP:
        raise GraphError(
            400,
            "Request_BadRequest",
            f"Invalid page size specified: '{raw}'. Must be between 1 and {MAX_TOP} inclusive.",
        )
    return int(raw)


def _after(request: Request) -> str:
    """The row id a ``$skiptoken`` continues after ("" for the first page)."""
    raw = request.query_params.get("$skiptoken")
    if raw is None:
        return ""
    try:
        after = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))["after"]
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise GraphError(400, "Request_BadRequest", "Invalid skip token.") from exc
    return str(after)


def _page(
    request: Request,
    items: list[tuple[str, dict[str, Any]]],
    *,
    entity_set: str,
    fields: list[str] | None,
    default: tuple[str, ...],
    counted: bool,
    cast: str = "",
) -> JSONResponse:
    """One page of ``items`` (row id, full JSON), sorted by row id, after the skip token;
    ``@odata.nextLink`` carries the request's own query with the next skip token."""
    items.sort(key=lambda t: t[0])
    after, top = _after(request), _top(request)
    rest = [t for t in items if t[0] > after]
    page, more = rest[:top], len(rest) > top
    value = []
    for _, obj in page:
        shaped = _shape(obj, fields, default)
        if cast:
            shaped = {"@odata.type": cast, **shaped}
        value.append(shaped)
    body: dict[str, Any] = {"@odata.context": _context(request, entity_set, fields, False)}
    if counted:
        body["@odata.count"] = len(items)
    if more:
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "$skiptoken"]
        token = base64.urlsafe_b64encode(json.dumps({"after": page[-1][0]}).encode()).decode()
        query.append(("$skiptoken", token.rstrip("=")))
        body["@odata.nextLink"] = (
            f"{str(request.base_url).rstrip('/')}{request.url.path}?{urlencode(query)}"
        )
    body["value"] = value
    return _ok(body)


def _rows(s: Session, type_: str, flt: Filter | None) -> list[IdpResource]:
    q = select(IdpResource).where(IdpResource.type == type_)
    if flt is not None and flt.equality is not None:
        # userPrincipalName / displayName eq '…' (how clients look people up) by index.
        prop, value = flt.equality
        if (type_, prop) in ((USER, "userPrincipalName"), (GROUP, "displayName")):
            q = q.where(IdpResource.name_key == comparison_key(value))
    return list(s.scalars(q))


def _user_row(s: Session, ref: str) -> IdpResource:
    """A user by object id or userPrincipalName (``/users/{id | userPrincipalName}``)."""
    row = s.get(IdpResource, rid(ref))
    if row is None or row.type != USER:
        row = s.scalar(
            select(IdpResource).where(
                IdpResource.type == USER, IdpResource.name_key == comparison_key(ref)
            )
        )
    if row is None:
        raise GraphError(404, "Request_ResourceNotFound", _NOT_FOUND.format(ref))
    return row


def _group_row(s: Session, ref: str) -> IdpResource:
    try:
        uuid.UUID(ref)
    except ValueError as exc:
        raise GraphError(400, "Request_BadRequest", f"Invalid object identifier '{ref}'.") from exc
    row = s.get(IdpResource, rid(ref))
    if row is None or row.type != GROUP:
        raise GraphError(404, "Request_ResourceNotFound", _NOT_FOUND.format(ref))
    return row


def _model(type_: str, data: dict[str, Any]) -> Resource[Any]:
    with PROVIDER:
        return resource_model(type_).model_validate(data)


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError as exc:
        raise GraphError(400, "BadRequest", "Unable to read JSON request payload.") from exc
    if not isinstance(body, dict):
        raise GraphError(400, "BadRequest", "Unable to read JSON request payload.")
    return body


def _write(world: World, trigger: str, fn: Any) -> Any:
    """One transaction through the directory (whose changes push into the org); the SCIM
    layer's refusals answered as Graph answers them."""
    try:
        with PROVIDER, world.db.session() as s:
            return fn(s, Directory(s, world.clock.now(), trigger))
    except UniquenessException as exc:
        raise GraphError(
            400,
            "Request_BadRequest",
            "Another object with the same value for property userPrincipalName already exists.",
            [{"code": "ObjectConflict", "target": "userPrincipalName", "message": str(exc)}],
        ) from exc
    except SCIMException as exc:
        raise GraphError(400, "Request_BadRequest", str(exc.detail or exc)) from exc


# --------------------------------------------------------------------------- users
@router.get("/users")
def list_users(request: Request) -> Response:
    """``GET /users``: ``$filter``, ``$select``, ``$top``, ``$count`` and paging."""
    _roles(request, READ_USERS)
    counted = _advanced(request)
    flt = _filter(request, USER_FILTERABLE, "User", counted)
    fields = _select(request, USER_PROPS, "user")
    world = _world(request)
    with world.db.session() as s:
        users = [(r.id, user_json(s, r)) for r in _rows(s, USER, flt)]
    items = [t for t in users if flt is None or flt.match(t[1])]
    return _page(
        request, items, entity_set="users", fields=fields, default=USER_DEFAULT, counted=counted
    )


def _check_user_body(body: dict[str, Any], *, create: bool) -> None:
    bad = "Invalid value specified for property '{}' of resource 'User'."
    for key in body:
        if key in ("id", "proxyAddresses", "signInSessionsValidFromDateTime", "createdDateTime"):
            raise GraphError(
                400, "Request_BadRequest", f"Property '{key}' is read-only and cannot be set."
            )
        if key not in _WRITABLE_USER and key not in USER_PROPS:
            raise GraphError(
                400,
                "Request_BadRequest",
                f"Property '{key}' does not exist as a declared property or extension property.",
            )
    required = ("accountEnabled", "displayName", "mailNickname", "userPrincipalName")
    for key in required if create else ():
        if body.get(key) in (None, ""):
            raise GraphError(400, "Request_BadRequest", bad.format(key))
    if create:
        password = str((body.get("passwordProfile") or {}).get("password") or "")
        if not password:
            raise GraphError(400, "Request_BadRequest", bad.format("passwordProfile"))
        kinds = sum(
            any(f(c) for c in password)
            for f in (str.islower, str.isupper, str.isdigit, lambda c: not c.isalnum())
        )
        if len(password) < 8 or kinds < 3:
            raise GraphError(
                400,
                "Request_BadRequest",
                "The specified password does not comply with password complexity "
                "requirements. Please provide a different password.",
            )
    upn = body.get("userPrincipalName")
    if upn is not None and (not isinstance(upn, str) or upn.count("@") != 1):
        raise GraphError(400, "Request_BadRequest", bad.format("userPrincipalName"))
    if "accountEnabled" in body and not isinstance(body["accountEnabled"], bool):
        raise GraphError(400, "Request_BadRequest", bad.format("accountEnabled"))


def _scim_user(body: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """A Graph user body applied to SCIM user data (``data``: the current, or empty)."""
    out = {**data, "schemas": data.get("schemas") or [USER_SCHEMA]}
    if "userPrincipalName" in body:
        out["userName"] = body["userPrincipalName"]
    if "displayName" in body:
        out["displayName"] = body["displayName"]
    if "mailNickname" in body:
        out["nickName"] = body["mailNickname"]
    if "accountEnabled" in body:
        out["active"] = body["accountEnabled"]
    name = dict(out.get("name") or {})
    for graph, scim in (("givenName", "givenName"), ("surname", "familyName")):
        if graph in body:
            name[scim] = body[graph]
    out["name"] = {k: v for k, v in name.items() if v}
    if "mail" in body or "otherMails" in body:
        emails = out.get("emails") or []
        mail = (
            body["mail"]
            if "mail" in body
            else next((e["value"] for e in emails if e.get("primary")), None)
        )
        others = (
            body["otherMails"]
            if "otherMails" in body
            else [e["value"] for e in emails if not e.get("primary")]
        )
        out["emails"] = (
            [{"value": norm_email(mail), "type": "work", "primary": True}] if mail else []
        ) + [{"value": norm_email(o), "type": "other"} for o in others if o and o != mail]
    return out


@router.post("/users")
async def create_user(request: Request) -> Response:
    """``POST /users``: 201 with the user (the password is checked, never kept)."""
    _roles(request, WRITE_USERS)
    body = await _body(request)
    _check_user_body(body, create=True)
    world = _world(request)
    upn = str(body["userPrincipalName"])

    def create(s: Session, d: Directory) -> dict[str, Any]:
        resource = d.create(USER, _model(USER, _scim_user(body, {})))
        return user_json(s, d.row(USER, str(resource.id)))

    made = _write(world, f"Graph create user {upn}", create)
    fields = [k for k in USER_DEFAULT]
    return _ok(
        {
            "@odata.context": _context(request, "users", None, True),
            **_shape(made, fields, USER_DEFAULT),
        },
        201,
    )


@router.get("/users/{ref}")
def get_user(ref: str, request: Request) -> Response:
    """``GET /users/{id | userPrincipalName}``."""
    _roles(request, READ_USERS)
    fields = _select(request, USER_PROPS, "user")
    world = _world(request)
    with world.db.session() as s:
        user = user_json(s, _user_row(s, ref))
    return _ok(
        {
            "@odata.context": _context(request, "users", fields, True),
            **_shape(user, fields, USER_DEFAULT),
        }
    )


@router.patch("/users/{ref}")
async def update_user(ref: str, request: Request) -> Response:
    """``PATCH /users/{id}``: 204."""
    _roles(request, WRITE_USERS)
    body = await _body(request)
    _check_user_body(body, create=False)
    body.pop("passwordProfile", None)  # accepted, never kept
    world = _world(request)

    def patch(s: Session, d: Directory) -> None:
        row = _user_row(s, ref)
        data = _scim_user(body, row.data)
        d.update(USER, _model(USER, {**data, "id": row.id}))

    _write(world, f"Graph update user {ref}", patch)
    return _no_content()


@router.delete("/users/{ref}")
def delete_user(ref: str, request: Request) -> Response:
    """``DELETE /users/{id}``: 204 (it leaves its groups; the org deprovisions it)."""
    _roles(request, WRITE_USERS)
    world = _world(request)

    def delete(s: Session, d: Directory) -> None:
        d.delete(USER, _user_row(s, ref).id)  # pushes the address gone

    _write(world, f"Graph delete user {ref}", delete)
    return _no_content()


@router.post("/users/{ref}/revokeSignInSessions")
def revoke_sign_in_sessions(ref: str, request: Request) -> Response:
    """``POST /users/{id}/revokeSignInSessions``: every session and refresh token of the user
    invalid; ``signInSessionsValidFromDateTime`` now. 200 ``{"value": true}``."""
    _roles(request, REVOKE)
    world = _world(request)
    with world.db.session() as s:
        row = _user_row(s, ref)
        end_sessions(s, row.id, world.clock.now(), tokens=True)
    base = str(request.base_url).rstrip("/") + GRAPH
    return _ok({"@odata.context": f"{base}/$metadata#Edm.Boolean", "value": True})


@router.get("/users/{ref}/memberOf")
@router.get("/users/{ref}/memberOf/microsoft.graph.group")
def member_of(ref: str, request: Request) -> Response:
    """``GET /users/{id}/memberOf`` (the direct memberships), and its OData cast to groups,
    which Graph serves only with ``ConsistencyLevel: eventual`` and ``$count=true``."""
    _roles(request, READ_USERS)
    counted = _advanced(request)
    cast = request.url.path.endswith("/microsoft.graph.group")
    if cast and not counted:
        raise GraphError(
            400,
            "Request_UnsupportedQuery",
            "The OData cast requires $count=true and the ConsistencyLevel header set to eventual.",
        )
    flt = _filter(request, GROUP_FILTERABLE, "Group", counted)
    fields = _select(request, GROUP_PROPS, "group")
    world = _world(request)
    with world.db.session() as s:
        user = _user_row(s, ref)
        rows = s.scalars(
            select(IdpResource)
            .join(IdpGroupMember, IdpGroupMember.group_id == IdpResource.id)
            .where(IdpGroupMember.member_id == user.id, IdpResource.type == GROUP)
        ).all()
        items = [(r.id, group_json(r)) for r in rows]
    items = [t for t in items if flt is None or flt.match(t[1])]
    entity = "groups" if cast else "directoryObjects"
    return _page(
        request,
        items,
        entity_set=entity,
        fields=fields,
        default=GROUP_PROPS,
        counted=counted,
        cast="" if cast else "#microsoft.graph.group",
    )


# --------------------------------------------------------------------------- groups
@router.get("/groups")
def list_groups(request: Request) -> Response:
    """``GET /groups``: ``$filter``, ``$select``, ``$top``, ``$count`` and paging."""
    _roles(request, READ_GROUPS)
    counted = _advanced(request)
    flt = _filter(request, GROUP_FILTERABLE, "Group", counted)
    fields = _select(request, GROUP_PROPS, "group")
    world = _world(request)
    with world.db.session() as s:
        items = [(r.id, group_json(r)) for r in _rows(s, GROUP, flt)]
    items = [t for t in items if flt is None or flt.match(t[1])]
    return _page(
        request, items, entity_set="groups", fields=fields, default=GROUP_PROPS, counted=counted
    )


@router.post("/groups")
async def create_group(request: Request) -> Response:
    """``POST /groups``: a security group (``mailEnabled`` false, ``securityEnabled`` true),
    with its first members by ``members@odata.bind``; 201."""
    _roles(request, WRITE_GROUPS)
    body = await _body(request)
    bad = "Invalid value specified for property '{}' of resource 'Group'."
    for key in ("displayName", "mailNickname"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise GraphError(400, "Request_BadRequest", bad.format(key))
    if body.get("mailEnabled") is not False or body.get("securityEnabled") is not True:
        raise GraphError(
            400,
            "Request_BadRequest",
            "The sandbox makes security groups only: mailEnabled false, securityEnabled true.",
        )
    binds = body.get("members@odata.bind") or []
    members = [rid(str(b).rstrip("/").rsplit("/", 1)[-1]) for b in binds]
    world = _world(request)

    def create(s: Session, d: Directory) -> dict[str, Any]:
        for m in members:
            if s.get(IdpResource, m) is None:
                raise GraphError(404, "Request_ResourceNotFound", _NOT_FOUND.format(gid(m)))
        data = {
            "schemas": [GROUP_SCHEMA],
            "displayName": body["displayName"],
            "members": [{"value": m, "type": USER} for m in members],
        }
        made = d.create(GROUP, _model(GROUP, data))
        row = d.row(GROUP, str(made.id))
        return group_json(row) | {
            "description": body.get("description"),
            "mailNickname": body["mailNickname"],
        }

    try:
        made = _write(world, f"Graph create group {body['displayName']}", create)
    except GraphError as exc:
        if exc.details and exc.details[0].get("code") == "ObjectConflict":
            exc.message = (
                "Another object with the same value for property displayName already exists."
            )
            exc.details = [{"code": "ObjectConflict", "target": "displayName"}]
        raise
    return _ok({"@odata.context": _context(request, "groups", None, True), **made}, 201)


@router.get("/groups/{ref}")
def get_group(ref: str, request: Request) -> Response:
    """``GET /groups/{id}``: an id that is no GUID is a 400, as in Graph."""
    _roles(request, READ_GROUPS)
    fields = _select(request, GROUP_PROPS, "group")
    world = _world(request)
    with world.db.session() as s:
        group = group_json(_group_row(s, ref))
    return _ok(
        {
            "@odata.context": _context(request, "groups", fields, True),
            **_shape(group, fields, GROUP_PROPS),
        }
    )


@router.delete("/groups/{ref}")
def delete_group(ref: str, request: Request) -> Response:
    """``DELETE /groups/{id}``: 204 (its members lose what it mapped to in the org)."""
    _roles(request, WRITE_GROUPS)
    world = _world(request)
    _write(world, f"Graph delete group {ref}", lambda s, d: d.delete(GROUP, _group_row(s, ref).id))
    return _no_content()


@router.get("/groups/{ref}/members")
@router.get("/groups/{ref}/members/microsoft.graph.user")
def list_members(ref: str, request: Request) -> Response:
    """``GET /groups/{id}/members``: the direct members (users here), paged."""
    _roles(request, READ_GROUPS)
    counted = _advanced(request)
    cast = request.url.path.endswith("/microsoft.graph.user")
    if cast and not counted:
        raise GraphError(
            400,
            "Request_UnsupportedQuery",
            "The OData cast requires $count=true and the ConsistencyLevel header set to eventual.",
        )
    fields = _select(request, USER_PROPS, "user")
    world = _world(request)
    with world.db.session() as s:
        group = _group_row(s, ref)
        rows = s.scalars(
            select(IdpResource)
            .join(IdpGroupMember, IdpGroupMember.member_id == IdpResource.id)
            .where(IdpGroupMember.group_id == group.id, IdpResource.type == USER)
        ).all()
        items = [(r.id, user_json(s, r)) for r in rows]
    return _page(
        request,
        items,
        entity_set="users" if cast else "directoryObjects",
        fields=fields,
        default=USER_DEFAULT,
        counted=counted,
        cast="" if cast else "#microsoft.graph.user",
    )


@router.post("/groups/{ref}/members/$ref")
async def add_member(ref: str, request: Request) -> Response:
    """``POST /groups/{id}/members/$ref`` with ``{"@odata.id": ".../directoryObjects/{id}"}``:
    204; 400 when already a member; 404 for an unknown group or object."""
    _roles(request, WRITE_MEMBERS)
    body = await _body(request)
    target = body.get("@odata.id")
    if not isinstance(target, str) or not re.search(
        r"/(directoryObjects|users)/[^/]+$", target.rstrip("/")
    ):
        raise GraphError(400, "Request_BadRequest", "Invalid URL format specified in @odata.id.")
    member_ref = target.rstrip("/").rsplit("/", 1)[-1]
    world = _world(request)

    def add(s: Session, d: Directory) -> None:
        group = _group_row(s, ref)
        member = s.get(IdpResource, rid(member_ref))
        if member is None or member.type != USER:
            raise GraphError(404, "Request_ResourceNotFound", _NOT_FOUND.format(member_ref))
        current = list(group.data.get("members") or [])
        if any(m.get("value") == member.id for m in current):
            raise GraphError(
                400,
                "Request_BadRequest",
                "One or more added object references already exist for the following "
                "modified properties: 'members'.",
            )
        current.append({"value": member.id, "type": USER})
        d.update(GROUP, _model(GROUP, {**group.data, "id": group.id, "members": current}))

    _write(world, f"Graph add member {member_ref} to {ref}", add)
    return _no_content()


@router.delete("/groups/{ref}/members/{member}/$ref")
def remove_member(ref: str, member: str, request: Request) -> Response:
    """``DELETE /groups/{id}/members/{id}/$ref``: 204; 404 when not a member."""
    _roles(request, WRITE_MEMBERS)
    world = _world(request)

    def remove(s: Session, d: Directory) -> None:
        group = _group_row(s, ref)
        current = list(group.data.get("members") or [])
        kept = [m for m in current if m.get("value") != rid(member)]
        if len(kept) == len(current):
            raise GraphError(
                404,
                "Request_ResourceNotFound",
                "One or more removed object references do not exist for the following "
                "modified properties: 'members'.",
            )
        d.update(GROUP, _model(GROUP, {**group.data, "id": group.id, "members": kept}))

    _write(world, f"Graph remove member {member} from {ref}", remove)
    return _no_content()


@router.api_route("/{rest:path}", methods=["GET", "POST", "PATCH", "PUT", "DELETE"])
def unknown_segment(rest: str, request: Request) -> Response:
    """What Graph answers for a path it does not serve."""
    _roles(request, READ_USERS | READ_GROUPS)
    segment = rest.split("/", 1)[0]
    raise GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")
