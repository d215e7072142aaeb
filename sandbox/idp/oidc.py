"""The sandbox IdP's OpenID Connect provider, at ``/idp/oidc``: how people sign in to Handover.

Faithful to the shapes of OpenID Connect Core 1.0 and Discovery 1.0, RFC 6749 (OAuth 2.0),
RFC 7636 (PKCE) and RFC 8628 (device authorization grant):

- ``/.well-known/openid-configuration`` (discovery) and ``/jwks`` (the world's RSA key, made
  once and kept in its database, so a restart on the same file keeps verifying old tokens);
- ``/authorize``: authorization code flow with PKCE (S256 only, required: both clients are
  public), a sign-in form taking the person's email and the published sandbox password;
- ``/device_authorization`` and the verification page ``/device``, where the person types the
  user code and signs in (plain HTML forms: a test drives them with httpx);
- ``/token``: ``authorization_code`` (code_verifier checked) and
  ``urn:ietf:params:oauth:grant-type:device_code`` (authorization_pending, slow_down,
  expired_token, access_denied).

Only active users of the sandbox IdP (its SCIM users) may sign in. ID tokens are RS256 JWTs with
iss, sub (the IdP user id), aud (the client id), email (lower-case), iat, exp, auth_time and the
nonce when one was given. The codes' lifetimes run on the world's clock (a test moves a code
past its expiry); the tokens carry the real time. There is no userinfo endpoint: the ID token
carries every claim Handover reads. Sign-in is not faulted nor rate-limited (FaultMiddleware).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from base64 import urlsafe_b64encode
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from sqlalchemy import select
from sqlalchemy.orm import Session

from sandbox.db import Setting
from sandbox.idp.directory import USER
from sandbox.idp.models import IdpResource, OidcCode, OidcDeviceGrant
from sandbox.idp.sessions import start_session
from sandbox.org.service import norm_email
from sandbox.world import World

PREFIX = "/idp/oidc"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
CODE_TTL = timedelta(minutes=2)  # RFC 6749 §4.1.2: short, at most 10 minutes
DEVICE_TTL = timedelta(minutes=10)
DEVICE_INTERVAL = 5  # RFC 8628 §3.2: the default when none is given
SLOW_DOWN_STEP = 5  # RFC 8628 §3.5: "increased by 5 seconds for this and all subsequent"
ID_TOKEN_TTL = timedelta(hours=1)
# RFC 8628 §6.1: base-20 consonants, no vowels (no words), no look-alikes; 8 of them ≈ 34 bits.
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
_KEY_SETTING = "oidc_signing_key"
# RFC 7636 §4.1: 43 to 128 unreserved characters.
_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")


@dataclass(frozen=True)
class Client:
    """A registered public client (no secret: PKCE or the device grant stands in for it)."""

    client_id: str
    grant_types: frozenset[str]
    # Exact redirect URIs; on loopback any port is accepted (RFC 8252 §7.3).
    redirect_uris: tuple[str, ...] = ()

    def allows_redirect(self, uri: str) -> bool:
        try:
            got = urlsplit(uri)
            got_port = got.port
        except ValueError:
            return False
        for registered in self.redirect_uris:
            want = urlsplit(registered)
            loopback = want.hostname in ("127.0.0.1", "localhost", "::1")
            if (
                got.scheme == want.scheme
                and got.hostname == want.hostname
                and got.path == want.path
                and got.query == want.query
                and not got.fragment
                and (got_port == want.port or (loopback and got_port is not None))
            ):
                return True
        return False


CLIENTS: dict[str, Client] = {
    # `handover login`: a terminal has no browser to redirect to.
    "handover-cli": Client("handover-cli", frozenset({DEVICE_GRANT})),
    # The browser's sign-in to the intake (the console's /console, a rotated secret's
    # /secrets page), served on loopback at whatever port it was given.
    "handover-console": Client(
        "handover-console",
        frozenset({"authorization_code"}),
        (
            "http://127.0.0.1/console/callback",
            "http://localhost/console/callback",
            "http://127.0.0.1/secrets/callback",
            "http://localhost/secrets/callback",
        ),
    ),
}

router = APIRouter(prefix=PREFIX, tags=["identity provider (OIDC)"])


def _world(request: Request) -> World:
    world: World = request.app.state.world  # Starlette's State is untyped: one set per app
    return world


def issuer_of(request: Request) -> str:
    """The issuer: this sandbox's base URL + ``/idp/oidc`` (what every token's ``iss`` says)."""
    return str(request.base_url).rstrip("/") + PREFIX


def signing_key(world: World) -> RSAKey:
    """The world's RSA signing key: made on first use and kept in its database."""
    with world.db.session() as s:
        row = s.get(Setting, _KEY_SETTING)
        if row is not None:
            return RSAKey.import_key(row.value)
        key = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"}, private=True)
        key.ensure_kid()  # the RFC 7638 thumbprint
        s.add(Setting(key=_KEY_SETTING, value=dict(key.as_dict(private=True))))
        return key


