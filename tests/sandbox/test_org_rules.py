"""The product rules of the org backend (seeds 001, 002, 004), each attacked from every way in:
sole Admins, transfers, unassigned content, and the effective-role union.
"""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.sandbox.orgkit import (
    ORG_ADMIN,
    ORG_SCIM,
    add_asset,
    add_project,
    advance_days,
    as_user,
    join,
    member,
)


@pytest.fixture
def prod(empty_app: FastAPI) -> int:
    return add_project(empty_app, "Prod")


def project_admins(client: TestClient, name: str) -> list[str]:
    return client.get(f"/admin/v1/projects/{name}", headers=ORG_ADMIN).json()["admins"]


def role_in(client: TestClient, email: str, project: str) -> str | None:
    for p in member(client, email)["projects"]:
        if p["project"] == project:
            return p["role"]
    return None


def conflict(r: httpx.Response, *names: str) -> str:
    assert r.status_code == 409, r.text
    msg: str = r.json()["error"]
    assert "sole Admin" in msg
    for n in names:
        assert n in msg
    return msg


# ---------------------------------------------------------------------------- sole org admin
def test_sole_org_admin_cannot_be_removed_until_another_is_promoted(client: TestClient) -> None:
    join(client, "boss@x.com", org_role="admin")
    join(client, "next@x.com", org_role="manager")
    msg = conflict(client.delete("/admin/v1/members/boss@x.com", headers=ORG_ADMIN), "boss@x.com")
    assert "organization" in msg
    assert member(client, "boss@x.com")["sole_org_admin"] is True

    r = client.put(
        "/admin/v1/members/next@x.com/org-role",
        json={"role": "admin"},
        headers=as_user("boss@x.com"),
    )
    assert r.status_code == 200
    assert client.delete("/admin/v1/members/boss@x.com", headers=ORG_ADMIN).status_code == 200


def test_sole_org_admin_cannot_demote_themselves(client: TestClient) -> None:
    join(client, "boss@x.com", org_role="admin")
    for role in ("manager", "viewer"):
        r = client.put(
            "/admin/v1/members/boss@x.com/org-role",
            json={"role": role},
            headers=as_user("boss@x.com"),
        )
        conflict(r, "boss@x.com")
    assert member(client, "boss@x.com")["org_role"] == "admin"


def test_a_pending_admin_invite_does_not_count_as_another_admin(client: TestClient) -> None:
    join(client, "boss@x.com", org_role="admin")
    r = client.post(
        "/admin/v1/members", json={"email": "later@x.com", "org_role": "admin"}, headers=ORG_ADMIN
    )
    assert r.status_code == 201
    conflict(client.delete("/admin/v1/members/boss@x.com", headers=ORG_ADMIN), "boss@x.com")
    client.post("/_sandbox/members/later@x.com/accept")
    assert client.delete("/admin/v1/members/boss@x.com", headers=ORG_ADMIN).status_code == 200


# ---------------------------------------------------------------------------- sole project admin
@pytest.fixture
def pa(client: TestClient, prod: int) -> str:
    """An org with an org Admin, and pa@x.com: sole Admin of project Prod (individually)."""
    join(client, "boss@x.com", org_role="admin")
    join(client, "pa@x.com", org_role="member", projects={"Prod": "admin"})
    assert project_admins(client, "Prod") == ["pa@x.com"]
    return "pa@x.com"


def test_sole_project_admin_cannot_lose_the_individual_grant(client: TestClient, pa: str) -> None:
    r = client.delete(f"/admin/v1/members/{pa}/projects/Prod", headers=ORG_ADMIN)
    conflict(r, pa, "Prod")
    assert role_in(client, pa, "Prod") == "admin"


def test_sole_project_admin_cannot_be_demoted_in_the_project(client: TestClient, pa: str) -> None:
    r = client.put(
        f"/admin/v1/members/{pa}/projects/Prod", json={"role": "manager"}, headers=ORG_ADMIN
    )
    conflict(r, pa, "Prod")
    assert role_in(client, pa, "Prod") == "admin"
    assert member(client, pa)["sole_admin_of"] == ["Prod"]


def test_sole_project_admin_cannot_be_removed_from_the_org(client: TestClient, pa: str) -> None:
    conflict(client.delete(f"/admin/v1/members/{pa}", headers=ORG_ADMIN), pa, "Prod")
    r = client.delete(f"/scim/1/Users/{pa}", headers=ORG_SCIM)
    assert r.status_code == 409
    assert pa in r.json()["detail"]
    assert member(client, pa)["status"] == "joined"


