"""The sandbox IdP's OpenID Connect provider over HTTP (httpx in-process): discovery, JWKS, the
authorization code flow with PKCE, the device authorization grant (RFC 8628) and its errors,
and who may sign in (active IdP users with the published sandbox password)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import KeySet

from sandbox.app import create_app
from tests.conftest import IDP

BASE = "/idp/oidc"
ISSUER = f"http://testserver{BASE}"
DEVICE = "urn:ietf:params:oauth:grant-type:device_code"
CONSOLE_CALLBACK = "http://127.0.0.1:8801/console/callback"
PASSWORD = "sandbox-password"
ALICE = "alice.admin@acme.com"
FRANK = "frank.former@acme.com"  # deactivated in the demo IdP


@pytest.fixture(scope="module")
def c() -> Iterator[TestClient]:
    with TestClient(create_app(None, seed="demo", rng_seed=1)) as client:
        yield client


def idp_user_id(c: TestClient, email: str) -> str:
    r = c.get("/idp/scim/v2/Users", params={"filter": f'userName eq "{email}"'}, headers=IDP)
    (user,) = r.json()["Resources"]
    return str(user["id"])


def claims_of(c: TestClient, token: str) -> dict[str, Any]:
    """The ID token's claims, its RS256 signature checked against the published JWKS."""
    keys = KeySet.import_key_set(c.get(f"{BASE}/jwks").json())
    decoded = jwt.decode(token, keys, algorithms=["RS256"])
    assert decoded.header["alg"] == "RS256" and decoded.header["kid"]
    return dict(decoded.claims)


def test_discovery_names_the_issuer_and_every_endpoint(c: TestClient) -> None:
    doc = c.get(f"{BASE}/.well-known/openid-configuration").json()
    assert doc["issuer"] == ISSUER
    assert doc["authorization_endpoint"] == f"{ISSUER}/authorize"
    for name in ("token", "device_authorization"):
        assert doc[f"{name}_endpoint"] == f"{ISSUER}/{name}"
    assert doc["jwks_uri"] == f"{ISSUER}/jwks"
    assert doc["code_challenge_methods_supported"] == ["S256"]
    assert DEVICE in doc["grant_types_supported"]
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    jwks = c.get(f"{BASE}/jwks").json()
    (key,) = jwks["keys"]
    assert key["kty"] == "RSA" and key["use"] == "sig" and key["kid"]
    assert "d" not in key and "p" not in key  # the public half only


def test_the_signing_key_survives_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "sandbox.db"
    with TestClient(create_app(db, seed="empty")) as first:
        before = first.get(f"{BASE}/jwks").json()
    with TestClient(create_app(db, seed="empty")) as second:
        assert second.get(f"{BASE}/jwks").json() == before


# --- authorization code + PKCE ----------------------------------------------------------------


def authorize(
    c: TestClient, verifier: str, *, email: str = ALICE, password: str = PASSWORD, **extra: str
) -> Any:
    params = {
        "response_type": "code",
        "client_id": "handover-console",
        "redirect_uri": CONSOLE_CALLBACK,
        "scope": "openid email",
        "state": "st-1",
        "nonce": "n-1",
        "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256",
        **extra,
    }
    page = c.get(f"{BASE}/authorize", params=params, follow_redirects=False)
    assert page.status_code == 200 and "<form" in page.text
    return c.post(
        f"{BASE}/authorize",
        data={**params, "email": email, "password": password, "action": "allow"},
        follow_redirects=False,
    )


def code_of(r: Any) -> str:
    assert r.status_code == 302, r.text
    q = parse_qs(urlsplit(r.headers["location"]).query)
    assert q["state"] == ["st-1"]
    return q["code"][0]


def redeem(c: TestClient, code: str, verifier: str, **extra: str) -> Any:
    return c.post(
        f"{BASE}/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": CONSOLE_CALLBACK,
            "client_id": "handover-console",
            "code_verifier": verifier,
            **extra,
        },
    )


