"""A browser signs a person in to the intake through the organisation's IdP.

OpenID Connect's authorization code grant with PKCE (RFC 7636, S256), as a public client
(``HANDOVER_OIDC_WEB_CLIENT_ID``, default ``handover-console``): :meth:`WebSignIn.start` makes
the state, the nonce and the verifier a browser carries in a signed cookie and the address to
send it to; :meth:`WebSignIn.finish` redeems the code the IdP sent back and validates the ID
token (signature against the IdP's JWKS, issuer, audience, expiry, nonce:
``connectors.oidc.OidcClient.validate``). The person is the token's email and ``sub``.

The intake (which may not import connectors) reaches the IdP through this module; every
failure is a :class:`SignInFailed` with the status to answer and no token in its message.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

import httpx
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from connectors.errors import AuthError, ConnectorError, TransientError
from connectors.oidc import OidcClient
from connectors.settings import Settings
from domain.identity import OIDC_CODE, Verified


class SignInFailed(Exception):
    """The sign-in did not succeed: ``status`` is the HTTP answer (401 refused by the IdP or an
    invalid token, 502 an IdP answer that makes no sense, 503 the IdP cannot be reached)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Started:
    """A sign-in under way: where to send the browser, and what it must bring back."""

    url: str
    state: str
    nonce: str
    verifier: str


@dataclass(frozen=True)
class WebPerson:
    """Who signed in: the ID token's email and how the IdP vouched for it."""

    email: str
    verified: Verified


class WebSignIn:
    """Sign-in of a browser at the settings' IdP, coming back to ``redirect_uri``."""

    def __init__(
        self, settings: Settings, *, redirect_uri: str, http: httpx.Client | None = None
    ) -> None:
        self.redirect_uri = redirect_uri
        self.client = OidcClient(settings.oidc_issuer, settings.oidc_web_client_id, http=http)

    def start(self) -> Started:
        """A new state, nonce and PKCE verifier, and the IdP's sign-in address for them.

        Raises:
            SignInFailed: the IdP cannot be reached or offers no authorization endpoint.
        """
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        verifier = secrets.token_urlsafe(48)  # 64 characters: RFC 7636 wants 43 to 128
        try:
            url = self.client.authorization_url(
                redirect_uri=self.redirect_uri,
                state=state,
                nonce=nonce,
                code_challenge=create_s256_code_challenge(verifier),
            )
        except ConnectorError as exc:
            raise _failed(exc) from None
        return Started(url=url, state=state, nonce=nonce, verifier=verifier)

    def finish(self, code: str, *, verifier: str, nonce: str) -> WebPerson:
        """The person the IdP signed in: the code redeemed, its ID token validated.

        Raises:
            SignInFailed: the code was refused, the token does not hold, or the IdP cannot be
                reached.
        """
        try:
            token = self.client.redeem_code(code, verifier=verifier, redirect_uri=self.redirect_uri)
            claims = self.client.validate(token, nonce=nonce)
        except ConnectorError as exc:
            raise _failed(exc) from None
        return WebPerson(
            email=claims.email, verified=Verified(OIDC_CODE, claims.subject, claims.issuer)
        )


def _failed(exc: ConnectorError) -> SignInFailed:
    if isinstance(exc, TransientError):
        return SignInFailed(f"the identity provider cannot be reached now: {exc}", 503)
    if isinstance(exc, AuthError):
        return SignInFailed(f"the identity provider did not sign you in: {exc}", 401)
    return SignInFailed(f"the identity provider answered something unexpected: {exc}", 502)