def test_sole_project_admin_rule_holds_once_another_admin_is_promoted(
    client: TestClient, pa: str
) -> None:
    join(client, "deputy@x.com", projects={"Prod": "viewer"})
    r = client.put(
        "/admin/v1/members/deputy@x.com/projects/Prod",
        json={"role": "admin"},
        headers=as_user("boss@x.com"),
    )
    assert r.status_code == 200
    assert project_admins(client, "Prod") == ["deputy@x.com", pa]
    r = client.delete(f"/admin/v1/members/{pa}/projects/Prod", headers=ORG_ADMIN)
    assert r.status_code == 200
    assert client.delete(f"/admin/v1/members/{pa}", headers=ORG_ADMIN).status_code == 200
    # and now the deputy is the sole Admin in turn
    conflict(client.delete("/admin/v1/members/deputy@x.com", headers=ORG_ADMIN), "deputy@x.com")


@pytest.fixture
def group_admin(client: TestClient, prod: int) -> tuple[str, int]:
    """ga@x.com is sole Admin of Prod only through the permission group 'Prod admins'."""
    join(client, "boss@x.com", org_role="admin")
    join(client, "ga@x.com", org_role="member")
    r = client.post(
        "/admin/v1/groups",
        json={
            "display_name": "Prod admins",
            "projects": {"Prod": "admin"},
            "members": ["ga@x.com"],
        },
        headers=ORG_ADMIN,
    )
    assert r.status_code == 201, r.text
    assert project_admins(client, "Prod") == ["ga@x.com"]
    return "ga@x.com", r.json()["id"]


def test_sole_project_admin_cannot_be_removed_from_the_granting_group(
    client: TestClient, group_admin: tuple[str, int]
) -> None:
    email, gid = group_admin
    r = client.post(f"/admin/v1/groups/{gid}/members", json={"remove": [email]}, headers=ORG_ADMIN)
    conflict(r, email, "Prod")
    r = client.patch(
        f"/scim/1/Groups/{gid}",
        json={"Operations": [{"op": "remove", "path": f'members[value eq "{email}"]'}]},
        headers=ORG_SCIM,
    )
    assert r.status_code == 409
    assert email in r.json()["detail"]
    assert project_admins(client, "Prod") == [email]


def test_sole_project_admin_group_cannot_be_deleted_or_downgraded(
    client: TestClient, group_admin: tuple[str, int]
) -> None:
    email, gid = group_admin
    r = client.delete(f"/scim/1/Groups/{gid}", headers=ORG_SCIM)
    assert r.status_code == 409
    assert email in r.json()["detail"]
    r = client.put(
        f"/admin/v1/groups/{gid}/projects",
        json={"projects": {"Prod": "manager"}},
        headers=ORG_ADMIN,
    )
    conflict(r, email)
    r = client.put(
        f"/admin/v1/groups/{gid}/projects", json={"projects": {"Prod": None}}, headers=ORG_ADMIN
    )
    conflict(r, email)
    conflict(client.delete(f"/admin/v1/members/{email}", headers=ORG_ADMIN), email)
    assert client.get(f"/scim/1/Groups/{gid}", headers=ORG_SCIM).status_code == 200
    assert project_admins(client, "Prod") == [email]


def test_group_admin_can_go_once_an_individual_admin_exists(
    client: TestClient, group_admin: tuple[str, int]
) -> None:
    email, gid = group_admin
    join(client, "deputy@x.com", projects={"Prod": "admin"})
    assert client.delete(f"/scim/1/Groups/{gid}", headers=ORG_SCIM).status_code == 204
    assert project_admins(client, "Prod") == ["deputy@x.com"]
    assert member(client, email)["status"] == "joined"


# ---------------------------------------------------------------------------- transfers
@pytest.fixture
def owner_and_asset(client: TestClient, empty_app: FastAPI, prod: int) -> tuple[str, int]:
    join(client, "boss@x.com", org_role="admin")
    join(client, "owner@x.com", org_role="member", projects={"Prod": "member"})
    return "owner@x.com", add_asset(empty_app, "owner@x.com", prod, name="Revenue")


def transfer(client: TestClient, ids: list[int], to: str, **headers: str) -> httpx.Response:
    return client.post(
        "/admin/v1/assets/transfer", json={"asset_ids": ids, "to": to}, headers=ORG_ADMIN | headers
    )


def owner_of(client: TestClient, asset_id: int) -> str | None:
    return client.get(f"/admin/v1/assets/{asset_id}", headers=ORG_ADMIN).json()["owner"]


