"""OAuth 2.0 for Okta's Management API in the sandbox: the org authorization server's token
endpoint (``/okta/oauth2/v1/token``) for service apps, and what the API checks of a caller.

Imitates Okta's "OAuth 2.0 for Okta" service apps: the client credentials grant only, the client
authenticated by ``private_key_jwt`` (RFC 7523: a JWT signed with a key whose public half is in
the app's JWKS; ``iss`` = ``sub`` = the client id, ``aud`` = the token URL, ``exp`` in the
future and at most an hour after ``iat``, a ``jti`` used once), each requested scope one the app
was granted (else ``invalid_scope``). The access token is opaque and lives an hour (or what the
client's registration says). JWTs are verified with joserfc, against real time, as the client
signs them.

A client registry (``/_sandbox/idp/okta/clients``) stands in for the Admin Console where an
admin creates the service app, registers its public key and grants scopes; the sandbox's own
service app is :data:`SANDBOX_CLIENT_ID`, with no key until one is registered.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from pydantic import BaseModel, Field
from sqlalchemy import JSON, Integer, String, delete
from sqlalchemy.orm import Mapped, Session, mapped_column

from sandbox.db import Base
from sandbox.idp.okta_wire import OktaRoute
from sandbox.world import World

SANDBOX_CLIENT_ID = "0oahandoversandbox"  # the sandbox's service app (Okta ids start 0oa)
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# What Okta's service apps may be granted and each Management API route here needs.
SCOPES = (
    "okta.users.read",
    "okta.users.manage",
    "okta.groups.read",
    "okta.groups.manage",
)
_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "EdDSA"]
_MAX_ASSERTION_S = 3600  # Okta refuses an assertion whose exp is more than an hour after iat


class OktaServiceApp(Base):
    """A registered service app: its public keys and granted scopes."""

    __tablename__ = "okta_service_apps"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    jwks: Mapped[dict[str, Any]] = mapped_column(JSON)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    token_lifetime: Mapped[int] = mapped_column(Integer, default=3600)


class OktaAccessToken(Base):
    """An access token issued (its SHA-256 only: the sandbox keeps no bearer secret)."""

    __tablename__ = "okta_access_tokens"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), index=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    expires_at: Mapped[float]


class OktaAssertionJti(Base):
    """A client assertion's ``jti`` already used (single use, RFC 7523 §3 item 7)."""

    __tablename__ = "okta_assertion_jtis"

    jti: Mapped[str] = mapped_column(String(200), primary_key=True)
    expires_at: Mapped[float]


router = APIRouter(prefix="/okta/oauth2/v1", tags=["okta"], route_class=OktaRoute)
control_router = APIRouter(prefix="/_sandbox/idp/okta", tags=["sandbox control"])


def _world(request: Request) -> World:
    world: World = request.app.state.world
    return world


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    """RFC 6749 §5.2's error answer, as Okta's token endpoint gives it."""
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


def _check_assertion(
    s: Session, assertion: str, token_url: str, now: float
) -> tuple[OktaServiceApp | None, str]:
    """The service app the assertion authenticates, or None and why not."""
    try:
        unverified = jws.extract_compact(assertion.encode())
        claims = jwt.decode(assertion, _keys_of(s, unverified.payload), algorithms=_ALGORITHMS)
    except (JoseError, ValueError, LookupError):
        return None, "The client_assertion signature is invalid or its client is unknown."
    c = claims.claims
    app = s.get(OktaServiceApp, str(c.get("iss") or ""))
    if app is None or c.get("sub") != app.client_id:
        return None, "The iss and sub claims must both be the client_id."
    if c.get("aud") != token_url:
        return None, "The audience claim of the client_assertion must be the token endpoint."
    exp, iat = c.get("exp"), c.get("iat", now)
    if not isinstance(exp, int | float) or exp <= now:
        return None, "The client_assertion has expired."
    if not isinstance(iat, int | float) or exp - iat > _MAX_ASSERTION_S:
        return None, "The client_assertion must expire within an hour of its issue."
    jti = str(c.get("jti") or "")
    if not jti:
        return None, "The client_assertion has no jti claim."
    s.execute(delete(OktaAssertionJti).where(OktaAssertionJti.expires_at < now))
    if s.get(OktaAssertionJti, jti) is not None:
        return None, "The client_assertion jti has already been used."
    s.add(OktaAssertionJti(jti=jti, expires_at=float(exp)))
    return app, ""


def _keys_of(s: Session, payload: bytes) -> KeySet:
    """The public keys of the app the (still unverified) assertion names as its issuer."""
    iss = str(json.loads(payload).get("iss") or "")
    app = s.get(OktaServiceApp, iss)
    if app is None or not app.jwks.get("keys"):
        raise LookupError(iss)
    return KeySet.import_key_set(app.jwks)  # type: ignore[arg-type]


