"""What only the Okta connector does (the rest is the IdP contract suite, run on the Okta kind
too): SSWS or a service app's OAuth token (private_key_jwt), lifecycle statuses, sessions,
paging through Link headers, Okta's 429 and errors — against the sandbox's imitation of Okta's
Management API, in-process.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from joserfc.jwk import RSAKey
from pydantic import SecretStr

from connectors.capabilities import SessionControl, capabilities_of
from connectors.errors import (
    AuthError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PermanentError,
    TransientError,
)
from connectors.idp import OktaIdp, make_idp
from connectors.idp.okta import okta_error
from connectors.rate import TokenBucket
from connectors.settings import Settings, SettingsError
from domain.models import Effect
from tests.connectors.idp_fixtures import SANDBOX_TOKEN, Backend, open_backend

SSWS = {"Authorization": f"SSWS {SANDBOX_TOKEN}"}
CLIENT_ID = "0oatestserviceapp"
WHERE: Any = {"system": "idp", "operation": "op", "subject": "x"}


@pytest.fixture(scope="module")
def key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "test-key"}, private=True)


@pytest.fixture
def okta() -> Iterator[Backend]:
    with open_backend("okta") as backend:
        yield backend


def register(okta: Backend, key: RSAKey, **extra: Any) -> None:
    body = {"client_id": CLIENT_ID, "jwks": {"keys": [key.as_dict(private=False)]}, **extra}
    r = okta.raw.post(f"{okta.root}/_sandbox/idp/okta/clients", json=body)
    assert r.status_code == 200, r.text


def service_app(okta: Backend, key: RSAKey, **kw: Any) -> OktaIdp:
    return OktaIdp(
        base_url=f"{okta.root}/okta",
        client_id=CLIENT_ID,
        private_key=json.dumps(key.as_dict(private=True)),
        client=okta.raw,
        limiter=TokenBucket(100_000),
        **kw,
    )


def raw(okta: Backend, method: str, path: str, **kw: Any) -> httpx.Response:
    return okta.raw.request(method, f"{okta.root}/okta/api/v1{path}", headers=SSWS, **kw)


# ---------------------------------------------------------------------------- auth
def test_a_service_app_gets_a_token_once_and_uses_it(okta: Backend, key: RSAKey) -> None:
    register(okta, key)
    idp = service_app(okta, key)
    assert idp.auth is not None and idp.auth.fetched == 0
    _, user = idp.create_user(email="ada@example.com", given_name="Ada", family_name="L")
    assert idp.find_user("ada@example.com") == user
    gid = okta.group("Engineering")
    assert idp.add_to_group(gid, user.id).effect is Effect.UPDATED
    assert idp.auth.fetched == 1  # one token for every call
    assert repr(idp) == f"OktaIdp(base_url='{okta.root}/okta', auth='service app')"


def test_the_token_is_renewed_before_expiry_and_after_a_revocation(
    okta: Backend, key: RSAKey
) -> None:
    register(okta, key, token_lifetime=600)
    idp = service_app(okta, key)
    assert idp.auth is not None
    idp.list_groups()
    idp.list_groups()
    assert idp.auth.fetched == 1
    idp.auth.leeway = 601  # every token is now within its last minute: renewed first
    idp.list_groups()
    assert idp.auth.fetched == 2
    idp.auth.leeway = 60
    r = okta.raw.post(f"{okta.root}/_sandbox/idp/okta/tokens/revoke?client_id={CLIENT_ID}")
    assert r.json() == {"revoked": 2}
    assert idp.list_groups() == []  # the 401 fetched a new token and the call went through
    assert idp.auth.fetched == 3


def test_service_app_refusals_are_auth_errors(okta: Backend, key: RSAKey) -> None:
    # Not granted okta.groups.manage: the token endpoint refuses the scopes asked for.
    register(okta, key, scopes=["okta.users.read"])
    with pytest.raises(AuthError) as err:
        service_app(okta, key).find_user("ada@example.com")
    assert (err.value.operation, err.value.status_code) == ("get_token", 400)
    assert "invalid_scope" in str(err.value) and "okta.groups.manage" in str(err.value)

    # A token with the read scope only: reads work, writes are refused (403 E0000006).
    reader = service_app(okta, key, scopes=("okta.users.read",))
    uid = okta.user("ada@example.com")
    assert reader.get_user(uid).user_name == "ada@example.com"
    with pytest.raises(AuthError) as err:
        reader.set_active(uid, False)
    assert err.value.status_code == 403 and "E0000006" in str(err.value)

    # Signed by a key the app never registered.
    other = RSAKey.generate_key(2048, parameters={"kid": "test-key"}, private=True)
    with pytest.raises(AuthError) as err:
        service_app(okta, other).get_user(uid)
    assert err.value.status_code == 401 and "invalid_client" in str(err.value)
    assert okta.idp().get_user(uid).active is True  # nothing changed


def test_a_bad_token_is_an_auth_error_and_no_secret_shows(okta: Backend, key: RSAKey) -> None:
    bad = okta.idp(token="s3cr3t-ssws")
    with pytest.raises(AuthError) as err:
        bad.list_groups()
    assert err.value.status_code == 401 and "E0000011 Invalid token provided" in str(err.value)
    assert bad.http.stats.retries == 0
    private = json.dumps(key.as_dict(private=True))
    app = service_app(okta, key)  # not registered: refused
    with pytest.raises(AuthError) as app_err:
        app.list_groups()
    for text in (str(err.value), repr(bad), repr(bad.http), str(app_err.value), repr(app)):
        assert "s3cr3t-ssws" not in text and private not in text
    assert "'d'" not in repr(app.auth) and str(key.as_dict(private=True)["d"]) not in repr(app.auth)


def test_make_idp_builds_okta_from_the_settings(key: RSAKey) -> None:
    ssws = make_idp(Settings(idp_kind="okta", sandbox=True))
    assert isinstance(ssws, OktaIdp) and ssws.auth is None
    assert ssws.http.base_url == "http://127.0.0.1:8800/okta"
    assert isinstance(ssws, SessionControl)
    assert capabilities_of(ssws) == ["UserDirectory", "GroupMembership", "SessionControl"]
    oauth = make_idp(
        Settings(
            idp_kind="okta",
            idp_url="https://acme.okta.com",
            idp_token=SecretStr(""),
            idp_client_id="0oa1",
            idp_private_key=SecretStr(json.dumps(key.as_dict(private=True))),
        )
    )
    assert isinstance(oauth, OktaIdp) and oauth.auth is not None
    assert oauth.auth.token_url == "https://acme.okta.com/oauth2/v1/token"
    assert oauth.auth.scope == "okta.users.manage okta.groups.manage"
    with pytest.raises(SettingsError, match="HANDOVER_IDP_TOKEN"):
        OktaIdp(Settings(idp_kind="okta", idp_token=SecretStr("")))
    with pytest.raises(SettingsError, match="HANDOVER_IDP_PRIVATE_KEY"):
        OktaIdp(base_url="https://acme.okta.com", client_id="0oa1", private_key="not a key")


# ---------------------------------------------------------------------------- lifecycle
def status(okta: Backend, uid: str) -> str:
    return str(raw(okta, "GET", f"/users/{uid}").json()["status"])


def test_lifecycle_statuses(okta: Backend) -> None:
    idp = okta.idp()
    _, staged = idp.create_user(email="new@example.com", given_name="N", active=False)
    assert (staged.status, staged.active) == ("STAGED", False)
    assert staged.family_name == "new"  # Okta requires a last name: the local part stands in
    activated = idp.set_active(staged.id, True)
    assert (activated.effect, activated.detail["via"]) == (Effect.UPDATED, "activate")
    assert idp.get_user(staged.id).status == "PROVISIONED"  # no password: awaits activation
    assert str(idp.set_active(staged.id, True)) == "noop(already active)"

    uid = okta.user("sam@example.com")  # made through SCIM: ACTIVE
    assert raw(okta, "POST", f"/users/{uid}/lifecycle/suspend").status_code == 200
    suspended = idp.get_user(uid)
    assert (suspended.status, suspended.active) == ("SUSPENDED", False)
    back = idp.set_active(uid, True)
    assert (back.detail["via"], back.detail["from"]) == ("unsuspend", "SUSPENDED")
    assert status(okta, uid) == "ACTIVE"

    # A suspended person cannot sign in, but one click restores them: deactivated all the same.
    assert raw(okta, "POST", f"/users/{uid}/lifecycle/suspend").status_code == 200
    gone = idp.set_active(uid, False)
    assert (gone.effect, gone.detail["from"]) == (Effect.UPDATED, "SUSPENDED")
    assert status(okta, uid) == "DEPROVISIONED"
    assert str(idp.set_active(uid, False)) == "noop(already inactive)"
    assert str(idp.deactivate("new@example.com")) == "updated"
    assert status(okta, staged.id) == "DEPROVISIONED"


def test_iter_users_includes_the_deprovisioned_ones(okta: Backend) -> None:
    idp = okta.idp(page_size=2)
    ids = [okta.user(f"user{i}@example.com") for i in range(7)]
    for uid in ids[:3]:
        idp.set_active(uid, False)
    listed = raw(okta, "GET", "/users").json()
    assert len(listed) == 4  # Okta's listing leaves DEPROVISIONED users out
    before = idp.http.stats.requests
    users = list(idp.iter_users())
    assert sorted(u.id for u in users) == sorted(ids)  # each once
    assert idp.http.stats.requests - before == 2 + 2  # 4 active by 2, then 3 deprovisioned by 2
    assert {u.status for u in users if u.id in ids[:3]} == {"DEPROVISIONED"}


def test_group_members_and_a_users_groups_page_through(okta: Backend) -> None:
    idp = okta.idp(page_size=2)
    uids = [okta.user(f"m{i}@example.com") for i in range(5)]
    gids = [okta.group(f"g{i}", tuple(uids)) for i in range(3)]
    assert set(idp.get_group(gids[0]).members) == set(uids)
    assert sorted(g.id for g in idp.groups_of(uids[0])) == sorted(gids)
    assert {g.name: len(g.members) for g in idp.list_groups()} == {"g0": 5, "g1": 5, "g2": 5}


# ---------------------------------------------------------------------------- sessions
def sessions(okta: Backend, email: str) -> dict[str, Any]:
    r = okta.raw.get(f"{okta.root}/_sandbox/idp/sessions", params={"user": email})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_end_sessions_ends_every_session_and_revokes_tokens(okta: Backend) -> None:
    idp, email = okta.idp(), "leaver@example.com"
    uid = okta.user(email)
    for client in ("console", "cli"):
        r = okta.raw.post(
            f"{okta.root}/_sandbox/idp/sessions", params={"user": email, "client": client}
        )
        assert r.status_code == 200
    assert sessions(okta, email)["live"] == 2

    result = idp.end_sessions(uid)
    assert (result.effect, result.detail["oauth_tokens"]) == (Effect.UPDATED, "revoked")
    after = sessions(okta, email)
    assert after["live"] == 0
    assert all(s["tokens_revoked"] and s["ended_at"] for s in after["sessions"])
    assert idp.sessions_ended_since(uid, okta.app.state.world.clock.now()) is None  # type: ignore[union-attr]
    with pytest.raises(NotFoundError):
        idp.end_sessions("no-such-user")


# ---------------------------------------------------------------------------- limits, errors
def test_a_429_waits_until_x_rate_limit_reset(okta: Backend) -> None:
    idp = okta.idp()
    faults = {"rate_limit": 20, "burst": 1, "apis": ["okta"]}  # a token every 3 s
    assert okta.raw.put(f"{okta.root}/_sandbox/faults", json=faults).status_code == 200
    first = time.monotonic()
    assert idp.list_groups() == []  # the one token of the bucket
    second = time.monotonic()
    assert idp.list_groups() == []  # 429, then again once the reset has passed
    done = time.monotonic()
    assert idp.http.stats.rate_limited == 1  # no retry came before the reset
    # The token spent by the first call comes back 3 s after that call reached the sandbox. A
    # client waiting only its own first backoff (at most 0.2 s) would have come back sooner and
    # met a second 429; this one waited the reset the 429 named (at least 1 s, whole seconds).
    # How much of the 3 s is left when the 429 comes depends on how long the first call took
    # (over 1 s on a loaded machine), so the bound on the whole is taken from before the first.
    assert done - second >= 0.9  # 1 s, less the time between the sandbox and us
    assert done - first >= 2.9


def test_okta_errors_map_by_their_code(okta: Backend) -> None:
    uid = okta.user("dup@example.com")
    profile = {
        "login": "dup@example.com",
        "email": "dup@example.com",
        "firstName": "D",
        "lastName": "Up",
    }
    dup = raw(okta, "POST", "/users", json={"profile": profile})
    assert dup.status_code == 400
    err = okta_error(dup, WHERE)
    assert isinstance(err, ConflictError) and "already exists" in str(err)
    assert str(err) == (
        "idp: op failed for x: 400 E0000001 Api validation failed: login; login: An object "
        "with this field already exists in the current organization"
    )
    blank = raw(okta, "POST", "/users", json={"profile": {"login": "x@example.com"}})
    assert isinstance(okta_error(blank, WHERE), InvalidRequestError)
    already = raw(okta, "POST", f"/users/{uid}/lifecycle/activate")
    assert already.status_code == 403
    assert isinstance(okta_error(already, WHERE), ConflictError)  # a state, not a refusal
    missing = raw(okta, "GET", "/users/nobody@example.com")
    assert isinstance(okta_error(missing, WHERE), NotFoundError)
    search = raw(okta, "GET", "/users", params={"search": 'profile.login eq "unterminated'})
    assert isinstance(okta_error(search, WHERE), InvalidRequestError)
    down = httpx.Response(
        503, json={"errorCode": "E0000009", "errorSummary": "Internal Server Error"}
    )
    assert isinstance(okta_error(down, WHERE), TransientError)
    echo = httpx.Response(400, json={"errorCode": "E0000001", "errorSummary": "bad tok3n"})
    assert "tok3n" not in str(okta_error(echo, WHERE, secrets=("tok3n",)))


def test_built_in_groups_are_left_out_and_links_stay_in_the_org() -> None:
    groups = [
        {"id": "00g1", "type": "BUILT_IN", "profile": {"name": "Everyone"}},
        {"id": "00g2", "type": "OKTA_GROUP", "profile": {"name": "Engineering"}},
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/groups":
            return httpx.Response(200, json=groups)
        if request.url.path == "/api/v1/groups/00g2/users":
            return httpx.Response(200, json=[{"id": "00u1"}])
        # A next link to another host: never followed with the token.
        link = '<https://evil.example.com/api/v1/users?after=x>; rel="next"'
        return httpx.Response(
            200, json=[{"id": "00u1", "status": "ACTIVE"}], headers={"Link": link}
        )

    with httpx.Client(transport=httpx.MockTransport(answer)) as client:
        idp = OktaIdp(
            base_url="https://acme.okta.com", token="t", client=client, limiter=TokenBucket(1e5)
        )
        assert [(g.name, g.members) for g in idp.list_groups()] == [("Engineering", ("00u1",))]
        with pytest.raises(PermanentError, match="outside the org URL"):
            list(idp.iter_users())