def test_transfer_receiver_must_have_joined(
    client: TestClient, owner_and_asset: tuple[str, int]
) -> None:
    owner, aid = owner_and_asset
    client.post("/admin/v1/members", json={"email": "new@x.com"}, headers=ORG_ADMIN)
    r = transfer(client, [aid], "new@x.com")
    assert r.status_code == 409
    assert "not a joined member" in r.json()["error"]
    r = transfer(client, [aid], "stranger@x.com")
    assert r.status_code == 409
    assert owner_of(client, aid) == owner


def test_transfer_receiver_must_have_logged_in_within_30_days(
    client: TestClient, owner_and_asset: tuple[str, int]
) -> None:
    owner, aid = owner_and_asset
    join(client, "rx@x.com", projects={"Prod": "viewer"})
    advance_days(client, 29)
    client.post("/_sandbox/members/owner@x.com/login")
    assert client.get("/admin/v1/assets", headers=ORG_ADMIN).json()["total"] == 1
    advance_days(client, 2)  # rx last logged in 31 days ago
    r = transfer(client, [aid], "rx@x.com")
    assert r.status_code == 409
    assert "30 days" in r.json()["error"]
    assert owner_of(client, aid) == owner
    assert client.get("/admin/v1/transfers", headers=ORG_ADMIN).json()["transfers"] == []

    assert client.post("/_sandbox/members/rx@x.com/login").status_code == 200
    r = transfer(client, [aid], "rx@x.com")
    assert r.status_code == 200, r.text
    assert r.json()["transferred"] == [aid]
    assert owner_of(client, aid) == "rx@x.com"


def test_transfer_receiver_at_exactly_29_days_is_accepted(
    client: TestClient, owner_and_asset: tuple[str, int]
) -> None:
    _owner, aid = owner_and_asset
    join(client, "rx@x.com", projects={"Prod": "viewer"})
    advance_days(client, 29)
    assert transfer(client, [aid], "rx@x.com").status_code == 200


def test_transfers_are_listed_and_cannot_be_undone(
    client: TestClient, owner_and_asset: tuple[str, int]
) -> None:
    owner, aid = owner_and_asset
    join(client, "rx@x.com", projects={"Prod": "viewer"})
    r = transfer(client, [aid], "rx@x.com", **{"X-Acting-User": "boss@x.com"})
    assert r.status_code == 200
    history = client.get("/admin/v1/transfers", headers=ORG_ADMIN).json()["transfers"]
    assert len(history) == 1
    t = history[0]
    assert (t["asset_id"], t["from"], t["to"], t["actor"]) == (aid, owner, "rx@x.com", "boss@x.com")
    for method, path in [
        ("DELETE", f"/admin/v1/transfers/{t['id']}"),
        ("POST", f"/admin/v1/transfers/{t['id']}/undo"),
        ("POST", "/admin/v1/transfers/undo"),
        ("DELETE", "/admin/v1/transfers"),
    ]:
        assert client.request(method, path, headers=ORG_ADMIN).status_code in (404, 405)
    assert owner_of(client, aid) == "rx@x.com"
    # the filter by asset shows the history of one asset
    r = client.get("/admin/v1/transfers", params={"asset_id": aid}, headers=ORG_ADMIN)
    assert len(r.json()["transfers"]) == 1


def test_transfer_warns_when_the_receiver_cannot_open_the_project(
    client: TestClient, owner_and_asset: tuple[str, int]
) -> None:
    _owner, aid = owner_and_asset
    join(client, "outsider@x.com")  # no project role at all
    r = transfer(client, [aid], "outsider@x.com")
    assert r.status_code == 200
    warnings = r.json()["warnings"]
    assert len(warnings) == 1
    assert "outsider@x.com" in warnings[0] and "Prod" in warnings[0]


def test_transfer_to_a_receiver_with_access_has_no_warning(
    client: TestClient, owner_and_asset: tuple[str, int]
) -> None:
    _owner, aid = owner_and_asset
    join(client, "rx@x.com", projects={"Prod": "viewer"})
    assert transfer(client, [aid], "rx@x.com").json()["warnings"] == []