def test_code_flow_with_pkce_gives_a_signed_id_token(c: TestClient) -> None:
    verifier = secrets.token_urlsafe(48)
    r = authorize(c, verifier, email="  Alice.Admin@ACME.com ")
    assert r.headers["location"].startswith(CONSOLE_CALLBACK + "?")
    token = redeem(c, code_of(r), verifier)
    assert token.status_code == 200, token.text
    assert token.headers["cache-control"] == "no-store"
    body = token.json()
    assert body["token_type"] == "Bearer" and body["access_token"]
    claims = claims_of(c, body["id_token"])
    assert claims["iss"] == ISSUER and claims["aud"] == "handover-console"
    assert claims["sub"] == idp_user_id(c, ALICE) and claims["email"] == ALICE
    assert claims["nonce"] == "n-1" and claims["exp"] > claims["iat"]


def test_a_wrong_verifier_or_a_second_use_of_a_code_is_refused(c: TestClient) -> None:
    verifier = secrets.token_urlsafe(48)
    code = code_of(authorize(c, verifier))
    wrong = redeem(c, code, secrets.token_urlsafe(48))
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    # One attempt per code: the right verifier after a wrong one is refused too.
    again = redeem(c, code, verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"

    code = code_of(authorize(c, verifier))
    assert redeem(c, code, verifier).status_code == 200
    replay = redeem(c, code, verifier)
    assert replay.json()["error"] == "invalid_grant"

    code = code_of(authorize(c, verifier))
    other = redeem(c, code, verifier, redirect_uri="http://127.0.0.1:9/console/callback")
    assert other.json()["error"] == "invalid_grant"


def test_authorize_refuses_bad_requests_without_redirecting_to_strangers(c: TestClient) -> None:
    verifier = secrets.token_urlsafe(48)
    good = {
        "response_type": "code",
        "client_id": "handover-console",
        "redirect_uri": CONSOLE_CALLBACK,
        "scope": "openid",
        "state": "s",
        "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256",
    }
    # Unregistered redirect or client: an error page, never a redirect there.
    for bad in (
        {"redirect_uri": "https://evil.example/console/callback"},
        {"redirect_uri": "http://127.0.0.1:8801/elsewhere"},
        {"client_id": "nobody"},
        {"client_id": "handover-cli"},  # the CLI's client has no redirect: device grant only
    ):
        r = c.get(f"{BASE}/authorize", params={**good, **bad}, follow_redirects=False)
        assert r.status_code == 400, bad
    # Any loopback port is the registered callback (RFC 8252 §7.3).
    r = c.get(
        f"{BASE}/authorize",
        params={**good, "redirect_uri": "http://localhost:5555/console/callback"},
        follow_redirects=False,
    )
    assert r.status_code == 200
    # Otherwise the error goes back to the client.
    for bad, error in (
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": ""}, "invalid_request"),
        ({"scope": "email"}, "invalid_scope"),
        ({"response_type": "token"}, "unsupported_response_type"),
    ):
        r = c.get(f"{BASE}/authorize", params={**good, **bad}, follow_redirects=False)
        assert r.status_code == 302, bad
        q = parse_qs(urlsplit(r.headers["location"]).query)
        assert q["error"] == [error] and q["state"] == ["s"], bad


def test_only_active_idp_users_with_the_password_sign_in(c: TestClient) -> None:
    verifier = secrets.token_urlsafe(48)
    wrong = authorize(c, verifier, password="guess")
    assert wrong.status_code == 401 and "wrong email or password" in wrong.text
    stranger = authorize(c, verifier, email="nobody@acme.com")
    assert stranger.status_code == 401 and "wrong email or password" in stranger.text
    inactive = authorize(c, verifier, email=FRANK)
    assert inactive.status_code == 403 and "deactivated" in inactive.text


# --- device authorization grant (RFC 8628) ----------------------------------------------------


def start_device(c: TestClient, client_id: str = "handover-cli") -> Any:
    return c.post(
        f"{BASE}/device_authorization", data={"client_id": client_id, "scope": "openid email"}
    )


def poll(c: TestClient, device_code: str) -> Any:
    return c.post(
        f"{BASE}/token",
        data={"grant_type": DEVICE, "device_code": device_code, "client_id": "handover-cli"},
    )


def answer(
    c: TestClient, user_code: str, *, email: str = ALICE, password: str = PASSWORD, action: str
) -> Any:
    return c.post(
        f"{BASE}/device",
        data={"user_code": user_code, "email": email, "password": password, "action": action},
    )


def test_device_flow_pending_then_approved_then_a_token(c: TestClient) -> None:
    r = start_device(c)
    assert r.status_code == 200
    d = r.json()
    assert set(d) == {
        "device_code",
        "user_code",
        "verification_uri",
        "verification_uri_complete",
        "expires_in",
        "interval",
    }
    assert d["verification_uri"] == f"{ISSUER}/device"
    assert d["verification_uri_complete"].endswith(d["user_code"])
    assert d["expires_in"] == 600 and d["interval"] == 5
    page = c.get(d["verification_uri_complete"])
    assert page.status_code == 200 and d["user_code"] in page.text

    pending = poll(c, d["device_code"])
    assert pending.status_code == 400 and pending.json()["error"] == "authorization_pending"
    # Polled again at once: slow down, and the interval grows by 5 s (RFC 8628 §3.5).
    fast = poll(c, d["device_code"])
    assert fast.json()["error"] == "slow_down" and "10 s" in fast.json()["error_description"]

    # Typed as people type it: lower case, no dash.
    ok = answer(c, d["user_code"].lower().replace("-", ""), action="allow")
    assert ok.status_code == 200 and "Signed in as <b>alice.admin@acme.com</b>" in ok.text
    c.app.state.world.clock.advance(11)  # type: ignore[attr-defined]  # past the interval
    token = poll(c, d["device_code"])
    assert token.status_code == 200, token.text
    claims = claims_of(c, token.json()["id_token"])
    assert claims["aud"] == "handover-cli" and claims["iss"] == ISSUER
    assert claims["sub"] == idp_user_id(c, ALICE) and claims["email"] == ALICE
    c.app.state.world.clock.advance(11)  # type: ignore[attr-defined]
    assert poll(c, d["device_code"]).json()["error"] == "invalid_grant"  # used once
    c.app.state.world.clock.reset()  # type: ignore[attr-defined]


def test_device_flow_denied_expired_and_wrong_codes(c: TestClient) -> None:
    denied = start_device(c).json()
    r = answer(c, denied["user_code"], action="deny")
    assert r.status_code == 200 and "not signed in" in r.text
    assert poll(c, denied["device_code"]).json()["error"] == "access_denied"
    # A code answered once cannot be answered again.
    assert answer(c, denied["user_code"], action="allow").status_code == 400

    wrong = answer(c, "BCDF-GHJK", action="allow")
    assert wrong.status_code == 400 and "no such code" in wrong.text

    d = start_device(c).json()
    assert answer(c, d["user_code"], email=FRANK, action="allow").status_code == 403
    assert answer(c, d["user_code"], password="guess", action="allow").status_code == 401
    assert poll(c, d["device_code"]).json()["error"] == "authorization_pending"

    expired = start_device(c).json()
    c.app.state.world.clock.advance(601)  # type: ignore[attr-defined]
    try:
        late = answer(c, expired["user_code"], action="allow")
        assert late.status_code == 400 and "expired" in late.text
        assert poll(c, expired["device_code"]).json()["error"] == "expired_token"
    finally:
        c.app.state.world.clock.reset()  # type: ignore[attr-defined]

    assert poll(c, "no-such-device-code").json()["error"] == "invalid_grant"
    refused = start_device(c, client_id="handover-console")
    assert refused.status_code == 400 and refused.json()["error"] == "unauthorized_client"
    unknown = start_device(c, client_id="nobody")
    assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_client"


def test_token_endpoint_errors_are_rfc6749_shaped(c: TestClient) -> None:
    r = c.post(f"{BASE}/token", data={"grant_type": "password", "client_id": "handover-cli"})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    r = c.post(f"{BASE}/token", data={"grant_type": DEVICE, "client_id": "nobody"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    r = c.post(
        f"{BASE}/token",
        content="grant_type=a&grant_type=b&client_id=handover-cli",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.json()["error"] == "invalid_request"  # a repeated parameter
