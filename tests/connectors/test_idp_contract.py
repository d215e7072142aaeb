"""The contract of ``UserDirectory`` and ``GroupMembership`` (STYLE.md point 15): one suite, run
against every IdP kind's servers (tests/connectors/idp_fixtures.py SERVERS): for SCIM, the
sandbox IdP in-process and over loopback, and an independent scim2-server (which pages by 20 and
does not return ``User.groups``, so the connector's search paths are exercised too); for Okta,
the sandbox's imitation of its Management API, and for Entra ID, of Microsoft Graph, each
in-process and over loopback.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any
from wsgiref.types import StartResponse, WSGIEnvironment

import httpx
import pytest
from pydantic import SecretStr

from connectors.capabilities import GroupMembership, UserDirectory, capabilities_of
from connectors.errors import AuthError, ConnectorError, NotFoundError, PermanentError
from connectors.idp import ScimIdp
from connectors.rate import TokenBucket
from connectors.settings import Settings
from domain.models import Effect, IdpUser
from tests.connectors.idp_fixtures import (
    FAST,
    SERVERS,
    Backend,
    open_backend,
    scim2_application,
)

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
MAPPED = ("amplitude-org-members", "amplitude-project-viewers-production")


def is_mapped(name: str) -> bool:
    return name.startswith("amplitude-")


@pytest.fixture(
    params=[
        pytest.param(name, marks=[] if name in FAST else [pytest.mark.slow]) for name in SERVERS
    ]
)
def server(request: pytest.FixtureRequest) -> Iterator[Backend]:
    with open_backend(request.param) as backend:
        yield backend


@pytest.fixture
def idp(server: Backend) -> Any:
    return server.idp()


def ada(server: Backend) -> str:
    return server.user(
        "Ada.Lovelace@Example.com",
        name={"givenName": "Ada", "familyName": "Lovelace"},
        emails=[{"value": "ada@mail.example.com", "primary": True}],
    )


# ---------------------------------------------------------------------------- users
def test_find_user_by_user_name_or_email_ignoring_case(server: Backend, idp: Any) -> None:
    uid = ada(server)
    server.user("someone.else@example.com")
    by_name = idp.find_user("  ada.lovelace@EXAMPLE.com")
    assert by_name == IdpUser(
        id=uid,
        user_name="Ada.Lovelace@Example.com",
        email="ada@mail.example.com",
        given_name="Ada",
        family_name="Lovelace",
        active=True,
        emails=("ada@mail.example.com",),
        status=server.active_status,
    )
    # The userName is the address it is recorded under; every email is one it is known by.
    assert by_name.address == "ada.lovelace@example.com"
    assert by_name.addresses == ("ada.lovelace@example.com", "ada@mail.example.com")
    assert idp.find_user("ADA@Mail.Example.COM") == by_name  # by emails.value
    assert idp.find_user("ada@example.com") is None
    assert idp.find_user('evil" or userName pr or userName eq "x') is None  # quotes escaped
    assert idp.get_user(uid) == by_name


def test_create_user_then_noop(idp: Any) -> None:
    result, user = idp.create_user(
        email="Grace@Example.com", given_name="Grace", family_name="Hopper"
    )
    assert result.effect is Effect.CREATED
    assert (user.user_name, user.email, user.given_name, user.active) == (
        "grace@example.com",
        "grace@example.com",
        "Grace",
        True,
    )
    again, same = idp.create_user(email="GRACE@example.com")
    assert (again.effect, again.reason, same.id) == (Effect.NOOP, "exists", user.id)
    assert str(again) == "noop(exists)"
    assert idp.find_user("grace@example.com") == user
    result, inactive = idp.create_user(email="new@example.com", active=False)
    assert result.effect is Effect.CREATED and inactive.active is False


def test_set_active_updated_then_noop(idp: Any) -> None:
    _, user = idp.create_user(email="lin@example.com")
    assert idp.set_active(user.id, False).effect is Effect.UPDATED
    noop = idp.set_active(user.id, False)
    assert (noop.effect, noop.reason) == (Effect.NOOP, "already inactive")
    assert idp.get_user(user.id).active is False
    assert idp.set_active(user.id, True).effect is Effect.UPDATED
    assert str(idp.set_active(user.id, True)) == "noop(already active)"
    assert idp.find_user("lin@example.com").active is True  # type: ignore[union-attr]


def test_deactivate_by_email(idp: Any) -> None:
    idp.create_user(email="max@example.com")
    assert idp.deactivate("MAX@example.com").effect is Effect.UPDATED
    assert str(idp.deactivate("max@example.com")) == "noop(already inactive)"
    assert idp.find_user("max@example.com").active is False  # type: ignore[union-attr]
    assert str(idp.deactivate("nobody@example.com")) == "noop(no such user)"


# ---------------------------------------------------------------------------- groups
def test_list_find_and_groups_of(server: Backend, idp: Any) -> None:
    uid = ada(server)
    other = server.user("bob@example.com")
    eng = server.group("Engineering", (uid, other))
    org = server.group("amplitude-org-members", (uid,))
    empty = server.group("alumni")

    groups = {g.name: g for g in idp.list_groups()}
    assert set(groups) == {"Engineering", "amplitude-org-members", "alumni"}
    assert set(groups["Engineering"].members) == {uid, other}
    assert (groups["alumni"].id, groups["alumni"].members) == (empty, ())

    found = idp.find_group("engineering")
    assert found is not None and (found.id, set(found.members)) == (eng, {uid, other})
    assert idp.find_group("Engineering ") is None
    assert idp.find_group("marketing") is None

    assert sorted((g.id, g.name) for g in idp.groups_of(uid)) == sorted(
        [(eng, "Engineering"), (org, "amplitude-org-members")]
    )
    assert [g.name for g in idp.groups_of(other)] == ["Engineering"]
    assert idp.groups_of(server.user("loner@example.com")) == []


def test_add_and_remove_member_then_noop(server: Backend, idp: Any) -> None:
    uid = ada(server)
    gid = server.group("Engineering")

    assert idp.add_to_group(gid, uid).effect is Effect.UPDATED
    assert str(idp.add_to_group(gid, uid)) == "noop(already a member)"
    assert idp.get_group(gid).members == (uid,)
    assert [g.id for g in idp.groups_of(uid)] == [gid]

    removed = idp.remove_from_group(gid, uid)
    assert (removed.effect, removed.detail["group"]) == (Effect.UPDATED, "Engineering")
    assert str(idp.remove_from_group(gid, uid)) == "noop(not a member)"
    assert idp.get_group(gid).members == ()
    assert idp.groups_of(uid) == []
    assert str(idp.remove_from_group("no-such-group", uid)) == "noop(no such group)"


def test_remove_from_mapped_groups(server: Backend, idp: Any) -> None:
    _, user = idp.create_user(email="leaver@example.com", given_name="Lea", family_name="Ver")
    keep = server.group("everyone", (user.id,))
    for name in MAPPED:
        server.group(name, (user.id,))
    server.group("amplitude-org-admins")  # mapped, but they are not in it

    results = idp.remove_from_mapped_groups("Leaver@Example.com", is_mapped)
    assert sorted((name, str(r)) for name, r in results) == [(n, "updated") for n in MAPPED]
    assert [(g.id, g.name) for g in idp.groups_of(user.id)] == [(keep, "everyone")]
    assert idp.remove_from_mapped_groups("leaver@example.com", is_mapped) == []  # converged
    assert idp.remove_from_mapped_groups("nobody@example.com", is_mapped) == []


# ---------------------------------------------------------------------------- errors, paging
def test_missing_resources_raise_not_found(server: Backend, idp: Any) -> None:
    uid = ada(server)
    with pytest.raises(NotFoundError) as err:
        idp.set_active("no-such-user", False)
    e = err.value
    assert (e.system, e.operation, e.subject, e.status_code) == (
        "idp",
        "set_active",
        "no-such-user",
        404,
    )
    assert str(e).startswith("idp: set_active failed for no-such-user: 404")
    with pytest.raises(NotFoundError):
        idp.get_user("no-such-user")
    with pytest.raises(NotFoundError):
        idp.groups_of("no-such-user")
    with pytest.raises(NotFoundError) as err:
        idp.add_to_group("no-such-group", uid)
    assert err.value.operation == "add_to_group"


def test_a_bad_token_raises_auth_error_and_changes_nothing(server: Backend) -> None:
    bad = server.idp(token="wrong-token")
    with pytest.raises(AuthError) as err:
        bad.find_user("ada@example.com")
    assert (err.value.system, err.value.operation, err.value.status_code) == (
        "idp",
        "find_user",
        401,
    )
    with pytest.raises(AuthError):
        bad.create_user(email="intruder@example.com")
    with pytest.raises(AuthError):
        bad.list_groups()
    assert server.idp().find_user("intruder@example.com") is None
    assert bad.http.stats.retries == 0  # permanent: never retried


def test_listings_page_through_every_page(server: Backend, idp: Any) -> None:
    uids = [server.user(f"user{i:03}@example.com") for i in range(120)]
    gids = [server.group(f"team-{i:02}", (uids[i],)) for i in range(45)]

    before = idp.http.stats.requests
    users = list(idp.iter_users())
    pages = idp.http.stats.requests - before
    assert sorted(u.id for u in users) == sorted(uids)  # each exactly once
    assert pages >= 3  # 50 a page asked; scim2-server gives at most 20

    groups = idp.list_groups()
    assert sorted(g.id for g in groups) == sorted(gids)
    assert {g.name: g.members for g in groups}["team-07"] == (uids[7],)
    assert idp.find_user("user119@example.com") is not None


# ---------------------------------------------------------------------------- not per server
def test_scim_idp_offers_both_capabilities() -> None:
    idp = ScimIdp(base_url="http://127.0.0.1:9/scim/v2", token="s3cr3t", limiter=TokenBucket(60))
    assert isinstance(idp, UserDirectory) and isinstance(idp, GroupMembership)
    assert capabilities_of(idp) == ["UserDirectory", "GroupMembership"]
    assert "s3cr3t" not in repr(idp) and "s3cr3t" not in repr(idp.http)
    idp.close()


def test_settings_give_the_url_token_and_rate() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"schemas": [LIST_SCHEMA], "totalResults": 0})

    settings = Settings(
        idp_url="https://idp.settings.test/scim/v2/",
        idp_token=SecretStr("from-settings"),
        idp_rate_per_minute=120,
    )
    with httpx.Client(transport=httpx.MockTransport(answer)) as client:
        idp = ScimIdp(settings, client=client)
        assert idp.list_groups() == []
    assert idp.http.limiter.per_minute == 120
    (request,) = seen
    assert str(request.url).startswith("https://idp.settings.test/scim/v2/Groups?")
    assert request.headers["authorization"] == "Bearer from-settings"
    assert dict(request.url.params) == {"startIndex": "1", "count": "100"}


def test_groups_of_scans_groups_where_member_filters_are_refused() -> None:
    """Some IdPs refuse filters on ``members`` (400 invalidFilter): groups_of scans instead."""
    app, refused = scim2_application(token=None), []

    def no_member_filters(
        environ: WSGIEnvironment, start_response: StartResponse
    ) -> Iterable[bytes]:
        if "members" in environ.get("QUERY_STRING", ""):
            refused.append(environ["QUERY_STRING"])
            start_response("400 Bad Request", [("Content-Type", "application/scim+json")])
            return [
                json.dumps(
                    {"schemas": [ERROR_SCHEMA], "status": "400", "scimType": "invalidFilter"}
                ).encode()
            ]
        return app(environ, start_response)

    with httpx.Client(transport=httpx.WSGITransport(app=no_member_filters)) as client:
        idp = ScimIdp(
            base_url="http://scim.test/v2",
            token="t",
            client=client,
            limiter=TokenBucket(100_000),
            page_size=3,
        )
        _, user = idp.create_user(email="ada@example.com")
        for i in range(5):
            body = {"schemas": [GROUP_SCHEMA], "displayName": f"g{i}"}
            gid = client.post("http://scim.test/v2/Groups", json=body).json()["id"]
            if i % 2:
                assert idp.add_to_group(gid, user.id).effect is Effect.UPDATED
        assert sorted(g.name for g in idp.groups_of(user.id)) == ["g1", "g3"]
    assert len(refused) == 1  # the member filter was tried first


def test_vendor_extensions_are_ignored_and_non_scim_answers_refused() -> None:
    """What other IdPs answer: their own schema extensions, empty pages without Resources, and
    (behind a misconfigured proxy) HTML with a 200."""
    user = {
        "schemas": [USER_SCHEMA, "urn:okta:params:scim:schemas:extension:custom:1.0:User"],
        "id": "00u1",
        "userName": "Ada@Example.com",
        "urn:okta:params:scim:schemas:extension:custom:1.0:User": {"costCenter": "42"},
    }

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/scim/v2/Users/00u1":
            return httpx.Response(200, json=user)
        if request.url.path == "/scim/v2/Users":
            return httpx.Response(200, json={"schemas": [LIST_SCHEMA], "totalResults": 0})
        return httpx.Response(200, text="<html>sign in</html>")

    with httpx.Client(transport=httpx.MockTransport(answer)) as client:
        idp = ScimIdp(
            base_url="https://idp.test/scim/v2", token="t", client=client, limiter=TokenBucket(1e5)
        )
        assert idp.get_user("00u1") == IdpUser(
            id="00u1", user_name="Ada@Example.com", email="ada@example.com"
        )
        assert idp.find_user("nobody@example.com") is None
        with pytest.raises(PermanentError) as err:
            idp.get_group("00g1")
        assert (err.value.system, err.value.operation) == ("idp", "get_group")


def test_errors_leave_the_connector_as_connector_errors() -> None:
    idp = ScimIdp(base_url="http://127.0.0.1:9/scim/v2", token="t", limiter=TokenBucket(100_000))
    idp.http.attempts = 1
    with pytest.raises(ConnectorError) as err:
        idp.find_user("ada@example.com")
    assert err.value.system == "idp"
    idp.close()
