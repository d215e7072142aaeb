"""The org's SCIM API (/scim/1), faithful to Amplitude's, including its quirks."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.sandbox.orgkit import ORG_ADMIN, ORG_SCIM, add_project, join, member

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def new_user(email: str, given: str = "Ada", family: str = "Lovelace") -> dict[str, object]:
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": email,
        "name": {"givenName": given, "familyName": family},
        "active": True,
    }


def patch(*ops: dict[str, object]) -> dict[str, object]:
    return {"schemas": [PATCH_SCHEMA], "Operations": list(ops)}


def scim_users(client: TestClient, **params: Any) -> dict[str, Any]:
    r = client.get("/scim/1/Users", params=params, headers=ORG_SCIM)
    assert r.status_code == 200, r.text
    return r.json()


def assert_scim_error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["schemas"] == [ERROR_SCHEMA]
    assert body["status"] == str(status)
    assert body["detail"]
    return body


def invitation_states(client: TestClient, email: str) -> list[str]:
    r = client.get("/admin/v1/invitations", headers=ORG_ADMIN)
    return [i["state"] for i in r.json()["invitations"] if i["email"] == email]


# ---------------------------------------------------------------------------- auth
def test_scim_refuses_missing_or_wrong_key_in_scim_error_shape(client: TestClient) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "sandbox-scim-key"},
        ORG_ADMIN,  # the admin token is not the SCIM key
    ):
        assert_scim_error(client.get("/scim/1/Users", headers=headers), 401)
        r = client.post("/scim/1/Users", json=new_user("eve@x.com"), headers=headers)
        assert_scim_error(r, 401)
    assert scim_users(client)["totalResults"] == 0  # nothing was invited


# ---------------------------------------------------------------------------- create
def test_post_user_answers_201_echoing_the_body_and_invites_a_pending_but_active_user(
    client: TestClient,
) -> None:
    body = {**new_user("Ada@Example.com"), "externalId": "okta-123", "title": "Analyst"}
    r = client.post("/scim/1/Users", json=body, headers=ORG_SCIM)
    assert r.status_code == 201
    assert r.json() == body  # Amplitude echoes the request, not the stored resource
    got = client.get("/scim/1/Users/ada@example.com", headers=ORG_SCIM).json()
    assert got["active"] is True  # a pending invitee is reported active
    assert got["userName"] == "ada@example.com"
    detail = member(client, "ada@example.com")
    assert detail["status"] == "pending"
    assert detail["org_role"] == "viewer"  # Viewer by default
    assert detail["invitation"]["state"] == "pending"


def test_post_duplicate_user_is_409_even_with_other_case(client: TestClient) -> None:
    assert (
        client.post("/scim/1/Users", json=new_user("bo@x.com"), headers=ORG_SCIM).status_code == 201
    )
    assert_scim_error(
        client.post("/scim/1/Users", json=new_user("BO@x.com"), headers=ORG_SCIM), 409
    )
    assert scim_users(client)["totalResults"] == 1


def test_post_user_with_bad_body_is_400_and_creates_nothing(client: TestClient) -> None:
    for body in ({"userName": "not-an-email"}, {"name": {"givenName": "X"}}, {"userName": 42}):
        assert_scim_error(client.post("/scim/1/Users", json=body, headers=ORG_SCIM), 400)
    assert_scim_error(client.post("/scim/1/Users", json=["a@x.com"], headers=ORG_SCIM), 400)
    assert scim_users(client)["totalResults"] == 0


def test_post_user_with_malformed_json_is_400(client: TestClient) -> None:
    r = client.post(
        "/scim/1/Users",
        content=b'{"userName": "x@x.com",',
        headers={**ORG_SCIM, "Content-Type": "application/scim+json"},
    )
    assert "JSON" in assert_scim_error(r, 400)["detail"]
    assert scim_users(client)["totalResults"] == 0


# ---------------------------------------------------------------------------- list
def test_list_pages_with_start_index_and_items_per_page(client: TestClient) -> None:
    for i in range(5):
        client.post("/scim/1/Users", json=new_user(f"u{i}@x.com"), headers=ORG_SCIM)
    page = scim_users(client, startIndex=2, itemsPerPage=2)
    assert page["totalResults"] == 5
    assert page["startIndex"] == 2
    assert page["itemsPerPage"] == 2
    assert [u["userName"] for u in page["Resources"]] == ["u1@x.com", "u2@x.com"]
    last = scim_users(client, startIndex=5, itemsPerPage=100)
    assert [u["userName"] for u in last["Resources"]] == ["u4@x.com"]
    assert scim_users(client, startIndex=9)["Resources"] == []


def test_list_page_outside_the_limits_is_400(client: TestClient) -> None:
    for params in ({"itemsPerPage": 101}, {"itemsPerPage": -1}, {"startIndex": 0}):
        r = client.get("/scim/1/Users", params=params, headers=ORG_SCIM)
        assert_scim_error(r, 400)
    assert scim_users(client, itemsPerPage=100)["totalResults"] == 0


def test_list_filters_only_by_user_name_eq(client: TestClient) -> None:
    for e in ("ann@x.com", "annie@x.com"):
        client.post("/scim/1/Users", json=new_user(e), headers=ORG_SCIM)
    found = scim_users(client, filter='userName eq "ANN@x.com"')
    assert found["totalResults"] == 1
    assert found["Resources"][0]["userName"] == "ann@x.com"
    assert scim_users(client, filter='userName eq "nobody@x.com"')["totalResults"] == 0
    for f in ('userName sw "ann"', 'emails.value eq "ann@x.com"', "userName eq ann@x.com", ""):
        r = client.get("/scim/1/Users", params={"filter": f}, headers=ORG_SCIM)
        assert "userName eq" in assert_scim_error(r, 400)["detail"]


def test_get_unknown_user_is_404_in_scim_shape(client: TestClient) -> None:
    assert_scim_error(client.get("/scim/1/Users/ghost@x.com", headers=ORG_SCIM), 404)


# ---------------------------------------------------------------------------- update
def test_user_name_cannot_change_through_put(client: TestClient) -> None:
    join(client, "old@x.com")
    r = client.put("/scim/1/Users/old@x.com", json=new_user("new@x.com"), headers=ORG_SCIM)
    assert "cannot be changed" in assert_scim_error(r, 400)["detail"]
    assert member(client, "old@x.com")["status"] == "joined"
    assert_scim_error(client.get("/scim/1/Users/new@x.com", headers=ORG_SCIM), 404)


def test_user_name_cannot_change_through_patch(client: TestClient) -> None:
    join(client, "old@x.com")
    r = client.patch(
        "/scim/1/Users/old@x.com",
        json=patch({"op": "replace", "path": "userName", "value": "new@x.com"}),
        headers=ORG_SCIM,
    )
    assert_scim_error(r, 400)
    r = client.patch(
        "/scim/1/Users/old@x.com",
        json=patch({"op": "replace", "value": {"userName": "new@x.com"}}),
        headers=ORG_SCIM,
    )
    assert_scim_error(r, 400)
    assert member(client, "old@x.com")["email"] == "old@x.com"


def test_put_updates_names_and_keeps_the_member(client: TestClient) -> None:
    join(client, "ada@x.com")
    r = client.put(
        "/scim/1/Users/ada@x.com", json=new_user("ada@x.com", "Augusta", "King"), headers=ORG_SCIM
    )
    assert r.status_code == 200
    assert r.json()["name"] == {"givenName": "Augusta", "familyName": "King"}
    m = member(client, "ada@x.com")
    assert (m["given_name"], m["family_name"], m["status"]) == ("Augusta", "King", "joined")


def test_patch_names_keeps_the_other_name(client: TestClient) -> None:
    join(client, "ada@x.com")
    client.put("/scim/1/Users/ada@x.com", json=new_user("ada@x.com", "Ada", "L"), headers=ORG_SCIM)
    r = client.patch(
        "/scim/1/Users/ada@x.com",
        json=patch({"op": "replace", "path": "name.familyName", "value": "Lovelace"}),
        headers=ORG_SCIM,
    )
    assert r.status_code == 200
    assert r.json()["name"] == {"givenName": "Ada", "familyName": "Lovelace"}


def test_put_active_false_removes_a_joined_member(client: TestClient) -> None:
    join(client, "leaver@x.com")
    body = {**new_user("leaver@x.com"), "active": False}
    assert client.put("/scim/1/Users/leaver@x.com", json=body, headers=ORG_SCIM).status_code == 204
    assert_scim_error(client.get("/scim/1/Users/leaver@x.com", headers=ORG_SCIM), 404)
    r = client.get("/admin/v1/members/leaver@x.com", headers=ORG_ADMIN)
    assert r.status_code == 404


@pytest.mark.parametrize(
    "op",
    [
        {"op": "replace", "path": "active", "value": False},
        {"op": "replace", "value": {"active": False}},
        {"op": "Replace", "path": "active", "value": "False"},  # Azure AD sends strings
    ],
    ids=["path", "value-object", "string"],
)
def test_patch_active_false_revokes_a_pending_invite(
    client: TestClient, op: dict[str, object]
) -> None:
    client.post("/scim/1/Users", json=new_user("maybe@x.com"), headers=ORG_SCIM)
    r = client.patch("/scim/1/Users/maybe@x.com", json=patch(op), headers=ORG_SCIM)
    assert r.status_code == 204
    assert scim_users(client)["totalResults"] == 0
    assert invitation_states(client, "maybe@x.com") == ["revoked"]


def test_patch_active_with_a_non_boolean_is_400_and_removes_nobody(client: TestClient) -> None:
    join(client, "stay@x.com")
    for value in ("nope", 0, None, "yes"):
        r = client.patch(
            "/scim/1/Users/stay@x.com",
            json=patch({"op": "replace", "path": "active", "value": value}),
            headers=ORG_SCIM,
        )
        assert_scim_error(r, 400)
        assert member(client, "stay@x.com")["status"] == "joined", value


def test_put_active_with_a_non_boolean_is_400(client: TestClient) -> None:
    join(client, "stay@x.com")
    body = {**new_user("stay@x.com"), "active": "maybe"}
    assert_scim_error(client.put("/scim/1/Users/stay@x.com", json=body, headers=ORG_SCIM), 400)
    assert member(client, "stay@x.com")["status"] == "joined"


def test_patch_user_with_unsupported_operations_is_400(client: TestClient) -> None:
    join(client, "stay@x.com")
    for body in (
        {"Operations": []},
        {"Operations": "replace"},
        {"Operations": [{"op": "remove", "path": "name.givenName"}]},
        {"Operations": [{"op": "replace", "path": "emails", "value": []}]},
    ):
        r = client.patch("/scim/1/Users/stay@x.com", json=body, headers=ORG_SCIM)
        assert_scim_error(r, 400)
    assert member(client, "stay@x.com")["status"] == "joined"


def test_delete_user_is_204_then_404(client: TestClient) -> None:
    join(client, "gone@x.com")
    assert client.delete("/scim/1/Users/gone@x.com", headers=ORG_SCIM).status_code == 204
    assert_scim_error(client.delete("/scim/1/Users/gone@x.com", headers=ORG_SCIM), 404)
    assert scim_users(client)["totalResults"] == 0


def test_scim_cannot_remove_the_sole_org_admin(client: TestClient) -> None:
    join(client, "boss@x.com", org_role="admin")
    r = client.delete("/scim/1/Users/boss@x.com", headers=ORG_SCIM)
    assert "boss@x.com is the sole Admin" in assert_scim_error(r, 409)["detail"]
    body = {**new_user("boss@x.com"), "active": False}
    assert_scim_error(client.put("/scim/1/Users/boss@x.com", json=body, headers=ORG_SCIM), 409)
    assert member(client, "boss@x.com")["org_role"] == "admin"


# ---------------------------------------------------------------------------- groups
def test_post_group_answers_200_not_201_with_its_members(client: TestClient) -> None:
    join(client, "a@x.com")
    r = client.post(
        "/scim/1/Groups",
        json={"displayName": "Analysts", "members": [{"value": "a@x.com"}]},
        headers=ORG_SCIM,
    )
    assert r.status_code == 200
    g = r.json()
    assert g["displayName"] == "Analysts"
    assert [m["value"] for m in g["members"]] == ["a@x.com"]
    got = client.get(f"/scim/1/Groups/{g['id']}", headers=ORG_SCIM).json()
    assert got == g
    listed = client.get("/scim/1/Groups", headers=ORG_SCIM).json()
    assert listed["totalResults"] == 1
    found = client.get(
        "/scim/1/Groups", params={"filter": 'displayName eq "Analysts"'}, headers=ORG_SCIM
    ).json()
    assert found["Resources"][0]["id"] == g["id"]


def test_post_duplicate_group_is_409(client: TestClient) -> None:
    client.post("/scim/1/Groups", json={"displayName": "G"}, headers=ORG_SCIM)
    assert_scim_error(
        client.post("/scim/1/Groups", json={"displayName": "G"}, headers=ORG_SCIM), 409
    )


def test_post_group_with_an_unknown_member_creates_nothing(client: TestClient) -> None:
    r = client.post(
        "/scim/1/Groups",
        json={"displayName": "G", "members": [{"value": "ghost@x.com"}]},
        headers=ORG_SCIM,
    )
    assert_scim_error(r, 404)
    assert client.get("/scim/1/Groups", headers=ORG_SCIM).json()["totalResults"] == 0


def test_patch_group_adds_and_removes_members(client: TestClient) -> None:
    for e in ("a@x.com", "b@x.com", "c@x.com"):
        join(client, e)
    gid = client.post("/scim/1/Groups", json={"displayName": "G"}, headers=ORG_SCIM).json()["id"]
    url = f"/scim/1/Groups/{gid}"
    r = client.patch(
        url,
        json=patch(
            {"op": "add", "path": "members", "value": [{"value": "a@x.com"}, {"value": "B@x.com"}]}
        ),
        headers=ORG_SCIM,
    )
    assert r.status_code == 200
    assert [m["value"] for m in r.json()["members"]] == ["a@x.com", "b@x.com"]
    r = client.patch(
        url,
        json=patch(
            {"op": "remove", "path": 'members[value eq "a@x.com"]'},
            {"op": "add", "path": "members", "value": [{"value": "c@x.com"}]},
        ),
        headers=ORG_SCIM,
    )
    assert [m["value"] for m in r.json()["members"]] == ["b@x.com", "c@x.com"]
    r = client.patch(
        url,
        json=patch({"op": "remove", "path": "members", "value": [{"value": "b@x.com"}]}),
        headers=ORG_SCIM,
    )
    assert [m["value"] for m in client.get(url, headers=ORG_SCIM).json()["members"]] == ["c@x.com"]
    # removing someone from a group does not remove them from the org
    assert member(client, "a@x.com")["status"] == "joined"


def test_patch_group_with_bad_members_is_400_and_changes_nothing(client: TestClient) -> None:
    join(client, "a@x.com")
    gid = client.post("/scim/1/Groups", json={"displayName": "G"}, headers=ORG_SCIM).json()["id"]
    r = client.patch(
        f"/scim/1/Groups/{gid}",
        json=patch(
            {"op": "add", "path": "members", "value": [{"value": "a@x.com"}]},
            {"op": "add", "path": "members", "value": "b@x.com"},
        ),
        headers=ORG_SCIM,
    )
    assert_scim_error(r, 400)
    assert client.get(f"/scim/1/Groups/{gid}", headers=ORG_SCIM).json()["members"] == []


def test_rename_group_onto_an_existing_name_is_409_not_500(client: TestClient) -> None:
    client.post("/scim/1/Groups", json={"displayName": "Taken"}, headers=ORG_SCIM)
    gid = client.post("/scim/1/Groups", json={"displayName": "Mine"}, headers=ORG_SCIM).json()["id"]
    r = client.patch(
        f"/scim/1/Groups/{gid}",
        json=patch({"op": "replace", "path": "displayName", "value": "Taken"}),
        headers=ORG_SCIM,
    )
    assert_scim_error(r, 409)
    assert client.get(f"/scim/1/Groups/{gid}", headers=ORG_SCIM).json()["displayName"] == "Mine"
    r = client.patch(
        f"/scim/1/Groups/{gid}",
        json=patch({"op": "replace", "path": "displayName", "value": "Renamed"}),
        headers=ORG_SCIM,
    )
    assert r.json()["displayName"] == "Renamed"


def test_unknown_group_is_404(client: TestClient) -> None:
    assert_scim_error(client.get("/scim/1/Groups/999", headers=ORG_SCIM), 404)
    assert_scim_error(client.get("/scim/1/Groups/abc", headers=ORG_SCIM), 404)
    assert_scim_error(
        client.patch(
            "/scim/1/Groups/999",
            json=patch({"op": "add", "path": "members", "value": []}),
            headers=ORG_SCIM,
        ),
        404,
    )


def test_delete_group_keeps_its_members_in_the_org(client: TestClient, empty_app: FastAPI) -> None:
    add_project(empty_app, "Prod")
    join(client, "a@x.com", projects={"Prod": "viewer"})
    r = client.post(
        "/admin/v1/groups",
        json={"display_name": "Mgrs", "projects": {"Prod": "manager"}, "members": ["a@x.com"]},
        headers=ORG_ADMIN,
    )
    gid = r.json()["id"]
    assert member(client, "a@x.com")["projects"][0]["role"] == "manager"
    assert client.delete(f"/scim/1/Groups/{gid}", headers=ORG_SCIM).status_code == 204
    assert_scim_error(client.get(f"/scim/1/Groups/{gid}", headers=ORG_SCIM), 404)
    m = member(client, "a@x.com")
    assert m["status"] == "joined"
    assert m["projects"][0]["role"] == "viewer"  # the individual grant stays
