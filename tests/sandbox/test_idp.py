"""The sandbox IdP: RFC 7643/7644 conformance (scim2-tester), bearer auth, persistence, and the
provisioning push of mapped groups into the org."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from scim2_client import BaseSyncSCIMClient
from scim2_client.client import RawResponse
from scim2_tester import Status, check_server
from sqlalchemy import select

from sandbox.app import create_app
from sandbox.idp import ensure_idp_group, ensure_idp_user, idp_user_active, sync_all
from sandbox.org.models import GroupMember, PermissionGroup, Project
from sandbox.org.service import OrgService
from sandbox.world import World
from tests.conftest import IDP, ORG_SCIM, LiveSandbox

BASE = "/idp/scim/v2"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
VIEWERS_PROD = "amplitude-project-viewers-production"
FAILED = {Status.ERROR, Status.CRITICAL, Status.DEVIATION}


class HttpxSCIMClient(BaseSyncSCIMClient):
    """scim2-client over the httpx we ship (its own httpx engine wants the httpx2 package)."""

    def __init__(self, client: httpx.Client, **kw: Any) -> None:
        super().__init__(**kw)
        self.client = client

    def _stays_under_base_url(self, endpoint: str) -> bool:
        url, base = self.client.build_request("GET", endpoint).url, self.client.base_url
        return (url.scheme, url.host, url.port) == (base.scheme, base.host, base.port) and (
            url.raw_path.startswith(base.raw_path)
        )

    def _parse_json(self, response: RawResponse) -> Any:
        return cast(httpx.Response, response).json()

    def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        return self.client.request(method, url, **kw)


# ---------------------------------------------------------------------------- helpers
def scim(client: TestClient, method: str, path: str, body: Any = None, **kw: Any) -> Any:
    return client.request(
        method, BASE + path, headers={**IDP, **kw.pop("headers", {})}, json=body, **kw
    )


def new_user(
    client: TestClient, email: str, given: str = "Ada", family: str = "Lovelace", **extra: Any
) -> str:
    body = {
        "schemas": [USER_SCHEMA],
        "userName": email,
        "name": {"givenName": given, "familyName": family},
        **extra,
    }
    r = scim(client, "POST", "/Users", body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def new_group(client: TestClient, name: str, members: tuple[str, ...] = ()) -> str:
    body = {
        "schemas": [GROUP_SCHEMA],
        "displayName": name,
        "members": [{"value": m} for m in members],
    }
    r = scim(client, "POST", "/Groups", body)
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def patch(client: TestClient, path: str, *ops: dict[str, Any]) -> Any:
    r = scim(client, "PATCH", path, {"schemas": [PATCH_SCHEMA], "Operations": list(ops)})
    assert r.status_code in (200, 204), r.text
    return r


def add_member(client: TestClient, gid: str, uid: str) -> None:
    patch(client, f"/Groups/{gid}", {"op": "add", "path": "members", "value": [{"value": uid}]})


def remove_member(client: TestClient, gid: str, uid: str) -> None:
    patch(client, f"/Groups/{gid}", {"op": "remove", "path": f'members[value eq "{uid}"]'})


def set_active(client: TestClient, uid: str, active: bool) -> None:
    patch(client, f"/Users/{uid}", {"op": "replace", "path": "active", "value": active})


def org_state(world: World, email: str) -> dict[str, Any] | None:
    """What the org says about a person (None: not a member)."""
    with world.db.session() as s:
        org = OrgService(s, world.clock.now())
        m = org.find_member(email)
        if m is None:
            return None
        groups = s.scalars(
            select(PermissionGroup.display_name)
            .join(GroupMember, GroupMember.group_id == PermissionGroup.id)
            .where(GroupMember.email == m.email)
        ).all()
        return {
            "org_role": m.org_role,
            "idp_managed": m.idp_managed,
            "status": m.status,
            "groups": sorted(groups),
            "projects": {r["project"]: r["role"] for r in org.effective_roles(m.email)},
        }


def org_scim_total(client: TestClient, email: str) -> int:
    r = client.get("/scim/1/Users", params={"filter": f'userName eq "{email}"'}, headers=ORG_SCIM)
    assert r.status_code == 200, r.text
    return int(r.json()["totalResults"])


@pytest.fixture
def world(empty_app: FastAPI) -> World:
    """The empty world with the three projects the mapped groups name."""
    w: World = empty_app.state.world
    with w.db.session() as s:
        for name in ("Production", "Staging", "Development"):
            s.add(Project(name=name, environment=name.lower()))
    return w


# ---------------------------------------------------------------------------- conformance
@pytest.mark.slow
def test_scim2_tester_full_check_set_passes(live: LiveSandbox) -> None:
    with httpx.Client(base_url=f"{live.url}{BASE}", headers=IDP, timeout=30) as http:
        results = check_server(HttpxSCIMClient(http))
    statuses = Counter(r.status.name for r in results)
    failed = [(r.resource_type, r.title, r.reason) for r in results if r.status in FAILED]
    print(f"scim2-tester: {len(results)} checks, {dict(statuses)}")
    assert failed == []
    assert len(results) >= 100  # discovery, CRUD, PATCH and query checks for Users and Groups
    assert statuses["SUCCESS"] == len(results)


@pytest.mark.slow
def test_concurrent_patches_of_one_group_all_apply(live: LiveSandbox) -> None:
    """No 412 for clients that sent no If-Match, however many change a group at once."""
    with httpx.Client(base_url=f"{live.url}{BASE}", headers=IDP, timeout=30) as http:
        uids = [
            http.post("/Users", json={"schemas": [USER_SCHEMA], "userName": f"u{i}@x.io"}).json()[
                "id"
            ]
            for i in range(20)
        ]
        gid = http.post("/Groups", json={"schemas": [GROUP_SCHEMA], "displayName": "g"}).json()[
            "id"
        ]

        def add(uid: str) -> int:
            op = {"op": "add", "path": "members", "value": [{"value": uid}]}
            body = {"schemas": [PATCH_SCHEMA], "Operations": [op]}
            return http.patch(f"/Groups/{gid}", json=body).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = set(pool.map(add, uids))
        assert statuses <= {200, 204}
        assert len(http.get(f"/Groups/{gid}").json()["members"]) == 20


@pytest.mark.parametrize("path", ["/Users", "/Groups", "/Schemas", "/ServiceProviderConfig"])
@pytest.mark.parametrize("auth", [None, "Bearer wrong-token", "Basic c2FuZGJveC1pZHAtdG9rZW4="])
def test_requests_without_the_token_get_401(
    client: TestClient, path: str, auth: str | None
) -> None:
    r = client.get(BASE + path, headers={"Authorization": auth} if auth else {})
    assert r.status_code == 401
    assert r.json()["schemas"] == [ERROR_SCHEMA]
    assert r.headers["www-authenticate"].lower().startswith("bearer")
    r = client.post(
        BASE + "/Users",
        json={"schemas": [USER_SCHEMA], "userName": "x@y.z"},
        headers={"Authorization": auth} if auth else {},
    )
    assert r.status_code == 401
    assert scim(client, "GET", "/Users").json()["totalResults"] == 0  # nothing was created


def test_paths_outside_scim_answer_a_scim_404(client: TestClient) -> None:
    r = client.get("/idp/whatever", headers=IDP)
    assert r.status_code == 404
    assert r.json()["schemas"] == [ERROR_SCHEMA]


# ---------------------------------------------------------------------------- SCIM behaviour
def test_filters_pagination_sorting_and_groups(client: TestClient) -> None:
    ids = {
        n: new_user(
            client,
            f"{n}@example.com",
            given=n.title(),
            emails=[{"value": f"{n}@mail.example.com", "primary": True}],
        )
        for n in ("eve", "bob", "dan", "ann", "cat")
    }
    r = scim(client, "GET", "/Users", params={"filter": 'userName eq "BOB@Example.COM"'})
    assert [u["id"] for u in r.json()["Resources"]] == [ids["bob"]]  # userName is caseExact=false
    r = scim(
        client, "GET", "/Users", params={"filter": 'emails.value sw "d" or name.givenName eq "Ann"'}
    )
    assert sorted(u["userName"] for u in r.json()["Resources"]) == [
        "ann@example.com",
        "dan@example.com",
    ]
    r = scim(client, "GET", "/Users", params={"sortBy": "userName", "startIndex": 2, "count": 2})
    body = r.json()
    assert (body["totalResults"], body["startIndex"], body["itemsPerPage"]) == (5, 2, 2)
    assert [u["userName"][:3] for u in body["Resources"]] == ["bob", "cat"]
    r = scim(client, "GET", "/Users", params={"startIndex": 5, "count": 10})
    assert (r.json()["totalResults"], r.json()["itemsPerPage"]) == (5, 1)

    gid = new_group(client, "engineering", (ids["ann"], ids["bob"]))
    user = scim(client, "GET", f"/Users/{ids['ann']}").json()
    assert [(g["value"], g["display"]) for g in user["groups"]] == [(gid, "engineering")]
    assert user["groups"][0]["$ref"].endswith(f"{BASE}/Groups/{gid}")
    r = scim(client, "GET", "/Groups", params={"filter": f'members.value eq "{ids["bob"]}"'})
    assert [g["id"] for g in r.json()["Resources"]] == [gid]

    # A deleted user leaves its groups; the group's version moves on.
    v1 = scim(client, "GET", f"/Groups/{gid}").json()["meta"]["version"]
    assert scim(client, "DELETE", f"/Users/{ids['bob']}").status_code == 204
    group = scim(client, "GET", f"/Groups/{gid}").json()
    assert [m["value"] for m in group["members"]] == [ids["ann"]]
    assert group["meta"]["version"] != v1


def test_uniqueness_members_and_preconditions(client: TestClient) -> None:
    uid = new_user(client, "ada@example.com")
    r = scim(client, "POST", "/Users", {"schemas": [USER_SCHEMA], "userName": "ADA@example.com"})
    assert (r.status_code, r.json().get("scimType")) == (409, "uniqueness")
    new_group(client, "Finance")
    r = scim(client, "POST", "/Groups", {"schemas": [GROUP_SCHEMA], "displayName": "finance"})
    assert r.status_code == 409  # group names are what the org maps: unique, as in Okta
    r = scim(
        client,
        "POST",
        "/Groups",
        {"schemas": [GROUP_SCHEMA], "displayName": "x", "members": [{"value": "no-such-id"}]},
    )
    assert r.status_code == 400
    r = scim(
        client,
        "PUT",
        f"/Users/{uid}",
        {"schemas": [USER_SCHEMA], "userName": "a@b.c"},
        headers={"If-Match": 'W/"999"'},
    )
    assert r.status_code == 412


def test_state_survives_a_restart_and_reset_wipes_it(tmp_path: Path) -> None:
    db = tmp_path / "sandbox.db"
    with TestClient(create_app(db, seed="empty")) as c:
        uid = new_user(c, "ada@example.com")
        gid = new_group(c, "okta-everyone", (uid,))
    with TestClient(create_app(db, seed="empty")) as c:
        assert scim(c, "GET", f"/Users/{uid}").json()["groups"][0]["value"] == gid
        assert c.post("/_sandbox/reset").status_code == 200
        assert scim(c, "GET", "/Users").json()["totalResults"] == 0
        assert scim(c, "GET", f"/Groups/{gid}").status_code == 404


# ---------------------------------------------------------------------------- provisioning
def test_mapped_groups_provision_and_deprovision(client: TestClient, world: World) -> None:
    email = "ada@example.com"
    uid = new_user(client, email)
    assert org_state(world, email) is None  # in no group: nothing to provision

    new_group(client, "okta-everyone", (uid,))
    assert org_state(world, email) is None  # an unmapped group changes nothing

    viewers = new_group(client, VIEWERS_PROD)
    add_member(client, viewers, uid)
    assert org_state(world, email) == {
        "org_role": "viewer",
        "idp_managed": True,
        "status": "pending",
        "groups": [VIEWERS_PROD],
        "projects": {"Production": "viewer"},
    }
    assert org_scim_total(client, email) == 1

    remove_member(client, viewers, uid)  # out of every mapped group → out of the org
    assert org_state(world, email) is None
    assert org_scim_total(client, email) == 0

    add_member(client, viewers, uid)
    assert org_state(world, email) is not None
    set_active(client, uid, False)  # deactivated → removed, and sign-in refused
    assert org_state(world, email) is None
    with world.db.session() as s:
        assert idp_user_active(s, email.upper()) is False
    assert client.post(f"/_sandbox/members/{email}/login").status_code == 403

    set_active(client, uid, True)
    assert org_state(world, email) is not None
    assert client.post(f"/_sandbox/members/{email}/accept").status_code == 200
    assert client.post(f"/_sandbox/members/{email}/login").status_code == 200

    # Removed by hand in the org while the IdP still assigns the app: the sync puts them back.
    with world.db.session() as s:
        OrgService(s, world.clock.now()).remove_member(email)
    assert org_state(world, email) is None
    r = client.post("/_sandbox/idp/sync")
    assert r.status_code == 200
    assert r.json()["counts"] == {"provisioned": 1}
    assert org_state(world, email) is not None

    # Org role: the highest mapped org group wins; project groups add up.
    new_group(client, "amplitude-org-managers", (uid,))
    assert org_state(world, email)["org_role"] == "manager"  # type: ignore[index]
    admins = new_group(client, "amplitude-org-admins", (uid,))
    staging = new_group(client, "amplitude-project-members-staging", (uid,))
    state = org_state(world, email)
    assert state is not None
    assert state["org_role"] == "admin"
    assert state["projects"] == {"Production": "viewer", "Staging": "member"}
    remove_member(client, admins, uid)
    assert org_state(world, email)["org_role"] == "manager"  # type: ignore[index]
    assert scim(client, "DELETE", f"/Groups/{staging}").status_code == 204  # pushes its members
    assert org_state(world, email)["projects"] == {"Production": "viewer"}  # type: ignore[index]

    assert scim(client, "DELETE", f"/Users/{uid}").status_code == 204  # deleted → removed
    assert org_state(world, email) is None
    with world.db.session() as s:
        assert idp_user_active(s, email) is None
    assert client.get("/_sandbox/idp/errors").json()["count"] == 0


def test_sync_deprovisions_members_the_idp_no_longer_knows(
    client: TestClient, world: World
) -> None:
    with world.db.session() as s:
        org = OrgService(s, world.clock.now())
        org.invite("ghost@example.com", idp_managed=True)
        org.invite("manual@example.com")  # invited by hand: not the IdP's to remove
    r = client.post("/_sandbox/idp/sync").json()
    assert r["counts"] == {"deprovisioned": 1}
    assert r["results"][0]["email"] == "ghost@example.com"
    assert org_state(world, "ghost@example.com") is None
    assert org_state(world, "manual@example.com") is not None


def test_an_email_change_moves_the_org_membership(client: TestClient, world: World) -> None:
    uid = new_user(client, "ada@old.example.com")
    new_group(client, VIEWERS_PROD, (uid,))
    patch(
        client,
        f"/Users/{uid}",
        {"op": "replace", "path": "userName", "value": "ada@new.example.com"},
    )
    assert org_state(world, "ada@old.example.com") is None
    assert org_state(world, "ada@new.example.com") is not None


def test_refused_pushes_are_recorded_not_raised(client: TestClient, world: World) -> None:
    email = "boss@example.com"
    uid = new_user(client, email)
    admins = new_group(client, "amplitude-org-admins", (uid,))
    assert client.post(f"/_sandbox/members/{email}/accept").status_code == 200  # sole Admin

    r = scim(
        client,
        "PATCH",
        f"/Groups/{admins}",
        {
            "schemas": [PATCH_SCHEMA],
            "Operations": [{"op": "remove", "path": f'members[value eq "{uid}"]'}],
        },
    )
    assert r.status_code in (200, 204)  # the IdP change stands…
    assert scim(client, "GET", f"/Groups/{admins}").json().get("members") is None
    assert org_state(world, email)["org_role"] == "admin"  # type: ignore[index]  # …the org refused
    errors = client.get("/_sandbox/idp/errors").json()
    assert errors["count"] == 1
    err = errors["errors"][0]
    assert (err["email"], err["action"]) == (email, "error")
    assert "sole Admin" in err["errors"][0]
    assert err["trigger"].startswith("SCIM update Group")

    set_active(client, uid, False)
    assert org_state(world, email) is not None
    since = err["id"]
    assert client.get("/_sandbox/idp/errors", params={"since": since}).json()["count"] == 1


def test_python_helpers_are_idempotent_and_push(world: World) -> None:
    now = world.clock.now()
    with world.db.session() as s:
        uid = ensure_idp_user(
            s, now, email="Raj@Example.com", given_name="Raj", family_name="Admin"
        )
        assert (
            ensure_idp_user(s, now, email="raj@example.com", given_name="Raj", family_name="Admin")
            == uid
        )
        gid = ensure_idp_group(s, now, "amplitude-project-admins-staging", ["raj@example.com"])
        assert ensure_idp_group(s, now, "amplitude-project-admins-staging", [uid]) == gid
        assert idp_user_active(s, "raj@example.com") is True
        assert idp_user_active(s, "nobody@example.com") is None
        with pytest.raises(ValueError):
            ensure_idp_group(s, now, "amplitude-org-admins", ["nobody@example.com"])
    assert org_state(world, "raj@example.com") == {
        "org_role": "viewer",
        "idp_managed": True,
        "status": "pending",
        "groups": ["amplitude-project-admins-staging"],
        "projects": {"Staging": "admin"},
    }

    with world.db.session() as s:
        ensure_idp_user(
            s, now, email="raj@example.com", given_name="Raj", family_name="Admin", active=False
        )
        assert idp_user_active(s, "raj@example.com") is False
    assert org_state(world, "raj@example.com") is None
    with world.db.session() as s:
        assert [r.action for r in sync_all(s, now)] == ["noop"]