@router.post("/token")
async def token(request: Request) -> JSONResponse:
    """The client credentials grant with ``private_key_jwt`` (what Okta allows a service app
    asking for Okta scopes); RFC 6749's errors otherwise."""
    pairs = parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    form = dict(pairs)
    if len(form) != len(pairs):
        return _oauth_error("invalid_request", "A parameter was repeated.")
    if form.get("grant_type") != "client_credentials":
        grant = form.get("grant_type", "")
        return _oauth_error("unsupported_grant_type", f"The grant type {grant!r} is not supported.")
    if form.get("client_assertion_type") != ASSERTION_TYPE or not form.get("client_assertion"):
        return _oauth_error(
            "invalid_client", "Service apps authenticate with private_key_jwt only.", 401
        )
    requested = form.get("scope", "").split()
    if not requested:
        return _oauth_error("invalid_scope", "The authorization server requires a scope.")
    world, now = _world(request), time.time()
    token_url = str(request.url.replace(query=""))
    with world.db.session() as s:
        app, why = _check_assertion(s, form["client_assertion"], token_url, now)
        if app is None:
            return _oauth_error("invalid_client", why, 401)
        if form.get("client_id") not in (None, app.client_id):
            return _oauth_error("invalid_client", "client_id does not match the assertion.", 401)
        refused = [sc for sc in requested if sc not in app.scopes]
        if refused:
            return _oauth_error(
                "invalid_scope", f"The following scopes are not allowed: {' '.join(refused)}"
            )
        access = secrets.token_urlsafe(32)
        s.add(
            OktaAccessToken(
                digest=_digest(access),
                client_id=app.client_id,
                scopes=requested,
                expires_at=now + app.token_lifetime,
            )
        )
        lifetime = app.token_lifetime
    return JSONResponse(
        {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "access_token": access,
            "scope": " ".join(requested),
        },
        headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
    )


def bearer_scopes(world: World, access: str) -> list[str] | None:
    """The scopes of a live access token issued here, or None (unknown or expired)."""
    with world.db.session() as s:
        row = s.get(OktaAccessToken, _digest(access))
        if row is None or row.expires_at <= time.time():
            return None
        return list(row.scopes)


def ssws_ok(world: World, token: str) -> bool:
    """Whether an ``SSWS`` API token is the world's IdP token."""
    return hmac.compare_digest(token.encode(), world.credentials.idp_token.encode())


# ---------------------------------------------------------------------------- controls
class ClientBody(BaseModel):
    """A service app as an admin registers it: its public JWKS and granted scopes."""

    client_id: str = Field(SANDBOX_CLIENT_ID, min_length=1, max_length=64)
    jwks: dict[str, Any] = Field(..., description='{"keys": [public JWK, ...]}')
    scopes: list[str] = Field(default_factory=lambda: ["okta.users.manage", "okta.groups.manage"])
    token_lifetime: int = Field(3600, ge=1, le=86_400, description="seconds an access token lives")


@control_router.post("/clients")
def register_client(request: Request, body: ClientBody) -> JSONResponse:
    """Register (or replace) a service app: its public keys (private members refused) and the
    scopes it was granted."""
    keys = body.jwks.get("keys")
    if not isinstance(keys, list) or not keys:
        return JSONResponse({"detail": "jwks must hold keys"}, status_code=422)
    try:
        key_set = KeySet.import_key_set(body.jwks)  # type: ignore[arg-type]
    except (JoseError, ValueError, TypeError) as exc:
        return JSONResponse({"detail": f"not a JWKS: {exc}"}, status_code=422)
    if any(k.is_private for k in key_set.keys):
        return JSONResponse({"detail": "register public keys only"}, status_code=422)
    unknown = sorted(set(body.scopes) - set(SCOPES))
    if unknown:
        return JSONResponse({"detail": f"unknown scopes: {', '.join(unknown)}"}, status_code=422)
    world = _world(request)
    with world.db.session() as s:
        s.merge(
            OktaServiceApp(
                client_id=body.client_id,
                jwks=body.jwks,
                scopes=list(body.scopes),
                token_lifetime=body.token_lifetime,
            )
        )
    return JSONResponse({"client_id": body.client_id, "scopes": body.scopes})


@control_router.post("/tokens/revoke")
def revoke_tokens(request: Request, client_id: str = SANDBOX_CLIENT_ID) -> dict[str, Any]:
    """Revoke every access token of a service app (as an admin revoking them would)."""
    world = _world(request)
    with world.db.session() as s:
        result = s.execute(delete(OktaAccessToken).where(OktaAccessToken.client_id == client_id))
    return {"revoked": int(getattr(result, "rowcount", 0) or 0)}
