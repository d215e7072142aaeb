"""What only the Microsoft Graph connector does (the shared behaviour is the contract suite's):
the client credentials token (fetched once, renewed before expiry and after a refusal), a bad
secret, ``@odata.nextLink`` paging, sign-in sessions revoked and read back, Graph's 429 with
Retry-After, Graph's error codes mapped, no secret in any repr or message. Against the sandbox's
imitation of Graph and Entra's token endpoint, in-process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from joserfc import jwt
from pydantic import SecretStr

from connectors.capabilities import SessionControl, capabilities_of
from connectors.errors import AuthError, ConflictError, InvalidRequestError, NotFoundError
from connectors.idp import GraphIdp, make_idp
from connectors.idp.graph import _classify
from connectors.rate import TokenBucket
from connectors.settings import SANDBOX_ENTRA_CLIENT_ID, SANDBOX_TENANT_ID, Settings
from domain.models import Effect
from sandbox.idp.oidc import signing_key
from sandbox.world import FaultSettings, World
from tests.connectors.idp_fixtures import ENTRA_CLIENT_ID, Backend, open_backend

WRONG = "wrong-s3cret-value"


@pytest.fixture
def server() -> Iterator[Backend]:
    with open_backend("entra") as backend:
        yield backend


def world_of(server: Backend) -> World:
    assert server.app is not None
    world: World = server.app.state.world
    return world


def graph_requests(server: Backend) -> list[dict[str, Any]]:
    return [r.as_dict() for r in world_of(server).requests if r.api == "graph"]


# ---------------------------------------------------------------------------- the token
def test_one_token_serves_many_calls_and_is_renewed_before_it_expires(server: Backend) -> None:
    uid = server.user("ada@example.com")
    idp = server.idp()
    for _ in range(3):
        assert idp.get_user(uid).user_name == "ada@example.com"
    assert idp.credentials.fetched == 1
    expires = idp.credentials.expires_at
    assert expires is not None and expires > time.time() + 3000  # Entra's 3599 s

    # Within the leeway (300 s) of its expiry: a new token before the next call.
    idp.credentials.expire(int(time.time()) + 120)
    idp.get_user(uid)
    assert idp.credentials.fetched == 2
    assert (idp.credentials.expires_at or 0) > time.time() + 3000


def test_a_token_graph_refuses_is_replaced_once(server: Backend) -> None:
    """Graph's clock (or a revocation) may end a token this process still thinks valid: one
    new token, one more try; no second loop when the new one is refused too."""
    uid = server.user("ada@example.com")
    idp = server.idp()
    idp.get_user(uid)
    now = int(time.time())
    stale = jwt.encode(
        {"alg": "RS256", "kid": signing_key(world_of(server)).kid},
        {
            "aud": "https://graph.microsoft.com",
            "tid": SANDBOX_TENANT_ID,
            "iat": now - 7200,
            "exp": now - 3600,
            "roles": ["User.ReadWrite.All"],
        },
        signing_key(world_of(server)),
    )
    idp.credentials._oauth.token = {"access_token": stale, "expires_at": now + 3000}
    assert idp.get_user(uid).id == uid
    assert idp.credentials.fetched == 2
    statuses = [r["status"] for r in graph_requests(server)[-2:]]
    assert statuses == [401, 200]


def test_a_bad_secret_is_an_auth_error_that_never_shows_the_secret(server: Backend) -> None:
    bad = server.idp(token=WRONG)
    with pytest.raises(AuthError) as err:
        bad.find_user("ada@example.com")
    e = err.value
    assert (e.system, e.operation, e.subject, e.status_code) == (
        "idp",
        "find_user",
        "ada@example.com",
        401,
    )
    assert "invalid_client: AADSTS7000215: Invalid client secret provided" in str(e)
    assert "Trace ID" not in str(e)  # Entra's next lines: trace ids, not the cause
    for text in (str(e), repr(e), repr(bad), repr(bad.http), repr(bad.credentials)):
        assert WRONG not in text
    assert bad.http.stats.retries == 0 and graph_requests(server) == []  # Graph never called

    unknown = GraphIdp(
        base_url=server.base_url,
        token_url=server.token_url,
        client_id="00000000-0000-4000-8000-000000000000",
        client_secret=server.token,
        client=server.raw,
        limiter=TokenBucket(100_000),
    )
    with pytest.raises(AuthError, match="AADSTS700016") as err:
        unknown.get_user("ada@example.com")
    assert err.value.status_code == 400  # Entra: unauthorized_client is a 400


def test_settings_of_the_entra_kind_build_a_graph_connector() -> None:
    settings = Settings(idp_kind="entra", sandbox=True)
    idp = make_idp(settings)
    assert isinstance(idp, GraphIdp) and isinstance(idp, SessionControl)
    assert capabilities_of(idp) == ["UserDirectory", "GroupMembership", "SessionControl"]
    assert idp.http.base_url == "http://127.0.0.1:8800/graph/v1.0"
    assert idp.credentials.token_url == (
        f"http://127.0.0.1:8800/entra/{SANDBOX_TENANT_ID}/oauth2/v2.0/token"
    )
    assert idp.credentials.client_id == SANDBOX_ENTRA_CLIENT_ID == ENTRA_CLIENT_ID
    assert "sandbox-entra-secret" not in repr(idp) + repr(idp.credentials) + repr(idp.http)
    idp.close()
    real = Settings(
        idp_kind="entra",
        idp_url="https://graph.microsoft.com/v1.0",
        idp_tenant_id="11111111-2222-4333-8444-555555555555",
        idp_client_id="app-id",
        idp_client_secret=SecretStr("s3cr3t"),
    )
    assert real.idp_token_url == (
        "https://login.microsoftonline.com/11111111-2222-4333-8444-555555555555/oauth2/v2.0/token"
    )


# ---------------------------------------------------------------------------- paging
def test_listings_follow_next_links_until_there_is_none(server: Backend) -> None:
    uids = {server.user(f"user{i}@example.com") for i in range(7)}
    idp = server.idp(page_size=3)
    assert {u.id for u in idp.iter_users()} == uids
    pages = [
        r for r in graph_requests(server) if r["method"] == "GET" and r["path"].endswith("/users")
    ]
    assert len(pages) == 3
    assert "%24top=3" in pages[0]["query"] and "skiptoken" not in pages[0]["query"]
    # The next links keep the query ($top, $select) and add the skip token.
    assert all("%24skiptoken=" in p["query"] and "%24top=3" in p["query"] for p in pages[1:])


def test_a_next_link_to_another_host_is_not_followed(server: Backend) -> None:
    calls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3599})
        link = "https://evil.example/v1.0/users?$skiptoken=x"
        return httpx.Response(200, json={"value": [], "@odata.nextLink": link})

    with httpx.Client(transport=httpx.MockTransport(answer)) as client:
        idp = GraphIdp(
            base_url="https://graph.microsoft.com/v1.0",
            token_url="https://login.microsoftonline.com/t/oauth2/v2.0/token",
            client_id="c",
            client_secret="s",
            client=client,
            limiter=TokenBucket(100_000),
        )
        with pytest.raises(Exception, match="next page link leaves"):
            list(idp.iter_users())
    assert not any("evil.example" in c for c in calls)


# ---------------------------------------------------------------------------- sessions
def test_sessions_are_revoked_and_read_back(server: Backend) -> None:
    uid = server.user(
        "leaver@example.com", emails=[{"value": "leaver@example.com", "primary": True}]
    )
    for client in ("console", "cli"):
        r = server.raw.post(
            f"{server.root}/_sandbox/idp/sessions",
            params={"user": "leaver@example.com", "client": client},
        )
        assert r.status_code == 200, r.text

    def live() -> int:
        r = server.raw.get(
            f"{server.root}/_sandbox/idp/sessions", params={"user": "leaver@example.com"}
        )
        return int(r.json()["live"])

    assert live() == 2
    world_of(server).clock.advance(60)  # the offboarding starts a minute after the sign-ins
    started = world_of(server).clock.now()
    idp = server.idp()
    assert idp.sessions_ended_since(uid, started) is False

    result = idp.end_sessions(uid)
    ended = world_of(server).clock.now()
    # Graph's own time of the revocation, read back: what the verification compares with. It
    # is taken between `started` and `ended`, in whole seconds (a second may begin between them).
    valid_from = datetime.fromisoformat(result.detail["sessions_valid_from"])
    assert (result.effect, result.detail["id"]) == (Effect.UPDATED, uid)
    assert started.replace(microsecond=0) <= valid_from <= ended
    assert idp.sessions_ended_since(uid, valid_from) is True
    assert live() == 0
    assert idp.sessions_ended_since(uid, started) is True
    assert idp.sessions_ended_since(uid, started + timedelta(hours=1)) is False
    with pytest.raises(NotFoundError):
        idp.end_sessions("00000000-0000-4000-8000-000000000000")


# ---------------------------------------------------------------------------- limits, errors
def test_graph_429_with_retry_after_is_waited_out(server: Backend) -> None:
    uid = server.user("ada@example.com")
    world_of(server).set_faults(FaultSettings(rate_limit=60, burst=1, apis=["graph"]))
    idp = server.idp()
    started = time.monotonic()
    # Back to back until the server's bucket is found empty: a loaded machine may take long
    # enough between two calls for a token to come back, not between five.
    for _ in range(5):
        assert idp.get_user(uid).id == uid
        if idp.http.stats.rate_limited:
            break
    assert idp.http.stats.rate_limited >= 1
    assert time.monotonic() - started >= 0.9  # Retry-After: 1 honoured
    limited = [r for r in graph_requests(server) if r["status"] == 429]
    assert limited and limited[0]["injected"] == "rate-limited"


def test_graph_error_codes_are_mapped_once(server: Backend) -> None:
    idp = server.idp()
    # Handover's app may not create groups: 403 Authorization_RequestDenied.
    body = {"displayName": "x", "mailNickname": "x", "mailEnabled": False, "securityEnabled": True}
    with pytest.raises(AuthError, match="Insufficient privileges") as denied:
        idp.http.request("POST", "/groups", json=body, operation="create_group")
    assert denied.value.status_code == 403
    # A second user with the same userPrincipalName: 400 carrying ObjectConflict.
    _, user = idp.create_user(email="ada@example.com")
    dup = {
        "accountEnabled": True,
        "displayName": "Ada",
        "mailNickname": "ada",
        "userPrincipalName": "ADA@example.com",
        "passwordProfile": {"password": "Another-Pa55word!"},
    }
    with pytest.raises(ConflictError, match="already exists") as conflict:
        idp.http.request("POST", "/users", json=dup, operation="create_user")
    assert conflict.value.status_code == 400
    with pytest.raises(InvalidRequestError, match="Invalid page size"):
        idp.http.request("GET", "/users", params={"$top": 1000}, operation="list_users")
    with pytest.raises(NotFoundError) as missing:
        idp.get_user("nobody@example.com")
    assert "does not exist" in str(missing.value)  # Graph's nested message, read
    assert idp.http.stats.retries == 0
    assert user.user_name == "ada@example.com"


@pytest.mark.parametrize(
    ("status", "error", "expected"),
    [
        (404, {"code": "Request_ResourceNotFound", "message": "gone"}, NotFoundError),
        (
            400,
            {"code": "Request_BadRequest", "message": "Invalid object identifier 'x'."},
            NotFoundError,
        ),
        (401, {"code": "InvalidAuthenticationToken", "message": "expired"}, AuthError),
        (403, {"code": "Authorization_RequestDenied", "message": "no"}, AuthError),
        (400, {"code": "Request_BadRequest", "message": "bad"}, InvalidRequestError),
        (
            400,
            {"code": "Request_BadRequest", "message": "x", "details": [{"code": "ObjectConflict"}]},
            ConflictError,
        ),
        (
            400,
            {
                "code": "Request_BadRequest",
                "message": "One or more added object references already exist",
            },
            ConflictError,
        ),
        (400, {}, None),
    ],
)
def test_classify_by_graph_error_code(status: int, error: dict[str, Any], expected: Any) -> None:
    response = httpx.Response(status, json={"error": error} if error else {"detail": "x"})
    assert _classify(response) is expected


def test_sessions_ended_since_compares_to_the_second() -> None:
    """Graph reports signInSessionsValidFromDateTime to the second: a revocation in the same
    second as ``when`` counts."""
    when = datetime(2026, 5, 1, 10, 0, 0, 700_000, tzinfo=UTC)

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/token"):
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3599})
        return httpx.Response(
            200, json={"id": "u", "signInSessionsValidFromDateTime": "2026-05-01T10:00:00Z"}
        )

    with httpx.Client(transport=httpx.MockTransport(answer)) as client:
        idp = GraphIdp(
            base_url="https://graph.microsoft.com/v1.0",
            token_url="https://login.microsoftonline.com/t/oauth2/v2.0/token",
            client_id="c",
            client_secret="s",
            client=client,
            limiter=TokenBucket(100_000),
        )
        assert idp.sessions_ended_since("u", when) is True
        assert idp.sessions_ended_since("u", when + timedelta(seconds=1)) is False


def test_a_throttled_token_endpoint_is_retried_after_its_retry_after() -> None:
    """Entra's token endpoint throttles too (429 with Retry-After): retried, then the call."""
    answers = [
        httpx.Response(
            429, headers={"Retry-After": "0"}, json={"error": "temporarily_unavailable"}
        ),
        httpx.Response(200, json={"access_token": "t", "token_type": "Bearer", "expires_in": 3599}),
    ]
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request.url.path)
        if request.url.path.endswith("/token"):
            assert b"client_secret=s" in request.content  # client_secret_post
            assert b"scope=https%3A%2F%2Fgraph.microsoft.com%2F.default" in request.content
            return answers.pop(0)
        assert request.headers["authorization"] == "Bearer t"
        return httpx.Response(200, json={"id": "u", "userPrincipalName": "a@example.com"})

    with httpx.Client(transport=httpx.MockTransport(answer)) as client:
        idp = GraphIdp(
            base_url="https://graph.microsoft.com/v1.0",
            token_url="https://login.microsoftonline.com/t/oauth2/v2.0/token",
            client_id="c",
            client_secret="s",
            client=client,
            limiter=TokenBucket(100_000),
        )
        assert idp.get_user("u").user_name == "a@example.com"
    assert idp.http.stats.retries == 1 and idp.credentials.fetched == 1
    assert sent[-1] == "/v1.0/users/u"
