"""The sandbox's Microsoft Entra ID: the token endpoint (client credentials and its AADSTS
refusals) and Microsoft Graph v1.0 (bearer tokens required, user and group shapes, $filter,
$select, $top with nextLink paging, $count and ConsistencyLevel, memberOf, members/$ref,
revokeSignInSessions, Graph's error shape), and every change pushed into the org."""

from __future__ import annotations

import time
import weakref
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from joserfc import jwt

from sandbox.idp.oidc import signing_key
from sandbox.org.models import Project
from sandbox.world import Credentials, FaultSettings, World
from tests.sandbox.test_idp import VIEWERS_PROD, org_state

CREDS = Credentials()
TOKEN_URL = f"/entra/{CREDS.entra_tenant_id}/oauth2/v2.0/token"
SCOPE = "https://graph.microsoft.com/.default"
G = "/graph/v1.0"
PASSWORD = {"password": "Sandbox-Pa55word!"}


@pytest.fixture
def world(empty_app: FastAPI) -> World:
    """The empty world with the three projects the mapped groups name."""
    w: World = empty_app.state.world
    with w.db.session() as s:
        for name in ("Production", "Staging", "Development"):
            s.add(Project(name=name, environment=name.lower()))
    return w


# One token per world's client and app (a world signs with its own key).
_TOKENS: weakref.WeakKeyDictionary[TestClient, dict[bool, str]] = weakref.WeakKeyDictionary()


def token(client: TestClient, *, admin: bool = False) -> str:
    """A token of Handover's app (or the administrator's)."""
    kept = _TOKENS.setdefault(client, {})
    if admin in kept:
        return kept[admin]
    r = client.post(
        TOKEN_URL,
        data={
            "grant_type": "client_credentials",
            "client_id": CREDS.entra_admin_client_id if admin else CREDS.entra_client_id,
            "client_secret": CREDS.entra_admin_client_secret
            if admin
            else CREDS.entra_client_secret,
            "scope": SCOPE,
        },
    )
    assert r.status_code == 200, r.text
    kept[admin] = str(r.json()["access_token"])
    return kept[admin]


def graph(client: TestClient, method: str, path: str, body: Any = None, **kw: Any) -> Any:
    bearer = kw.pop("bearer", None) or token(client, admin=True)
    headers = {"Authorization": f"Bearer {bearer}", **kw.pop("headers", {})}
    return client.request(method, G + path, json=body, headers=headers, **kw)