# --- discovery and keys -----------------------------------------------------------------------


@router.get("/.well-known/openid-configuration")
def discovery(request: Request) -> dict[str, Any]:
    """OpenID Connect Discovery 1.0 metadata (and RFC 8414's device endpoint)."""
    iss = issuer_of(request)
    return {
        "issuer": iss,
        "authorization_endpoint": f"{iss}/authorize",
        "token_endpoint": f"{iss}/token",
        "device_authorization_endpoint": f"{iss}/device_authorization",
        "jwks_uri": f"{iss}/jwks",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", DEVICE_GRANT],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile"],
        "token_endpoint_auth_methods_supported": ["none"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "auth_time",
            "nonce",
            "email",
            "email_verified",
            "name",
        ],
    }


@router.get("/jwks")
def jwks(request: Request) -> dict[str, Any]:
    """The public half of the signing key, as a JWK Set (RFC 7517)."""
    key = signing_key(_world(request))
    return dict(KeySet([key]).as_dict(private=False))


# --- people -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SignInFailure:
    status: int
    message: str


def authenticate(
    s: Session, world: World, email: str, password: str
) -> IdpResource | SignInFailure:
    """The active IdP user with this email and the published sandbox password, or why not."""
    ok_password = hmac.compare_digest(
        password.encode(), world.credentials.idp_user_password.encode()
    )
    key = norm_email(email)
    row = s.scalar(
        select(IdpResource).where(
            IdpResource.type == USER, (IdpResource.email == key) | (IdpResource.name_key == key)
        )
    )
    if row is None or not ok_password:
        # One answer for both: a sign-in page does not tell who has an account.
        return SignInFailure(401, "wrong email or password")
    if not row.active:
        return SignInFailure(403, f"{key} is deactivated in the identity provider")
    return row


def id_token(
    world: World,
    *,
    issuer: str,
    client_id: str,
    user: IdpResource,
    auth_time: datetime,
    nonce: str | None = None,
) -> str:
    """A signed (RS256) ID token for ``user``, for ``client_id``.

    Stamped with the real time, not the world's: the client checks ``iat`` and ``exp`` against
    its own clock, and a world moved 30 days ahead would issue tokens "from the future".
    """
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": user.id,
        "aud": client_id,
        "iat": int(now.timestamp()),
        "exp": int((now + ID_TOKEN_TTL).timestamp()),
        "auth_time": int(auth_time.timestamp()),
        "email": (user.email or user.name_key).lower(),
        "email_verified": True,
        "name": user.display_name or user.email or user.name_key,
    }
    if nonce:
        claims["nonce"] = nonce
    key = signing_key(world)
    return jwt.encode({"alg": "RS256", "kid": key.kid, "typ": "JWT"}, claims, key)


