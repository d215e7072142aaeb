"""The organisation's identity provider over OpenID Connect: how a person proves who they are.

What `handover login` needs: discovery (OpenID Connect Discovery 1.0), the device authorization
grant (RFC 8628: ask for a device code, poll the token endpoint honouring ``interval`` and
``slow_down``) and the validation of the ID token it gets (signature against the provider's
JWKS, ``iss``, ``aud``, ``exp``, ``iat``, ``nonce``, ``azp``) — the last with kept libraries,
never by hand: joserfc verifies the JWS and authlib's ``IDToken`` checks the claims as OpenID
Connect Core §3.1.3.7 says. A browser signs in to the intake with the authorization code grant
and PKCE (RFC 7636, S256): :meth:`OidcClient.authorization_url` and
:meth:`OidcClient.redeem_code`, the ID token validated the same way. The HTTP is plain httpx
(authlib's httpx client warns that its httpx support is deprecated).

Errors are the connectors' tree (:mod:`connectors.errors`): an ID token that does not hold, a
denied or expired device code are :class:`AuthError` (:class:`ExpiredToken` for an expired ID
token, so a caller can say "sign in again"); an unreachable provider is a
:class:`TransientError`. No token ever appears in a message.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
from authlib.oidc.core import IDToken
from joserfc import jwt
from joserfc.errors import ExpiredTokenError, JoseError
from joserfc.jwk import KeySet

from connectors.errors import AuthError, ConnectorError, InvalidRequestError, TransientError
from connectors.http import new_client

SYSTEM = "oidc"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SCOPE = "openid email profile"
ALGORITHMS = ["RS256"]  # what the provider publishes; "none" and HMAC are never accepted
LEEWAY_SECONDS = 60  # clock skew between this machine and the provider


class ExpiredToken(AuthError):
    """The ID token was valid but its ``exp`` has passed: sign in again."""


@dataclass(frozen=True)
class Provider:
    """What discovery says about the provider (the endpoints Handover uses)."""

    issuer: str
    token_endpoint: str
    jwks_uri: str
    device_authorization_endpoint: str = ""
    authorization_endpoint: str = ""


@dataclass(frozen=True)
class DeviceCode:
    """An RFC 8628 §3.2 device authorization response."""

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    expires_in: int
    interval: int


@dataclass(frozen=True)
class IdClaims:
    """The claims of a validated ID token that Handover uses."""

    issuer: str
    subject: str
    audience: str
    email: str
    issued_at: datetime
    expires_at: datetime


def _now() -> datetime:
    return datetime.now(UTC)


class OidcClient:
    """A public OIDC client (no secret) of one issuer.

    Args:
        issuer: the provider's issuer URL; discovery must name exactly this issuer.
        client_id: this client's id at the provider (the ID token's audience).
        http: the httpx client to use (one of its own by default).
        clock: what "now" is when a token is checked (tests pass a fixed one).
    """

    def __init__(
        self,
        issuer: str,
        client_id: str,
        *,
        http: httpx.Client | None = None,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id = client_id
        self.http = http or new_client(10)
        self.clock = clock
        self._provider: Provider | None = None

    def _send(self, operation: str, url: str, **kw: Any) -> httpx.Response:
        """One request to the provider; an unreachable or failing (5xx) one is transient."""
        try:
            r = self.http.request("POST" if "data" in kw else "GET", url, **kw)
        except httpx.HTTPError as exc:
            raise TransientError(
                f"cannot reach the identity provider at {url}: {type(exc).__name__}",
                system=SYSTEM,
                operation=operation,
            ) from exc
        if r.status_code >= 500:
            raise TransientError(
                "the provider failed", system=SYSTEM, operation=operation, status_code=r.status_code
            )
        return r

    def _get(self, url: str, operation: str) -> dict[str, Any]:
        r = self._send(operation, url)
        if r.status_code != 200:
            raise InvalidRequestError(
                f"{url} answered {r.status_code}",
                system=SYSTEM,
                operation=operation,
                status_code=r.status_code,
            )
        return _json_object(r, operation)

    def _post(self, url: str, data: dict[str, str], operation: str) -> tuple[int, dict[str, Any]]:
        r = self._send(operation, url, data=data, headers={"Accept": "application/json"})
        return r.status_code, _json_object(r, operation)

    def provider(self) -> Provider:
        """Discovery (once per client): the endpoints, for exactly the configured issuer.

        Raises:
            AuthError: the document names another issuer (OIDC Discovery §4.3: never use it).
            InvalidRequestError: no discovery document there, or one without what is needed.
            TransientError: the provider cannot be reached.
        """
        if self._provider is None:
            doc = self._get(f"{self.issuer}/.well-known/openid-configuration", "discover")
            if str(doc.get("issuer", "")).rstrip("/") != self.issuer:
                raise AuthError(
                    f"the discovery document names issuer {doc.get('issuer')!r}, "
                    f"not {self.issuer!r}",
                    system=SYSTEM,
                    operation="discover",
                )
            try:
                self._provider = Provider(
                    issuer=str(doc["issuer"]).rstrip("/"),
                    token_endpoint=str(doc["token_endpoint"]),
                    jwks_uri=str(doc["jwks_uri"]),
                    device_authorization_endpoint=str(doc.get("device_authorization_endpoint", "")),
                    authorization_endpoint=str(doc.get("authorization_endpoint", "")),
                )
            except KeyError as exc:
                raise InvalidRequestError(
                    f"the discovery document has no {exc.args[0]}",
                    system=SYSTEM,
                    operation="discover",
                ) from None
        return self._provider

    def start_device(self) -> DeviceCode:
        """RFC 8628 §3.1: ask for a device code and the user code to show.

        Raises:
            AuthError: the provider refuses this client.
            InvalidRequestError: the provider has no device endpoint, or answered nonsense.
            TransientError: the provider cannot be reached.
        """
        p = self.provider()
        if not p.device_authorization_endpoint:
            raise InvalidRequestError(
                "the provider offers no device authorization endpoint",
                system=SYSTEM,
                operation="device_authorization",
            )
        status, body = self._post(
            p.device_authorization_endpoint,
            {"client_id": self.client_id, "scope": SCOPE},
            "device_authorization",
        )
        if status != 200:
            raise _oauth_error(body, status, "device_authorization")
        try:
            return DeviceCode(
                device_code=str(body["device_code"]),
                user_code=str(body["user_code"]),
                verification_uri=str(body["verification_uri"]),
                verification_uri_complete=str(body.get("verification_uri_complete", "")),
                expires_in=int(body["expires_in"]),
                interval=int(body.get("interval", 5)),
            )
        except (KeyError, TypeError, ValueError):
            raise InvalidRequestError(
                "the device authorization answer lacks device_code, user_code, "
                "verification_uri or expires_in",
                system=SYSTEM,
                operation="device_authorization",
            ) from None

    def poll_device(self, code: DeviceCode, *, sleep: Callable[[float], None] = time.sleep) -> str:
        """Poll the token endpoint until the person answered (RFC 8628 §3.4 and §3.5): wait
        ``interval`` seconds between polls, 5 s more after each ``slow_down``.

        Returns:
            The ID token (not yet validated: :meth:`validate` it).

        Raises:
            AuthError: the person declined (access_denied) or the code expired.
            TransientError: the provider cannot be reached.
        """
        p = self.provider()
        interval = max(1, code.interval)
        deadline = time.monotonic() + code.expires_in
        while True:
            sleep(interval)
            status, body = self._post(
                p.token_endpoint,
                {
                    "grant_type": DEVICE_GRANT,
                    "device_code": code.device_code,
                    "client_id": self.client_id,
                },
                "token",
            )
            if status == 200 and isinstance(body.get("id_token"), str):
                return str(body["id_token"])
            error = body.get("error")
            if error == "authorization_pending" and time.monotonic() < deadline:
                continue
            if error == "slow_down" and time.monotonic() < deadline:
                interval += 5
                continue
            if error in ("authorization_pending", "slow_down"):
                error = "expired_token"  # our own count of expires_in ran out first
                body = {"error": error, "error_description": "the code has expired"}
            raise _oauth_error(body, status, "token")

    def authorization_url(
        self, *, redirect_uri: str, state: str, nonce: str, code_challenge: str
    ) -> str:
        """Where to send a browser to sign in (authorization code grant, PKCE with S256).

        Raises:
            InvalidRequestError: the provider has no authorization endpoint.
            TransientError: the provider cannot be reached.
        """
        endpoint = self.provider().authorization_endpoint
        if not endpoint:
            raise InvalidRequestError(
                "the provider offers no authorization endpoint",
                system=SYSTEM,
                operation="authorize",
            )
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": redirect_uri,
                "scope": SCOPE,
                "state": state,
                "nonce": nonce,
                "code_challenge": code_challenge,
                "code_challenge_method": "S256",
            }
        )
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"

    def redeem_code(self, code: str, *, verifier: str, redirect_uri: str) -> str:
        """RFC 6749 §4.1.3 with RFC 7636's ``code_verifier``: the code for an ID token.

        Returns:
            The ID token (not yet validated: :meth:`validate` it with the nonce sent).

        Raises:
            AuthError: the provider refused the code (used, expired, another verifier or
                redirect URI).
            InvalidRequestError: any other refusal.
            TransientError: the provider cannot be reached.
        """
        status, body = self._post(
            self.provider().token_endpoint,
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "client_id": self.client_id,
                "code_verifier": verifier,
            },
            "token",
        )
        if status == 200 and isinstance(body.get("id_token"), str):
            return str(body["id_token"])
        raise _oauth_error(body, status, "token")

    def validate(self, token: str, *, nonce: str | None = None) -> IdClaims:
        """Check an ID token as OpenID Connect Core §3.1.3.7 says: signed (RS256) by a key of
        the provider's JWKS, issued by this issuer for this client, not expired, not issued in
        the future, with ``nonce`` when one was sent. The JWKS is fetched each time, so a key
        the provider withdrew stops working at once.

        Raises:
            ExpiredToken: it expired (sign in again).
            AuthError: any other check failed.
            TransientError: the provider cannot be reached.
        """
        p = self.provider()
        jwks = self._get(p.jwks_uri, "jwks")
        try:
            keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError) as exc:
            raise AuthError(
                f"the provider's JWKS cannot be read ({type(exc).__name__})",
                system=SYSTEM,
                operation="jwks",
            ) from None
        try:
            decoded = jwt.decode(token, keys, algorithms=ALGORITHMS)
            claims = IDToken(
                decoded.claims,
                decoded.header,
                options={
                    "iss": {"essential": True, "value": self.issuer},
                    "aud": {"essential": True, "value": self.client_id},
                    "sub": {"essential": True},
                    "email": {"essential": True},
                },
                params={"client_id": self.client_id, "nonce": nonce},
            )
            claims.validate(now=int(self.clock().timestamp()), leeway=LEEWAY_SECONDS)
        except ExpiredTokenError:
            raise ExpiredToken(
                "the ID token has expired", system=SYSTEM, operation="validate_id_token"
            ) from None
        except (JoseError, ValueError, TypeError) as exc:
            # joserfc's message names the failed check (e.g. "bad_signature", "invalid_claim:
            # Invalid claim 'aud'"), never the token's content.
            raise AuthError(
                f"the ID token is not valid: {exc}",
                system=SYSTEM,
                operation="validate_id_token",
            ) from None
        c = decoded.claims
        aud = c["aud"][0] if isinstance(c["aud"], list) else c["aud"]
        return IdClaims(
            issuer=str(c["iss"]),
            subject=str(c["sub"]),
            audience=str(aud),
            email=str(c["email"]).strip().lower(),
            issued_at=datetime.fromtimestamp(int(c["iat"]), UTC),
            expires_at=datetime.fromtimestamp(int(c["exp"]), UTC),
        )


def _json_object(r: httpx.Response, operation: str) -> dict[str, Any]:
    try:
        body = r.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise InvalidRequestError(
            f"{r.request.url} answered {r.status_code} without a JSON object",
            system=SYSTEM,
            operation=operation,
            status_code=r.status_code,
        )
    return body


def _oauth_error(body: dict[str, Any], status: int, operation: str) -> ConnectorError:
    """An OAuth error answer (RFC 6749 §5.2, RFC 8628 §3.5) as an error of the tree."""
    error = str(body.get("error") or f"HTTP {status}")
    why = str(body.get("error_description") or "")
    message = f"{error}: {why}" if why else error
    if error in (
        "access_denied",
        "expired_token",
        "invalid_client",
        "unauthorized_client",
        "invalid_grant",
    ):
        return AuthError(message, system=SYSTEM, operation=operation, status_code=status)
    return InvalidRequestError(message, system=SYSTEM, operation=operation, status_code=status)