def new_user(client: TestClient, upn: str, **extra: Any) -> str:
    body = {
        "accountEnabled": True,
        "displayName": upn,
        "mailNickname": upn.split("@")[0],
        "userPrincipalName": upn,
        "passwordProfile": PASSWORD,
        **extra,
    }
    r = graph(client, "POST", "/users", body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def new_group(client: TestClient, name: str, members: tuple[str, ...] = ()) -> str:
    body = {
        "displayName": name,
        "mailNickname": name,
        "mailEnabled": False,
        "securityEnabled": True,
        "members@odata.bind": [f"https://graph.microsoft.com/v1.0/users/{m}" for m in members],
    }
    r = graph(client, "POST", "/groups", body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def graph_error(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["code"] == code
    assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
    assert r.headers["request-id"]
    return dict(error)


# ---------------------------------------------------------------------------- token endpoint
def test_client_credentials_issue_a_graph_token(client: TestClient, world: World) -> None:
    r = client.post(
        TOKEN_URL,
        data={"grant_type": "client_credentials", "scope": SCOPE},
        auth=(CREDS.entra_client_id, CREDS.entra_client_secret),  # client_secret_basic
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["token_type"], body["expires_in"], body["ext_expires_in"]) == (
        "Bearer",
        3599,
        3599,
    )
    assert r.headers["cache-control"] == "no-store"
    claims = jwt.decode(body["access_token"], signing_key(world)).claims
    assert claims["aud"] == "https://graph.microsoft.com"
    assert (claims["tid"], claims["appid"]) == (CREDS.entra_tenant_id, CREDS.entra_client_id)
    assert claims["roles"] == [
        "User.ReadWrite.All",
        "GroupMember.ReadWrite.All",
        "User.RevokeSessions.All",
    ]
    assert claims["exp"] - claims["iat"] == 3599


@pytest.mark.parametrize(
    ("path", "form", "status", "error", "number"),
    [
        ("/entra/other-tenant/oauth2/v2.0/token", {}, 400, "invalid_request", 90002),
        (
            TOKEN_URL,
            {"client_id": "00000000-0000-4000-8000-000000000000"},
            400,
            "unauthorized_client",
            700016,
        ),
        (TOKEN_URL, {"client_secret": "wrong"}, 401, "invalid_client", 7000215),
        (TOKEN_URL, {"client_secret": ""}, 401, "invalid_client", 7000216),
        (TOKEN_URL, {"grant_type": "password"}, 400, "unsupported_grant_type", 70003),
        (TOKEN_URL, {"scope": "User.Read"}, 400, "invalid_scope", 1002012),
    ],
)
def test_token_refusals_are_entras(
    client: TestClient, path: str, form: dict[str, str], status: int, error: str, number: int
) -> None:
    data = {
        "grant_type": "client_credentials",
        "client_id": CREDS.entra_client_id,
        "client_secret": CREDS.entra_client_secret,
        "scope": SCOPE,
        **form,
    }
    r = client.post(path, data=data)
    assert r.status_code == status, r.text
    body = r.json()
    assert (body["error"], body["error_codes"]) == (error, [number])
    assert body["error_description"].startswith(f"AADSTS{number}: ")
    assert "\r\nTrace ID: " in body["error_description"]
    assert body["trace_id"] and body["correlation_id"] and body["timestamp"]
    assert CREDS.entra_client_secret not in r.text


# ---------------------------------------------------------------------------- Graph's auth
def test_graph_wants_a_valid_token_with_the_right_roles(client: TestClient, world: World) -> None:
    error = graph_error(client.get(f"{G}/users"), 401, "InvalidAuthenticationToken")
    assert error["message"] == "Access token is empty."
    r = client.get(f"{G}/users", headers={"Authorization": "Bearer not-a-jwt"})
    graph_error(r, 401, "InvalidAuthenticationToken")
    now = int(time.time())
    key = signing_key(world)
    claims = {"aud": "https://graph.microsoft.com", "tid": CREDS.entra_tenant_id}
    expired = jwt.encode(
        {"alg": "RS256", "kid": key.kid}, {**claims, "iat": now - 7200, "exp": now - 3600}, key
    )
    r = client.get(f"{G}/users", headers={"Authorization": f"Bearer {expired}"})
    error = graph_error(r, 401, "InvalidAuthenticationToken")
    assert error["message"] == "Lifetime validation failed, the token is expired."
    other = jwt.encode(
        {"alg": "RS256", "kid": key.kid},
        {**claims, "tid": "another-tenant", "exp": now + 600, "roles": ["User.ReadWrite.All"]},
        key,
    )
    r = client.get(f"{G}/users", headers={"Authorization": f"Bearer {other}"})
    graph_error(r, 401, "InvalidAuthenticationToken")
    # Handover's app reads and writes users and memberships, but does not create groups.
    handover = token(client)
    assert graph(client, "GET", "/users", bearer=handover).status_code == 200
    body = {"displayName": "x", "mailNickname": "x", "mailEnabled": False, "securityEnabled": True}
    r = graph(client, "POST", "/groups", body, bearer=handover)
    assert graph_error(r, 403, "Authorization_RequestDenied")["message"] == (
        "Insufficient privileges to complete the operation."
    )


# ---------------------------------------------------------------------------- shapes
def test_user_and_group_shapes(client: TestClient, world: World) -> None:
    uid = new_user(
        client,
        "Ada.Lovelace@example.com",
        givenName="Ada",
        surname="Lovelace",
        mail="Ada@Mail.example.com",
        otherMails=["ada.old@example.com"],
    )
    assert uid.count("-") == 4  # a GUID
    r = graph(client, "GET", f"/users/{uid}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    user = r.json()
    assert user["@odata.context"] == "http://testserver/graph/v1.0/$metadata#users/$entity"
    assert "accountEnabled" not in user  # not in Graph's default set
    assert (user["id"], user["userPrincipalName"], user["mail"]) == (
        uid,
        "Ada.Lovelace@example.com",
        "ada@mail.example.com",
    )
    fields = "id,accountEnabled,otherMails,proxyAddresses,signInSessionsValidFromDateTime"
    r = graph(client, "GET", "/users/ada.lovelace@EXAMPLE.com", params={"$select": fields})
    user = r.json()
    assert user["@odata.context"].endswith(f"#users({fields})/$entity")
    assert user["accountEnabled"] is True and user["otherMails"] == ["ada.old@example.com"]
    assert user["proxyAddresses"] == ["SMTP:ada@mail.example.com", "smtp:ada.old@example.com"]
    assert user["signInSessionsValidFromDateTime"].endswith("Z")
    r = graph(client, "GET", "/users", params={"$select": "id,nope"})
    assert "Could not find a property named 'nope'" in graph_error(r, 400, "BadRequest")["message"]
    r = graph(client, "GET", "/users/nobody@example.com")
    graph_error(r, 404, "Request_ResourceNotFound")

    gid = new_group(client, "Engineering", (uid,))
    group = graph(client, "GET", f"/groups/{gid}").json()
    assert {k: group[k] for k in ("id", "displayName", "mailEnabled", "securityEnabled")} == {
        "id": gid,
        "displayName": "Engineering",
        "mailEnabled": False,
        "securityEnabled": True,
    }
    graph_error(graph(client, "GET", "/groups/not-a-guid"), 400, "Request_BadRequest")
    members = graph(client, "GET", f"/groups/{gid}/members").json()["value"]
    assert [(m["@odata.type"], m["id"]) for m in members] == [("#microsoft.graph.user", uid)]

    dup = {
        "accountEnabled": True,
        "displayName": "x",
        "mailNickname": "x",
        "userPrincipalName": "ADA.lovelace@example.com",
        "passwordProfile": PASSWORD,
    }
    error = graph_error(graph(client, "POST", "/users", dup), 400, "Request_BadRequest")
    assert error["details"][0]["code"] == "ObjectConflict"
    weak = {**dup, "userPrincipalName": "new@example.com", "passwordProfile": {"password": "abc"}}
    r = graph(client, "POST", "/users", weak)
    assert "complexity" in graph_error(r, 400, "Request_BadRequest")["message"]


def test_filters_count_and_next_link_paging(client: TestClient, world: World) -> None:
    ids = [new_user(client, f"user{i}@example.com") for i in range(5)]
    new_user(client, "other@example.org", otherMails=["alias@example.com"])
    seen, url, pages = [], f"{G}/users?$top=2&$select=id", 0
    bearer = token(client)
    while url:
        r = client.get(url, headers={"Authorization": f"Bearer {bearer}"})
        assert r.status_code == 200, r.text
        page = r.json()
        seen += [u["id"] for u in page["value"]]
        pages += 1
        url = page.get("@odata.nextLink")
        if url:
            assert url.startswith("http://testserver/graph/v1.0/users?") and "skiptoken" in url
    assert pages == 3 and len(seen) == 6 and set(ids) <= set(seen)

    r = graph(client, "GET", "/users", params={"$top": "1000"})
    assert "Invalid page size" in graph_error(r, 400, "Request_BadRequest")["message"]
    r = graph(client, "GET", "/users", params={"$count": "true"})
    graph_error(r, 400, "Request_BadRequest")
    r = graph(
        client, "GET", "/users", params={"$count": "true"}, headers={"ConsistencyLevel": "eventual"}
    )
    assert r.json()["@odata.count"] == 6

    def found(filter_: str, **kw: Any) -> list[str]:
        r = graph(
            client, "GET", "/users", params={"$filter": filter_, **kw.pop("params", {})}, **kw
        )
        assert r.status_code == 200, r.text
        return sorted(u["userPrincipalName"] for u in r.json()["value"])

    assert found("userPrincipalName eq 'USER3@example.com'") == ["user3@example.com"]
    assert found("startswith(userPrincipalName,'user1')") == ["user1@example.com"]
    assert found("otherMails/any(m:m eq 'Alias@example.com')") == ["other@example.org"]
    assert found("proxyAddresses/any(p:p eq 'smtp:alias@example.com')") == ["other@example.org"]
    assert found("userPrincipalName eq 'user0@example.com' or mail eq 'x'") == ["user0@example.com"]
    r = graph(client, "GET", "/users", params={"$filter": "userPrincipalName ne 'x'"})
    assert graph_error(r, 400, "Request_UnsupportedQuery")
    advanced = found(
        "endswith(userPrincipalName,'.org')",
        params={"$count": "true"},
        headers={"ConsistencyLevel": "eventual"},
    )
    assert advanced == ["other@example.org"]
    r = graph(client, "GET", "/users", params={"$filter": "jobTitle eq 'x'"})
    graph_error(r, 400, "Request_UnsupportedQuery")
    quoted = "userPrincipalName eq 'o''brien@example.com'"
    assert found(quoted) == []


# ---------------------------------------------------------------------------- memberships
def test_members_ref_and_member_of(client: TestClient, world: World) -> None:
    uid = new_user(client, "ada@example.com")
    gid = new_group(client, "Engineering")
    ref = {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{uid}"}
    bearer = token(client)
    path = f"/groups/{gid}/members/$ref"
    assert graph(client, "POST", path, ref, bearer=bearer).status_code == 204
    error = graph_error(graph(client, "POST", path, ref, bearer=bearer), 400, "Request_BadRequest")
    assert error["message"].startswith("One or more added object references already exist")
    missing = {"@odata.id": f"{G}/directoryObjects/00000000-0000-4000-8000-000000000000"}
    graph_error(
        graph(client, "POST", path, missing, bearer=bearer), 404, "Request_ResourceNotFound"
    )

    cast = f"/users/{uid}/memberOf/microsoft.graph.group"
    graph_error(graph(client, "GET", cast, bearer=bearer), 400, "Request_UnsupportedQuery")
    r = graph(
        client,
        "GET",
        cast,
        params={"$count": "true", "$select": "id,displayName"},
        headers={"ConsistencyLevel": "eventual"},
        bearer=bearer,
    )
    assert r.json()["value"] == [{"id": gid, "displayName": "Engineering"}]
    plain = graph(client, "GET", f"/users/{uid}/memberOf", bearer=bearer).json()["value"]
    assert [g["@odata.type"] for g in plain] == ["#microsoft.graph.group"]

    delete = f"/groups/{gid}/members/{uid}/$ref"
    assert graph(client, "DELETE", delete, bearer=bearer).status_code == 204
    graph_error(graph(client, "DELETE", delete, bearer=bearer), 404, "Request_ResourceNotFound")


def test_graph_changes_push_into_the_org(client: TestClient, world: World) -> None:
    email = "ada@example.com"
    uid = new_user(client, email, mail=email, givenName="Ada", surname="Lovelace")
    viewers = new_group(client, VIEWERS_PROD)
    bearer = token(client)
    ref = {"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{uid}"}
    assert (
        graph(client, "POST", f"/groups/{viewers}/members/$ref", ref, bearer=bearer).status_code
        == 204
    )
    state = org_state(world, email)
    assert state is not None and state["projects"] == {"Production": "viewer"}

    # Out of the mapped group in Entra → out of the org.
    r = graph(client, "DELETE", f"/groups/{viewers}/members/{uid}/$ref", bearer=bearer)
    assert r.status_code == 204
    assert org_state(world, email) is None

    graph(client, "POST", f"/groups/{viewers}/members/$ref", ref, bearer=bearer)
    assert org_state(world, email) is not None
    r = graph(client, "PATCH", f"/users/{uid}", {"accountEnabled": False}, bearer=bearer)
    assert r.status_code == 204
    assert org_state(world, email) is None  # disabled → deprovisioned
    r = graph(client, "PATCH", f"/users/{uid}", {"id": "x"}, bearer=bearer)
    graph_error(r, 400, "Request_BadRequest")


def test_revoke_sign_in_sessions_ends_them(client: TestClient, world: World) -> None:
    uid = new_user(client, "ada@example.com", mail="ada@example.com")
    client.post("/_sandbox/idp/sessions", params={"user": "ada@example.com"})
    bearer = token(client)
    r = graph(client, "POST", f"/users/{uid}/revokeSignInSessions", bearer=bearer)
    assert r.status_code == 200
    assert r.json() == {
        "@odata.context": "http://testserver/graph/v1.0/$metadata#Edm.Boolean",
        "value": True,
    }
    sessions = client.get("/_sandbox/idp/sessions", params={"user": "ada@example.com"}).json()
    assert sessions["live"] == 0 and sessions["sessions"][0]["tokens_revoked"] is True
    missing = "/users/00000000-0000-4000-8000-000000000000/revokeSignInSessions"
    graph_error(graph(client, "POST", missing, bearer=bearer), 404, "Request_ResourceNotFound")


def test_throttling_answers_graphs_429(client: TestClient, world: World) -> None:
    bearer = token(client)
    # 6 a minute, one at a time: the second call comes within the 10 s a token takes to come
    # back even on a loaded machine.
    world.set_faults(FaultSettings(rate_limit=6, burst=1, apis=["graph"]))
    assert graph(client, "GET", "/users", bearer=bearer).status_code == 200
    r = graph(client, "GET", "/users", bearer=bearer)
    assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 10
    error = r.json()["error"]
    assert error["code"] == "TooManyRequests"
    assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
    assert client.post(TOKEN_URL, data={}).status_code == 400  # the token endpoint: not limited


def test_unknown_segments_answer_as_graph(client: TestClient) -> None:
    r = graph(client, "GET", "/applications", bearer=token(client))
    assert "segment 'applications'" in graph_error(r, 400, "BadRequest")["message"]