def _token_response(token: str) -> JSONResponse:
    body = {
        "access_token": secrets.token_urlsafe(32),
        "token_type": "Bearer",
        "expires_in": int(ID_TOKEN_TTL.total_seconds()),
        "id_token": token,
        "scope": "openid email profile",
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    """An RFC 6749 §5.2 error answer of the token (or device authorization) endpoint."""
    headers = {"Cache-Control": "no-store", "Pragma": "no-cache"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="handover-sandbox"'
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=headers
    )


async def _form(request: Request) -> dict[str, str] | None:
    """The application/x-www-form-urlencoded body, or None when a parameter is repeated
    (RFC 6749 §3.1: parameters MUST NOT be included more than once)."""
    pairs = parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    out = dict(pairs)
    return out if len(out) == len(pairs) else None


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    html = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title></head><body><h1>{escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def _hidden(fields: dict[str, str]) -> str:
    return "".join(
        f"<input type='hidden' name='{escape(k)}' value='{escape(v)}'>" for k, v in fields.items()
    )


def _credentials_inputs(email: str = "") -> str:
    return (
        f"<p><label>Email <input name='email' type='email' value='{escape(email)}'></label></p>"
        "<p><label>Password <input name='password' type='password'></label></p>"
    )


# --- authorization code + PKCE ----------------------------------------------------------------

_AUTHORIZE_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
)


def _redirect(uri: str, params: dict[str, str]) -> RedirectResponse:
    sep = "&" if urlsplit(uri).query else "?"
    return RedirectResponse(f"{uri}{sep}{urlencode(params)}", status_code=302)


def _check_authorize(p: dict[str, str]) -> Response | None:
    """Refuse a bad authorization request: an unknown client or redirect URI on the page
    itself (never redirect to an unregistered address, RFC 6749 §4.1.2.1); anything else as
    an error sent back to the client's redirect URI."""
    client = CLIENTS.get(p.get("client_id", ""))
    if client is None or "authorization_code" not in client.grant_types:
        return _page("Sign-in refused", "<p>unknown client_id</p>", 400)
    redirect_uri = p.get("redirect_uri", "")
    if not client.allows_redirect(redirect_uri):
        return _page("Sign-in refused", "<p>redirect_uri is not registered</p>", 400)
    back = {"state": p["state"]} if p.get("state") else {}
    if p.get("response_type") != "code":
        return _redirect(
            redirect_uri,
            {"error": "unsupported_response_type", "error_description": "only code", **back},
        )
    if "openid" not in p.get("scope", "").split():
        return _redirect(
            redirect_uri,
            {"error": "invalid_scope", "error_description": "the openid scope is required", **back},
        )
    challenge = p.get("code_challenge", "")
    if p.get("code_challenge_method") != "S256" or not _VERIFIER.match(challenge):
        return _redirect(
            redirect_uri,
            {
                "error": "invalid_request",
                "error_description": "PKCE is required: code_challenge with method S256",
                **back,
            },
        )
    return None


def _sign_in_form(
    p: dict[str, str], *, email: str = "", error: str = "", status: int = 200
) -> HTMLResponse:
    client = escape(p.get("client_id", ""))
    err = f"<p role='alert'>{escape(error)}</p>" if error else ""
    return _page(
        "Sign in to the sandbox identity provider",
        f"<p>{client} asks who you are.</p>{err}"
        f"<form method='post' action='{PREFIX}/authorize'>"
        f"{_hidden(p)}{_credentials_inputs(email)}"
        "<button name='action' value='allow'>Sign in</button> "
        "<button name='action' value='cancel'>Cancel</button></form>",
        status,
    )


@router.get("/authorize")
def authorize_page(request: Request) -> Response:
    """The sign-in page of the authorization code flow."""
    p = {k: v for k, v in request.query_params.items() if k in _AUTHORIZE_PARAMS}
    return _check_authorize(p) or _sign_in_form(p)


@router.post("/authorize")
async def authorize_submit(request: Request) -> Response:
    """The sign-in form posted: a code sent to the redirect URI, or the form again."""
    form = await _form(request)
    if form is None:
        return _page("Sign-in refused", "<p>a parameter was repeated</p>", 400)
    p = {k: v for k, v in form.items() if k in _AUTHORIZE_PARAMS}
    refused = _check_authorize(p)
    if refused is not None:
        return refused
    back = {"state": p["state"]} if p.get("state") else {}
    if form.get("action") == "cancel":
        return _redirect(
            p["redirect_uri"],
            {"error": "access_denied", "error_description": "the person declined", **back},
        )
    world = _world(request)
    email = form.get("email", "")
    with world.db.session() as s:
        who = authenticate(s, world, email, form.get("password", ""))
        if isinstance(who, SignInFailure):
            return _sign_in_form(p, email=email, error=who.message, status=who.status)
        now = world.clock.now()
        code = secrets.token_urlsafe(32)
        s.add(
            OidcCode(
                code=code,
                client_id=p["client_id"],
                redirect_uri=p["redirect_uri"],
                user_id=who.id,
                scope=p.get("scope", "openid"),
                nonce=p.get("nonce") or None,
                code_challenge=p["code_challenge"],
                auth_time=now,
                expires_at=now + CODE_TTL,
            )
        )
    return _redirect(p["redirect_uri"], {"code": code, **back})


def s256(verifier: str) -> str:
    """RFC 7636 §4.2: BASE64URL(SHA256(verifier)), unpadded."""
    return urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


# --- device authorization (RFC 8628) ----------------------------------------------------------


def _normal_user_code(text: str) -> str:
    return "".join(ch for ch in text.upper() if ch.isalnum())


def _shown(user_code: str) -> str:
    return f"{user_code[:4]}-{user_code[4:]}"


@router.post("/device_authorization")
async def device_authorization(request: Request) -> JSONResponse:
    """RFC 8628 §3.1 and §3.2: a device code for the client to poll with, and a user code for the
    person to type on the verification page."""
    form = await _form(request)
    if form is None:
        return _oauth_error("invalid_request", "a parameter was repeated")
    client = CLIENTS.get(form.get("client_id", ""))
    if client is None:
        return _oauth_error("invalid_client", "unknown client_id", 401)
    if DEVICE_GRANT not in client.grant_types:
        return _oauth_error("unauthorized_client", "this client may not use the device grant")
    scope = form.get("scope", "openid")
    if "openid" not in scope.split():
        return _oauth_error("invalid_scope", "the openid scope is required")
    world = _world(request)
    now = world.clock.now()
    device_code = secrets.token_urlsafe(32)
    with world.db.session() as s:
        while True:  # user codes are unique among the grants kept
            user_code = "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(8))
            if s.scalar(select(OidcDeviceGrant).where(OidcDeviceGrant.user_code == user_code)):
                continue
            break
        s.add(
            OidcDeviceGrant(
                device_code=device_code,
                user_code=user_code,
                client_id=client.client_id,
                scope=scope,
                interval=DEVICE_INTERVAL,
                expires_at=now + DEVICE_TTL,
            )
        )
    uri = f"{issuer_of(request)}/device"
    return JSONResponse(
        {
            "device_code": device_code,
            "user_code": _shown(user_code),
            "verification_uri": uri,
            "verification_uri_complete": f"{uri}?{urlencode({'user_code': _shown(user_code)})}",
            "expires_in": int(DEVICE_TTL.total_seconds()),
            "interval": DEVICE_INTERVAL,
        },
        headers={"Cache-Control": "no-store"},
    )


def _device_form(
    user_code: str = "", *, email: str = "", error: str = "", status: int = 200
) -> HTMLResponse:
    err = f"<p role='alert'>{escape(error)}</p>" if error else ""
    return _page(
        "Sign in a device",
        "<p>Type the code your terminal shows, then sign in.</p>"
        f"{err}<form method='post' action='{PREFIX}/device'>"
        "<p><label>Code <input name='user_code' autocomplete='off' "
        f"value='{escape(user_code)}'></label></p>{_credentials_inputs(email)}"
        "<button name='action' value='allow'>Allow</button> "
        "<button name='action' value='deny'>Deny</button></form>",
        status,
    )


@router.get("/device")
def device_page(user_code: str = "") -> Response:
    """The verification page (``verification_uri``; ``?user_code=`` pre-fills the code)."""
    return _device_form(user_code)


@router.post("/device")
async def device_submit(request: Request) -> Response:
    """The person's answer to a device authorization: signed in, they allow or deny it."""
    form = await _form(request)
    if form is None:
        return _device_form(error="a parameter was repeated", status=400)
    shown = form.get("user_code", "")
    email = form.get("email", "")
    world = _world(request)
    with world.db.session() as s:
        grant = s.scalar(
            select(OidcDeviceGrant).where(OidcDeviceGrant.user_code == _normal_user_code(shown))
        )
        if grant is None:
            return _device_form(shown, email=email, error="no such code: check it", status=400)
        now = world.clock.now()
        if now >= grant.expires_at:
            return _device_form(
                shown, email=email, error="this code has expired: start again", status=400
            )
        if grant.status != "pending":
            return _device_form(
                shown, email=email, error="this code was already answered", status=400
            )
        who = authenticate(s, world, email, form.get("password", ""))
        if isinstance(who, SignInFailure):
            return _device_form(shown, email=email, error=who.message, status=who.status)
        if form.get("action") == "deny":
            grant.status = "denied"
            return _page("Device refused", "<p>The device was not signed in.</p>")
        grant.status, grant.user_id, grant.auth_time = "approved", who.id, now
        name = escape((who.email or who.name_key).lower())
        return _page(
            "Device signed in",
            f"<p>Signed in as <b>{name}</b>. You can go back to your terminal.</p>",
        )


# --- the token endpoint -----------------------------------------------------------------------


@router.post("/token")
async def token(request: Request) -> JSONResponse:
    """RFC 6749 §3.2: an authorization code (with its PKCE verifier) or an approved device code
    for an ID token; the RFC's error codes otherwise."""
    form = await _form(request)
    if form is None:
        return _oauth_error("invalid_request", "a parameter was repeated")
    client = CLIENTS.get(form.get("client_id", ""))
    if client is None:
        return _oauth_error("invalid_client", "unknown client_id", 401)
    grant_type = form.get("grant_type", "")
    if grant_type not in ("authorization_code", DEVICE_GRANT):
        return _oauth_error("unsupported_grant_type", f"grant_type {grant_type!r}")
    if grant_type not in client.grant_types:
        return _oauth_error("unauthorized_client", f"this client may not use {grant_type}")
    world = _world(request)
    iss = issuer_of(request)
    if grant_type == "authorization_code":
        return _redeem_code(world, iss, client, form)
    return _poll_device(world, iss, client, form)


def _redeem_code(world: World, iss: str, client: Client, form: dict[str, str]) -> JSONResponse:
    verifier = form.get("code_verifier", "")
    if not form.get("code") or not verifier:
        return _oauth_error("invalid_request", "code and code_verifier are required")
    with world.db.session() as s:
        row = s.get(OidcCode, form["code"])
        now = world.clock.now()
        if row is None or row.client_id != client.client_id or row.used:
            return _oauth_error("invalid_grant", "unknown, used or foreign authorization code")
        row.used = True  # one attempt per code, whatever its outcome
        if now >= row.expires_at:
            return _oauth_error("invalid_grant", "the authorization code has expired")
        if form.get("redirect_uri") != row.redirect_uri:
            return _oauth_error("invalid_grant", "redirect_uri differs from the authorization's")
        if not _VERIFIER.match(verifier) or not hmac.compare_digest(
            s256(verifier), row.code_challenge
        ):
            return _oauth_error("invalid_grant", "code_verifier does not match the challenge")
        user = s.get(IdpResource, row.user_id)
        if user is None or not user.active:
            return _oauth_error("invalid_grant", "the person is no longer active")
        nonce, auth_time = row.nonce, row.auth_time
        # A sign-in is a session at the IdP, which offboarding ends (sandbox.idp.sessions).
        start_session(s, user.id, now, client.client_id)
    token = id_token(
        world, issuer=iss, client_id=client.client_id, user=user, auth_time=auth_time, nonce=nonce
    )
    return _token_response(token)


def _poll_device(world: World, iss: str, client: Client, form: dict[str, str]) -> JSONResponse:
    if not form.get("device_code"):
        return _oauth_error("invalid_request", "device_code is required")
    with world.db.session() as s:
        grant = s.get(OidcDeviceGrant, form["device_code"])
        if grant is None or grant.client_id != client.client_id or grant.status == "used":
            return _oauth_error("invalid_grant", "unknown, used or foreign device code")
        now = world.clock.now()
        if now >= grant.expires_at:
            return _oauth_error("expired_token", "the device code has expired: start again")
        last, grant.last_poll_at = grant.last_poll_at, now
        if last is not None and (now - last).total_seconds() < grant.interval:
            grant.interval += SLOW_DOWN_STEP
            return _oauth_error(
                "slow_down", f"polled too often: wait {grant.interval} s between polls"
            )
        if grant.status == "pending":
            return _oauth_error("authorization_pending", "the person has not answered yet")
        if grant.status == "denied":
            return _oauth_error("access_denied", "the person declined")
        user = s.get(IdpResource, grant.user_id) if grant.user_id else None
        if user is None or not user.active:
            return _oauth_error("access_denied", "the person is no longer active")
        grant.status = "used"
        auth_time = grant.auth_time or now
        start_session(s, user.id, now, client.client_id)
    token = id_token(world, issuer=iss, client_id=client.client_id, user=user, auth_time=auth_time)
    return _token_response(token)
