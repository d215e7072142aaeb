"""The sandbox's imitation of Okta's Management API (/okta/api/v1) and its org authorization
server's token endpoint (/okta/oauth2/v1/token), spoken to with raw HTTP as Okta documents them:
JSON shapes, Link paging, filter/search, auth refusals, the lifecycle state machine, sessions,
Okta's 429, and the pushes into the org that every change makes.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from authlib.oauth2.rfc7523 import private_key_jwt_sign
from joserfc.jwk import RSAKey

from tests.conftest import ORG_SCIM
from tests.connectors.idp_fixtures import SANDBOX_TOKEN, Backend, open_backend

SSWS = {"Authorization": f"SSWS {SANDBOX_TOKEN}"}
ASSERTION = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLIENT_ID = "0oasandboxtest"
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
MAPPED = ("amplitude-org-members", "amplitude-project-viewers-production")


@pytest.fixture(scope="module")
def key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "k1"}, private=True)


@pytest.fixture
def okta() -> Iterator[Backend]:
    with open_backend("okta") as backend:
        yield backend


def api(okta: Backend, method: str, path: str, headers: Any = None, **kw: Any) -> httpx.Response:
    url = path if path.startswith("http") else f"{okta.root}/okta/api/v1{path}"
    return okta.raw.request(method, url, headers=SSWS if headers is None else headers, **kw)


def new_user(
    okta: Backend,
    login: str,
    activate: bool = True,
    groupIds: list[str] | None = None,
    **profile: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "profile": {"login": login, "email": login, "firstName": "F", "lastName": "L", **profile}
    }
    if groupIds:
        body["groupIds"] = groupIds
    r = api(okta, "POST", "/users", params={"activate": str(activate).lower()}, json=body)
    assert r.status_code == 200, r.text
    return dict(r.json())


def org_total(okta: Backend, email: str) -> int:
    r = okta.raw.get(
        f"{okta.root}/scim/1/Users", params={"filter": f'userName eq "{email}"'}, headers=ORG_SCIM
    )
    return int(r.json()["totalResults"])


# ---------------------------------------------------------------------------- shapes
def test_user_and_group_json_as_okta_shows_them(okta: Backend) -> None:
    uid = okta.user(
        "ada@example.com",
        name={"givenName": "Ada", "familyName": "Lovelace"},
        emails=[
            {"value": "ada@example.com", "primary": True},
            {"value": "ada@home.example", "type": "other"},
        ],
    )
    gid = okta.group("Engineering", (uid,))
    okta.raw.post(f"{okta.root}/_sandbox/idp/sessions", params={"user": uid})
    r = api(okta, "GET", "/users/ADA@example.com")  # by login, ignoring case
    assert r.status_code == 200
    for header in ("X-Rate-Limit-Limit", "X-Rate-Limit-Remaining", "X-Rate-Limit-Reset"):
        assert r.headers[header].isdigit()
    assert int(r.headers["X-Rate-Limit-Reset"]) > time.time()
    user = r.json()
    assert user["id"] == uid and user["status"] == "ACTIVE"
    assert user["profile"] == {
        "firstName": "Ada",
        "lastName": "Lovelace",
        "mobilePhone": None,
        "secondEmail": "ada@home.example",
        "login": "ada@example.com",
        "email": "ada@example.com",
    }
    for stamp in ("created", "activated", "lastLogin", "lastUpdated"):
        assert STAMP.match(user[stamp]), stamp
    assert user["passwordChanged"] is None and user["statusChanged"] is None
    assert user["credentials"] == {"provider": {"type": "OKTA", "name": "OKTA"}}
    assert user["_links"]["self"]["href"] == f"{okta.root}/okta/api/v1/users/{uid}"
    assert set(user["_links"]) >= {"self", "deactivate", "suspend"}

    group = api(okta, "GET", f"/groups/{gid}").json()
    assert (group["id"], group["type"], group["profile"]) == (
        gid,
        "OKTA_GROUP",
        {"name": "Engineering", "description": None},
    )
    assert group["objectClass"] == ["okta:user_group"]
    assert [g["id"] for g in api(okta, "GET", f"/users/{uid}/groups").json()] == [gid]
    assert [u["id"] for u in api(okta, "GET", f"/groups/{gid}/users").json()] == [uid]

    missing = api(okta, "GET", "/users/nobody@example.com")
    body = missing.json()
    assert missing.status_code == 404 and body["errorCode"] == "E0000007"
    assert set(body) == {"errorCode", "errorSummary", "errorLink", "errorId", "errorCauses"}
    assert "X-Rate-Limit-Remaining" in missing.headers


def test_link_paging_with_an_after_cursor(okta: Backend) -> None:
    ids = sorted(okta.user(f"u{i}@example.com") for i in range(5))
    seen: list[str] = []
    url: str | None = f"{okta.root}/okta/api/v1/users?limit=2"
    pages = 0
    while url:
        r = api(okta, "GET", url)
        seen += [u["id"] for u in r.json()]
        assert r.links["self"]["url"] == url
        url = r.links.get("next", {}).get("url")
        if url:
            assert "after=" in url and "limit=2" in url
        pages += 1
    assert (seen, pages) == (ids, 3)


def test_filter_search_and_q(okta: Backend) -> None:
    ada = new_user(okta, "ada@example.com", firstName="Ada", secondEmail="ada@home.example")
    bob = new_user(okta, "bob@example.com", firstName="Bob")
    assert api(okta, "POST", f"/users/{bob['id']}/lifecycle/deactivate").status_code == 200

    def ids(**params: str) -> list[str]:
        r = api(okta, "GET", "/users", params=params)
        assert r.status_code == 200, r.text
        return [u["id"] for u in r.json()]

    assert ids() == [ada["id"]]  # DEPROVISIONED users are not listed
    assert ids(filter='profile.login eq "BOB@example.com"') == [bob["id"]]
    assert ids(filter='status eq "DEPROVISIONED"') == [bob["id"]]
    both = 'profile.email eq "ada@home.example" or profile.secondEmail eq "ada@home.example"'
    assert ids(search=both) == [ada["id"]]
    assert ids(search='profile.firstName sw "b" and status eq "DEPROVISIONED"') == [bob["id"]]
    assert ids(q="ad") == [ada["id"]]
    either = '(profile.firstName eq "zed" or profile.firstName eq "ADA") and profile.secondEmail pr'
    assert ids(search=either) == [ada["id"]]
    assert ids(search='profile.login co "ob@" and status ne "ACTIVE"') == [bob["id"]]
    refused = api(okta, "GET", "/users", params={"filter": 'profile.secondEmail eq "x"'})
    assert (refused.status_code, refused.json()["errorCode"]) == (400, "E0000031")
    groups = api(okta, "GET", "/groups", params={"q": "eng"}).json()
    assert groups == []


# ---------------------------------------------------------------------------- lifecycle
def test_the_lifecycle_state_machine(okta: Backend) -> None:
    user = new_user(okta, "new@example.com", activate=False)
    uid = user["id"]
    assert (user["status"], user["activated"]) == ("STAGED", None)

    def step(operation: str, **params: str) -> httpx.Response:
        return api(okta, "POST", f"/users/{uid}/lifecycle/{operation}", params=params)

    def status() -> str:
        return str(api(okta, "GET", f"/users/{uid}").json()["status"])

    refused = step("suspend")
    assert (refused.status_code, refused.json()["errorCode"]) == (400, "E0000001")
    activated = step("activate", sendEmail="false")
    assert activated.status_code == 200 and set(activated.json()) == {
        "activationUrl",
        "activationToken",
    }
    assert status() == "PROVISIONED"
    again = step("activate")
    assert (again.status_code, again.json()["errorCode"]) == (403, "E0000016")
    assert (step("reactivate").status_code, status()) == (200, "PROVISIONED")
    assert (step("deactivate").json(), status()) == ({}, "DEPROVISIONED")
    twice = step("deactivate")
    assert (twice.status_code, twice.json()["errorCode"]) == (403, "E0000038")
    assert step("unsuspend").json()["errorCode"] == "E0000001"
    assert (step("activate").json(), status()) == ({}, "PROVISIONED")

    active = okta.user("sam@example.com")
    assert api(okta, "POST", f"/users/{active}/lifecycle/suspend").status_code == 200
    assert api(okta, "GET", f"/users/{active}").json()["status"] == "SUSPENDED"
    assert okta.scim("GET", f"/Users/{active}").json()["active"] is False  # the SCIM face agrees
    assert api(okta, "POST", f"/users/{active}/lifecycle/reactivate").status_code == 403
    assert api(okta, "POST", f"/users/{active}/lifecycle/unsuspend").status_code == 200

    # DELETE deactivates first; only a DEPROVISIONED user is deleted.
    assert api(okta, "DELETE", f"/users/{uid}").status_code == 204
    assert status() == "DEPROVISIONED"
    assert api(okta, "DELETE", f"/users/{uid}").status_code == 204
    assert api(okta, "GET", f"/users/{uid}").status_code == 404


def test_create_user_validates_like_okta(okta: Backend) -> None:
    new_user(okta, "ada@example.com")
    dup = api(
        okta,
        "POST",
        "/users",
        json={
            "profile": {
                "login": "ADA@example.com",
                "email": "a@b.c",
                "firstName": "A",
                "lastName": "L",
            }
        },
    )
    assert dup.status_code == 400
    taken = "login: An object with this field already exists in the current organization"
    assert dup.json()["errorCauses"] == [{"errorSummary": taken}]
    bad = api(okta, "POST", "/users", json={"profile": {"login": "ada", "email": "x@y.z"}})
    causes = [c["errorSummary"] for c in bad.json()["errorCauses"]]
    assert bad.status_code == 400 and causes == [
        "firstName: The field cannot be left blank",
        "lastName: The field cannot be left blank",
        "login: Username must be in the form of an email address",
    ]
    no_password = new_user(okta, "np@example.com", activate=True)
    assert no_password["status"] == "PROVISIONED"  # awaits the person's activation
    body = {
        "profile": {
            "login": "pw@example.com",
            "email": "pw@example.com",
            "firstName": "P",
            "lastName": "W",
        },
        "credentials": {"password": {"value": "correct horse battery"}},
    }
    assert api(okta, "POST", "/users", json=body).json()["status"] == "ACTIVE"


# ---------------------------------------------------------------------------- auth
def assertion(key: RSAKey, audience: str, **claims: Any) -> str:
    return str(private_key_jwt_sign(key, CLIENT_ID, audience, claims=claims or None))


def token_request(
    okta: Backend, client_assertion: str, scope: str = "okta.users.read"
) -> httpx.Response:
    return okta.raw.post(
        f"{okta.root}/okta/oauth2/v1/token",
        data={
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": ASSERTION,
            "client_assertion": client_assertion,
        },
    )


def test_the_token_endpoint_checks_the_client_assertion(okta: Backend, key: RSAKey) -> None:
    body = {
        "client_id": CLIENT_ID,
        "jwks": {"keys": [key.as_dict(private=False)]},
        "scopes": ["okta.users.read"],
    }
    assert okta.raw.post(f"{okta.root}/_sandbox/idp/okta/clients", json=body).status_code == 200
    private = {**body, "jwks": {"keys": [key.as_dict(private=True)]}}
    assert okta.raw.post(f"{okta.root}/_sandbox/idp/okta/clients", json=private).status_code == 422
    url = f"{okta.root}/okta/oauth2/v1/token"

    signed = assertion(key, url)
    ok = token_request(okta, signed)
    assert ok.status_code == 200, ok.text
    assert ok.json()["token_type"] == "Bearer" and ok.json()["expires_in"] == 3600
    assert ok.json()["scope"] == "okta.users.read"
    bearer = {"Authorization": f"Bearer {ok.json()['access_token']}"}
    assert api(okta, "GET", "/users", headers=bearer).status_code == 200
    write = api(okta, "POST", f"/users/{uuid.uuid4().hex}/lifecycle/deactivate", headers=bearer)
    assert (write.status_code, write.json()["errorCode"]) == (403, "E0000006")
    assert 'error="insufficient_scope"' in write.headers["WWW-Authenticate"]

    def refused(response: httpx.Response, error: str) -> None:
        assert response.json()["error"] == error, response.text

    refused(token_request(okta, signed), "invalid_client")  # the jti was used
    refused(token_request(okta, assertion(key, "https://elsewhere/token")), "invalid_client")
    refused(token_request(okta, assertion(key, url, exp=int(time.time()) - 5)), "invalid_client")
    refused(token_request(okta, assertion(key, url), "okta.users.manage"), "invalid_scope")
    basic = okta.raw.post(
        url, data={"grant_type": "client_credentials"}, auth=(CLIENT_ID, "secret")
    )
    assert basic.status_code == 401
    password = okta.raw.post(url, data={"grant_type": "password"})
    refused(password, "unsupported_grant_type")


def test_the_api_refuses_without_valid_credentials(okta: Backend) -> None:
    for headers in (
        {},
        {"Authorization": "SSWS wrong"},
        {"Authorization": f"Bearer {SANDBOX_TOKEN}"},
    ):
        r = api(okta, "GET", "/users", headers=headers)
        assert (r.status_code, r.json()["errorCode"]) == (401, "E0000011"), headers
    r = api(okta, "GET", "/users", headers={"Authorization": "Bearer made-up"})
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]


def test_okta_429_says_when_by_x_rate_limit_reset(okta: Backend) -> None:
    # 6 a minute, one at a time: the second call comes within the 10 s a token takes to come
    # back even on a loaded machine (at 60 a minute, a second between the calls let it through).
    faults = {"rate_limit": 6, "burst": 1, "apis": ["okta"]}
    assert okta.raw.put(f"{okta.root}/_sandbox/faults", json=faults).status_code == 200
    assert api(okta, "GET", "/groups").status_code == 200
    r = api(okta, "GET", "/groups")
    assert r.status_code == 429 and "retry-after" not in r.headers
    assert r.json()["errorCode"] == "E0000047"
    assert r.headers["X-Rate-Limit-Remaining"] == "0" and r.headers["X-Rate-Limit-Limit"] == "6"
    assert time.time() < int(r.headers["X-Rate-Limit-Reset"]) <= time.time() + 11


# ---------------------------------------------------------------------------- the org, sessions
def test_group_changes_push_into_the_org(okta: Backend) -> None:
    email = "lea@example.com"
    gids = [okta.group(name) for name in MAPPED]
    joined = new_user(okta, "joiner@example.com", groupIds=[gids[0]])
    assert org_total(okta, "joiner@example.com") == 1
    assert [g["id"] for g in api(okta, "GET", f"/users/{joined['id']}/groups").json()] == [gids[0]]
    uid = new_user(okta, email)["id"]
    for gid in gids:
        assert api(okta, "PUT", f"/groups/{gid}/users/{uid}").status_code == 204
    assert api(okta, "PUT", f"/groups/{gids[0]}/users/{uid}").status_code == 204  # no change
    assert org_total(okta, email) == 1
    for gid in gids:
        assert api(okta, "DELETE", f"/groups/{gid}/users/{uid}").status_code == 204
    assert org_total(okta, email) == 0  # out of every mapped group: out of the org
    assert api(okta, "PUT", f"/groups/{gids[0]}/users/{uid}").status_code == 204
    assert org_total(okta, email) == 1
    assert api(okta, "POST", f"/users/{uid}/lifecycle/deactivate").status_code == 200
    assert org_total(okta, email) == 0  # deactivated: deprovisioned
    missing = api(okta, "PUT", f"/groups/{gids[0]}/users/nobody")
    assert (missing.status_code, missing.json()["errorCode"]) == (404, "E0000007")


def test_clearing_sessions_with_and_without_oauth_tokens(okta: Backend) -> None:
    uid = okta.user("s@example.com")
    control = f"{okta.root}/_sandbox/idp/sessions"
    okta.raw.post(control, params={"user": uid})
    assert api(okta, "DELETE", f"/users/{uid}/sessions").status_code == 204
    (ended,) = okta.raw.get(control, params={"user": uid}).json()["sessions"]
    assert ended["ended_at"] and ended["tokens_revoked"] is False  # oauthTokens defaults to false
    okta.raw.post(control, params={"user": uid})
    r = api(okta, "DELETE", f"/users/{uid}/sessions", params={"oauthTokens": "true"})
    assert r.status_code == 204
    listed = okta.raw.get(control, params={"user": uid}).json()
    assert listed["live"] == 0 and listed["sessions"][-1]["tokens_revoked"] is True
    assert api(okta, "DELETE", "/users/nobody/sessions").status_code == 404
