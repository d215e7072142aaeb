"""The OIDC client (connectors.oidc) against the sandbox's provider over HTTP (httpx
in-process): the device flow as RFC 8628 says to poll it, and the ID token checks — a tampered,
forged, expired or someone else's token is refused."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from joserfc import jwt
from joserfc.jwk import RSAKey

from connectors.errors import AuthError
from connectors.oidc import DeviceCode, ExpiredToken, OidcClient
from sandbox.app import create_app
from sandbox.world import World

ISSUER = "http://testserver/idp/oidc"
ALICE = "alice.admin@acme.com"


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return create_app(None, seed="demo", rng_seed=2)


@pytest.fixture
def http(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as c:
        yield c
    world(app).clock.reset()


def world(app: FastAPI) -> World:
    w: World = app.state.world
    return w


def answer(http: TestClient, code: DeviceCode, action: str = "allow") -> None:
    r = http.post(
        "/idp/oidc/device",
        data={
            "user_code": code.user_code,
            "email": ALICE,
            "password": "sandbox-password",
            "action": action,
        },
    )
    assert r.status_code == 200, r.text


def sign_in(app: FastAPI, http: TestClient) -> str:
    """A CLI ID token for Alice, through the device flow (the sandbox's clock stands in for
    the waiting)."""
    client = OidcClient(ISSUER, "handover-cli", http=http)
    code = client.start_device()
    answer(http, code)
    return client.poll_device(code, sleep=lambda s: world(app).clock.advance(s))


def test_the_device_flow_waits_as_told_and_slows_down_when_asked(
    app: FastAPI, http: TestClient
) -> None:
    client = OidcClient(ISSUER, "handover-cli", http=http)
    code = client.start_device()
    assert code.interval == 5 and code.user_code in code.verification_uri_complete
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        # The second wait is cut short (as if the machine slept badly): the provider answers
        # slow_down, and the client waits 5 s longer from then on.
        world(app).clock.advance(1 if len(slept) == 2 else seconds)
        if len(slept) == 4:
            answer(http, code)

    token = client.poll_device(code, sleep=sleep)
    assert slept == [5, 5, 10, 10]
    claims = client.validate(token)
    assert claims.email == ALICE and claims.issuer == ISSUER and claims.audience == "handover-cli"
    users = http.get(
        "/idp/scim/v2/Users",
        params={"filter": f'userName eq "{ALICE}"'},
        headers={"Authorization": "Bearer sandbox-idp-token"},
    ).json()["Resources"]
    assert claims.subject == users[0]["id"]
    assert claims.expires_at > datetime.now(UTC) + timedelta(minutes=50)


def test_a_declined_or_expired_device_code_is_an_auth_error(app: FastAPI, http: TestClient) -> None:
    client = OidcClient(ISSUER, "handover-cli", http=http)
    code = client.start_device()
    answer(http, code, "deny")
    with pytest.raises(AuthError, match="access_denied"):
        client.poll_device(code, sleep=lambda s: world(app).clock.advance(s))

    code = client.start_device()
    with pytest.raises(AuthError, match="expired_token"):
        client.poll_device(code, sleep=lambda s: world(app).clock.advance(s + 300))


def _part(token: str, i: int) -> dict[str, object]:
    text = token.split(".")[i]
    part: dict[str, object] = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    return part


def _tamper(token: str, **claims: object) -> str:
    """The token with its payload changed and its signature kept."""
    head, _, sig = token.split(".")
    body = {**_part(token, 1), **claims}
    raw = base64.urlsafe_b64encode(json.dumps(body).encode()).rstrip(b"=").decode()
    return f"{head}.{raw}.{sig}"


def test_tampered_forged_expired_and_foreign_tokens_are_refused(
    app: FastAPI, http: TestClient
) -> None:
    token = sign_in(app, http)
    cli = OidcClient(ISSUER, "handover-cli", http=http)
    assert cli.validate(token).email == ALICE

    with pytest.raises(AuthError, match="not valid"):
        cli.validate(_tamper(token, email="raj.admin@acme.com"))
    # Signed by a key the provider never published, with the provider's kid.
    forger = RSAKey.generate_key(2048, private=True)
    forged = jwt.encode(_part(token, 0), _part(token, 1), forger)
    with pytest.raises(AuthError, match="not valid"):
        cli.validate(forged)
    # Someone else's token: the console's client does not accept the CLI's.
    with pytest.raises(AuthError, match="aud"):
        OidcClient(ISSUER, "handover-console", http=http).validate(token)
    # Two hours later: expired, and said so.
    later = OidcClient(
        ISSUER,
        "handover-cli",
        http=http,
        clock=lambda: datetime.now(UTC) + timedelta(hours=2),
    )
    with pytest.raises(ExpiredToken):
        later.validate(token)
    with pytest.raises(AuthError, match="not valid"):
        cli.validate("not-a-jwt")