def test_only_admins_transfer_content(client: TestClient, owner_and_asset: tuple[str, int]) -> None:
    owner, aid = owner_and_asset
    join(client, "mgr@x.com", org_role="manager", projects={"Prod": "manager"})
    r = transfer(client, [aid], "mgr@x.com", **{"X-Acting-User": "mgr@x.com"})
    assert r.status_code == 403
    r = client.post(
        "/admin/v1/assets/bulk-transfer",
        json={"from": owner, "to": "mgr@x.com"},
        headers=as_user("mgr@x.com"),
    )
    assert r.status_code == 403
    # even when there is nothing to move, a Manager gets no answer but 403
    r = client.post(
        "/admin/v1/assets/bulk-transfer",
        json={"from": "nobody@x.com", "to": "mgr@x.com"},
        headers=as_user("mgr@x.com"),
    )
    assert r.status_code == 403
    assert owner_of(client, aid) == owner


def test_transfer_of_an_unknown_asset_is_404_and_moves_nothing(
    client: TestClient, owner_and_asset: tuple[str, int]
) -> None:
    owner, aid = owner_and_asset
    join(client, "rx@x.com", projects={"Prod": "viewer"})
    r = transfer(client, [aid, 9999], "rx@x.com")
    assert r.status_code == 404
    assert "9999" in r.json()["error"]
    assert owner_of(client, aid) == owner


# ---------------------------------------------------------------------------- unassigned content
def test_removed_members_content_becomes_unassigned_and_an_admin_can_transfer_it(
    client: TestClient, empty_app: FastAPI, prod: int
) -> None:
    join(client, "boss@x.com", org_role="admin")
    join(client, "leaver@x.com", org_role="member", projects={"Prod": "member"})
    join(client, "heir@x.com", projects={"Prod": "viewer"})
    kinds = ["dashboard", "chart", "cohort", "notebook"]
    ids = [add_asset(empty_app, "leaver@x.com", prod, kind=k) for k in kinds]
    kept = add_asset(empty_app, "heir@x.com", prod)

    r = client.delete(
        "/admin/v1/members/leaver@x.com", params={"reason": "left"}, headers=ORG_ADMIN
    )
    assert r.status_code == 200
    assert r.json()["unassigned_assets"] == 4

    unassigned = client.get(
        "/admin/v1/assets", params={"unassigned": "true"}, headers=ORG_ADMIN
    ).json()
    assert unassigned["total"] == 4
    for a in unassigned["assets"]:
        assert (a["owner"], a["former_owner"], a["unassigned"]) == (None, "leaver@x.com", True)
    by_former = client.get(
        "/admin/v1/assets", params={"former_owner": "LEAVER@x.com"}, headers=ORG_ADMIN
    ).json()
    assert sorted(a["id"] for a in by_former["assets"]) == ids
    assigned = client.get(
        "/admin/v1/assets", params={"unassigned": "false"}, headers=ORG_ADMIN
    ).json()
    assert [a["id"] for a in assigned["assets"]] == [kept]

    r = client.post(
        "/admin/v1/assets/bulk-transfer",
        json={"from": "leaver@x.com", "to": "heir@x.com"},
        headers=as_user("boss@x.com"),
    )
    assert r.status_code == 200, r.text
    assert sorted(r.json()["transferred"]) == ids
    after = client.get("/admin/v1/assets", params={"owner": "heir@x.com"}, headers=ORG_ADMIN).json()
    assert after["total"] == 5
    assert all(a["former_owner"] is None for a in after["assets"])
    assert (
        client.get("/admin/v1/assets", params={"unassigned": "true"}, headers=ORG_ADMIN).json()[
            "total"
        ]
        == 0
    )
    history = client.get("/admin/v1/transfers", headers=ORG_ADMIN).json()["transfers"]
    assert {t["from"] for t in history} == {"leaver@x.com"}


def test_single_transfer_of_unassigned_content(
    client: TestClient, empty_app: FastAPI, prod: int
) -> None:
    join(client, "boss@x.com", org_role="admin")
    join(client, "leaver@x.com", projects={"Prod": "member"})
    aid = add_asset(empty_app, "leaver@x.com", prod)
    client.delete("/admin/v1/members/leaver@x.com", headers=ORG_ADMIN)
    r = transfer(client, [aid], "boss@x.com")
    assert r.status_code == 200
    assert r.json()["warnings"] == []  # org Admins see every project
    a = client.get(f"/admin/v1/assets/{aid}", headers=ORG_ADMIN).json()
    assert (a["owner"], a["former_owner"]) == ("boss@x.com", None)


def test_bulk_transfer_still_checks_the_receiver(
    client: TestClient, empty_app: FastAPI, prod: int
) -> None:
    join(client, "boss@x.com", org_role="admin")
    join(client, "leaver@x.com", projects={"Prod": "member"})
    join(client, "stale@x.com", projects={"Prod": "member"})
    add_asset(empty_app, "leaver@x.com", prod)
    advance_days(client, 31)
    client.delete("/admin/v1/members/leaver@x.com", headers=ORG_ADMIN)
    r = client.post(
        "/admin/v1/assets/bulk-transfer",
        json={"from": "leaver@x.com", "to": "stale@x.com"},
        headers=ORG_ADMIN,
    )
    assert r.status_code == 409
    assert (
        client.get("/admin/v1/assets", params={"unassigned": "true"}, headers=ORG_ADMIN).json()[
            "total"
        ]
        == 1
    )


# ---------------------------------------------------------------------------- effective role
@pytest.fixture
def groups(client: TestClient, prod: int) -> dict[str, int]:
    """Three groups granting viewer, member and manager in Prod."""
    join(client, "boss@x.com", org_role="admin")
    out = {}
    for role in ("viewer", "member", "manager"):
        r = client.post(
            "/admin/v1/groups",
            json={"display_name": f"Prod {role}s", "projects": {"Prod": role}},
            headers=ORG_ADMIN,
        )
        out[role] = r.json()["id"]
    return out


def add_to_group(client: TestClient, gid: int, email: str) -> None:
    r = client.post(f"/admin/v1/groups/{gid}/members", json={"add": [email]}, headers=ORG_ADMIN)
    assert r.status_code == 200, r.text


def test_effective_role_is_the_highest_of_individual_and_group(
    client: TestClient, groups: dict[str, int]
) -> None:
    join(client, "gina@x.com", projects={"Prod": "viewer"})
    add_to_group(client, groups["manager"], "gina@x.com")
    eff = client.get("/admin/v1/members/gina@x.com/effective-roles", headers=ORG_ADMIN).json()
    (p,) = eff["projects"]
    assert p["role"] == "manager"
    assert {s["source"] for s in p["sources"]} == {"individual", "group"}
    # raising the individual grant above the group's wins too
    client.put(
        "/admin/v1/members/gina@x.com/projects/Prod", json={"role": "admin"}, headers=ORG_ADMIN
    )
    assert role_in(client, "gina@x.com", "Prod") == "admin"


def test_effective_role_across_two_groups_is_the_highest(
    client: TestClient, groups: dict[str, int]
) -> None:
    join(client, "gina@x.com")
    add_to_group(client, groups["viewer"], "gina@x.com")
    add_to_group(client, groups["member"], "gina@x.com")
    assert role_in(client, "gina@x.com", "Prod") == "member"
    add_to_group(client, groups["manager"], "gina@x.com")
    assert role_in(client, "gina@x.com", "Prod") == "manager"
    detail = client.get("/admin/v1/projects/Prod", headers=ORG_ADMIN).json()
    assert {"email": "gina@x.com", "role": "manager", "status": "joined"} in detail["members"]


def test_leaving_a_group_keeps_individual_grants(
    client: TestClient, groups: dict[str, int]
) -> None:
    join(client, "gina@x.com", projects={"Prod": "member"})
    add_to_group(client, groups["manager"], "gina@x.com")
    r = client.post(
        f"/admin/v1/groups/{groups['manager']}/members",
        json={"remove": ["gina@x.com"]},
        headers=ORG_ADMIN,
    )
    assert r.json()["removed"] == ["gina@x.com"]
    assert role_in(client, "gina@x.com", "Prod") == "member"
    assert member(client, "gina@x.com")["groups"] == []


def test_deleting_the_individual_grant_leaves_group_access_and_says_so(
    client: TestClient, groups: dict[str, int]
) -> None:
    join(client, "gina@x.com", projects={"Prod": "manager"})
    add_to_group(client, groups["viewer"], "gina@x.com")
    r = client.delete("/admin/v1/members/gina@x.com/projects/Prod", headers=ORG_ADMIN)
    assert r.status_code == 200
    body = r.json()
    assert (body["old"], body["changed"], body["effective"]) == ("manager", True, "viewer")
    assert role_in(client, "gina@x.com", "Prod") == "viewer"
    # a second delete changes nothing and still reports the group access
    again = client.delete("/admin/v1/members/gina@x.com/projects/Prod", headers=ORG_ADMIN).json()
    assert (again["changed"], again["effective"]) == (False, "viewer")


def test_deleting_the_only_grant_leaves_no_access(
    client: TestClient, groups: dict[str, int]
) -> None:
    join(client, "solo@x.com", projects={"Prod": "member"})
    body = client.delete("/admin/v1/members/solo@x.com/projects/Prod", headers=ORG_ADMIN).json()
    assert body["effective"] is None
    assert member(client, "solo@x.com")["projects"] == []
