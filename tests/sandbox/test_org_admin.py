"""The org admin API (/admin/v1): who may do what, invitations, modules, API keys, the org audit
log, and bad input (refused with a clear message, nothing changed).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.sandbox.orgkit import (
    ORG_ADMIN,
    add_asset,
    add_project,
    advance_days,
    as_user,
    events,
    invite,
    join,
    member,
)


@pytest.fixture
def org(client: TestClient, empty_app: FastAPI) -> TestClient:
    """Projects Prod and Stage; boss (Admin), mgr (Manager of Prod, Viewer in Stage),
    mem (Member), view (Viewer)."""
    add_project(empty_app, "Prod")
    add_project(empty_app, "Stage", "staging")
    join(client, "boss@x.com", org_role="admin")
    join(client, "mgr@x.com", org_role="manager", projects={"Prod": "manager", "Stage": "viewer"})
    join(client, "mem@x.com", org_role="member", projects={"Prod": "member"})
    join(client, "view@x.com", org_role="viewer", projects={"Prod": "viewer"})
    return client


def forbidden(r: httpx.Response, *words: str) -> None:
    assert r.status_code == 403, r.text
    msg = r.json()["error"]
    for w in words:
        assert w in msg


def test_admin_api_refuses_missing_or_wrong_token(client: TestClient) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Bearer sandbox-scim-key"},
    ):
        r = client.get("/admin/v1/members", headers=headers)
        assert r.status_code == 401
        assert "admin token" in r.json()["error"]
    r = client.post("/admin/v1/members", json={"email": "x@x.com"}, headers={"X-Acting-User": "a"})
    assert r.status_code == 401
    assert client.get("/admin/v1/members", headers=ORG_ADMIN).json()["total"] == 0


# ---------------------------------------------------------------------------- who may do what
def test_only_admins_grant_admin(org: TestClient) -> None:
    r = org.put(
        "/admin/v1/members/mem@x.com/org-role", json={"role": "admin"}, headers=as_user("mgr@x.com")
    )
    forbidden(r, "mgr@x.com", "Admin")
    r = org.put(
        "/admin/v1/members/mgr@x.com/org-role", json={"role": "admin"}, headers=as_user("mgr@x.com")
    )
    forbidden(r)  # not even themselves
    forbidden(invite(org, "new@x.com", org_role="admin", actor="mgr@x.com"))
    assert member(org, "mem@x.com")["org_role"] == "member"
    assert org.get("/admin/v1/members/new@x.com", headers=ORG_ADMIN).status_code == 404

    r = org.put(
        "/admin/v1/members/mem@x.com/org-role",
        json={"role": "admin"},
        headers=as_user("boss@x.com"),
    )
    assert r.status_code == 200
    assert r.json() == {"email": "mem@x.com", "old": "member", "new": "admin", "changed": True}


def test_only_admins_revoke_admin(org: TestClient) -> None:
    join(org, "boss2@x.com", org_role="admin")
    r = org.put(
        "/admin/v1/members/boss2@x.com/org-role",
        json={"role": "viewer"},
        headers=as_user("mgr@x.com"),
    )
    forbidden(r)
    forbidden(org.delete("/admin/v1/members/boss2@x.com", headers=as_user("mgr@x.com")))
    assert member(org, "boss2@x.com")["org_role"] == "admin"
    r = org.put(
        "/admin/v1/members/boss2@x.com/org-role",
        json={"role": "viewer"},
        headers=as_user("boss@x.com"),
    )
    assert r.status_code == 200
    # the project Admin role too: mgr manages Prod, yet cannot take Admin away there
    join(org, "pa@x.com", projects={"Prod": "admin"})
    join(org, "pa2@x.com", projects={"Prod": "admin"})
    r = org.put(
        "/admin/v1/members/pa@x.com/projects/Prod",
        json={"role": "viewer"},
        headers=as_user("mgr@x.com"),
    )
    forbidden(r, "admin")
    forbidden(org.delete("/admin/v1/members/pa@x.com/projects/Prod", headers=as_user("mgr@x.com")))
    assert org.get("/admin/v1/projects/Prod", headers=ORG_ADMIN).json()["admins"] == [
        "pa2@x.com",
        "pa@x.com",
    ]


def test_only_admins_grant_project_admin(org: TestClient) -> None:
    # mgr is Manager of Prod, but project Admin needs Admin
    r = org.put(
        "/admin/v1/members/mem@x.com/projects/Prod",
        json={"role": "admin"},
        headers=as_user("mgr@x.com"),
    )
    forbidden(r, "Prod")
    forbidden(invite(org, "new@x.com", projects={"Prod": "admin"}, actor="mgr@x.com"))
    r = org.post(
        "/admin/v1/groups",
        json={"display_name": "sneaky", "projects": {"Prod": "admin"}, "members": ["mgr@x.com"]},
        headers=as_user("mgr@x.com"),
    )
    forbidden(r, "permission groups")
    gid = org.post(
        "/admin/v1/groups",
        json={"display_name": "Prod admins", "projects": {"Prod": "admin"}},
        headers=as_user("boss@x.com"),
    ).json()["id"]
    r = org.post(
        f"/admin/v1/groups/{gid}/members", json={"add": ["mgr@x.com"]}, headers=as_user("mgr@x.com")
    )
    forbidden(r, "permission groups")
    r = org.put(
        f"/admin/v1/groups/{gid}/projects",
        json={"projects": {"Stage": "admin"}},
        headers=as_user("mgr@x.com"),
    )
    forbidden(r)
    assert org.get("/admin/v1/projects/Prod", headers=ORG_ADMIN).json()["admins"] == []
    assert org.get("/admin/v1/projects/Stage", headers=ORG_ADMIN).json()["admins"] == []


def test_managers_change_project_roles_only_where_they_are_manager(org: TestClient) -> None:
    r = org.put(
        "/admin/v1/members/mem@x.com/projects/Prod",
        json={"role": "manager"},
        headers=as_user("mgr@x.com"),
    )
    assert r.status_code == 200
    assert r.json()["effective"] == "manager"
    r = org.put(
        "/admin/v1/members/mem@x.com/projects/Stage",
        json={"role": "viewer"},
        headers=as_user("mgr@x.com"),
    )
    forbidden(r, "Stage")
    forbidden(
        org.delete("/admin/v1/members/view@x.com/projects/Prod", headers=as_user("view@x.com"))
    )
    forbidden(invite(org, "new@x.com", projects={"Stage": "viewer"}, actor="mgr@x.com"))
    projects = {p["project"]: p["role"] for p in member(org, "mem@x.com")["projects"]}
    assert projects == {"Prod": "manager"}
    # and a Manager may invite into their own project
    assert (
        invite(org, "new@x.com", projects={"Prod": "member"}, actor="mgr@x.com").status_code == 201
    )


@pytest.mark.parametrize("actor", ["mem@x.com", "view@x.com"])
def test_members_and_viewers_cannot_invite_remove_or_change_roles(
    org: TestClient, actor: str
) -> None:
    forbidden(invite(org, "new@x.com", actor=actor), actor, "only Admins and Managers")
    forbidden(org.delete("/admin/v1/members/view@x.com", headers=as_user(actor)))
    forbidden(
        org.put(
            "/admin/v1/members/view@x.com/org-role", json={"role": "member"}, headers=as_user(actor)
        )
    )
    forbidden(
        org.put(
            f"/admin/v1/members/{actor}/org-role", json={"role": "manager"}, headers=as_user(actor)
        )
    )
    forbidden(
        org.put(
            "/admin/v1/members/view@x.com/modules", json={"add": ["govern"]}, headers=as_user(actor)
        )
    )
    forbidden(org.post("/admin/v1/invitations/x@x.com/resend", headers=as_user(actor)))
    assert org.get("/admin/v1/members", headers=ORG_ADMIN).json()["total"] == 4
    assert member(org, "view@x.com")["org_role"] == "viewer"


def test_managers_can_invite_and_remove_users(org: TestClient) -> None:
    assert invite(org, "new@x.com", actor="mgr@x.com").status_code == 201
    assert (
        org.delete("/admin/v1/members/view@x.com", headers=as_user("mgr@x.com")).status_code == 200
    )
    assert org.get("/admin/v1/members/view@x.com", headers=ORG_ADMIN).status_code == 404


@pytest.mark.parametrize("actor", ["ghost@x.com", "pending@x.com"])
def test_only_joined_members_act(org: TestClient, actor: str) -> None:
    invite(org, "pending@x.com", org_role="manager", actor="boss@x.com")
    forbidden(invite(org, "new@x.com", actor=actor), "not a joined member")
    forbidden(org.delete("/admin/v1/members/view@x.com", headers=as_user(actor)))


def test_invite_records_who_invited(org: TestClient) -> None:
    r = invite(org, "new@x.com", actor="MGR@x.com")
    assert r.json()["invitation"]["invited_by"] == "mgr@x.com"
    assert invite(org, "new2@x.com").json()["invitation"]["invited_by"] == "api-token"


def test_invite_duplicate_is_409(org: TestClient) -> None:
    r = invite(org, "Mem@X.com")
    assert r.status_code == 409
    assert "already" in r.json()["error"]


# ---------------------------------------------------------------------------- invitations
def invitation(client: TestClient, email: str) -> dict[str, Any]:
    (inv,) = [
        i
        for i in client.get("/admin/v1/invitations", headers=ORG_ADMIN).json()["invitations"]
        if i["email"] == email
    ]
    return inv


def test_invitation_expires_14_days_after_it_was_sent(client: TestClient) -> None:
    r = invite(client, "late@x.com")
    sent = datetime.fromisoformat(r.json()["invitation"]["sent_at"])
    assert datetime.fromisoformat(r.json()["invitation"]["expires_at"]) - sent == timedelta(days=14)
    advance_days(client, 13)
    assert invitation(client, "late@x.com")["state"] == "pending"
    advance_days(client, 2)
    assert invitation(client, "late@x.com")["state"] == "expired"
    listed = client.get("/admin/v1/invitations", params={"state": "expired"}, headers=ORG_ADMIN)
    assert [i["email"] for i in listed.json()["invitations"]] == ["late@x.com"]
    r = client.post("/_sandbox/members/late@x.com/accept")
    assert r.status_code == 410
    assert "expired" in r.json()["error"]
    assert member(client, "late@x.com")["status"] == "pending"


def test_resend_resets_the_expiry_and_counts(client: TestClient) -> None:
    invite(client, "late@x.com")
    advance_days(client, 15)
    r = client.post("/admin/v1/invitations/late@x.com/resend", headers=ORG_ADMIN)
    assert r.status_code == 200
    inv = r.json()
    assert (inv["state"], inv["resend_count"]) == ("pending", 1)
    assert datetime.fromisoformat(inv["expires_at"]) - datetime.fromisoformat(
        inv["last_sent_at"]
    ) == timedelta(days=14)
    assert inv["sent_at"] != inv["last_sent_at"]
    client.post("/admin/v1/invitations/late@x.com/resend", headers=ORG_ADMIN)
    assert invitation(client, "late@x.com")["resend_count"] == 2
    advance_days(client, 13)
    assert client.post("/_sandbox/members/late@x.com/accept").status_code == 200
    assert invitation(client, "late@x.com")["state"] == "accepted"
    # nothing left to resend once accepted
    assert (
        client.post("/admin/v1/invitations/late@x.com/resend", headers=ORG_ADMIN).status_code == 404
    )


def test_revoke_an_invitation(client: TestClient) -> None:
    invite(client, "nope@x.com")
    r = client.post("/admin/v1/invitations/nope@x.com/revoke", headers=ORG_ADMIN)
    assert r.status_code == 200
    assert r.json()["state"] == "revoked"
    assert invitation(client, "nope@x.com")["state"] == "revoked"
    assert client.get("/admin/v1/members/nope@x.com", headers=ORG_ADMIN).status_code == 404
    assert client.post("/_sandbox/members/nope@x.com/accept").status_code == 404
    assert (
        client.post("/admin/v1/invitations/nope@x.com/revoke", headers=ORG_ADMIN).status_code == 404
    )


def test_revoke_refuses_a_joined_member(client: TestClient) -> None:
    join(client, "in@x.com")
    assert (
        client.post("/admin/v1/invitations/in@x.com/revoke", headers=ORG_ADMIN).status_code == 404
    )
    assert member(client, "in@x.com")["status"] == "joined"


def test_an_expired_invitation_can_still_be_revoked(client: TestClient) -> None:
    invite(client, "old@x.com")
    advance_days(client, 20)
    assert (
        client.post("/admin/v1/invitations/old@x.com/revoke", headers=ORG_ADMIN).status_code == 200
    )
    assert invitation(client, "old@x.com")["state"] == "revoked"


# ---------------------------------------------------------------------------- modules
def test_modules_are_granted_and_revoked_separately(org: TestClient) -> None:
    assert member(org, "mem@x.com")["modules"] == []  # least privilege: none by default
    r = org.put(
        "/admin/v1/members/mem@x.com/modules",
        json={"add": ["govern", "Data Tables"]},
        headers=ORG_ADMIN,
    )
    assert r.status_code == 200
    assert r.json() == {"email": "mem@x.com", "modules": ["data_tables", "govern"], "changed": True}
    r = org.put(
        "/admin/v1/members/mem@x.com/modules",
        json={"remove": ["govern"]},
        headers=as_user("mgr@x.com"),
    )
    assert r.json()["modules"] == ["data_tables"]
    r = org.put(
        "/admin/v1/members/mem@x.com/modules", json={"remove": ["govern"]}, headers=ORG_ADMIN
    )
    assert r.json()["changed"] is False
    assert member(org, "mem@x.com")["modules"] == ["data_tables"]


def test_unknown_module_is_400_and_nothing_changes(org: TestClient) -> None:
    r = org.put(
        "/admin/v1/members/mem@x.com/modules",
        json={"add": ["govern", "crystal-ball"]},
        headers=ORG_ADMIN,
    )
    assert r.status_code == 400
    assert "crystal-ball" in r.json()["error"] and "govern" in r.json()["error"]
    assert member(org, "mem@x.com")["modules"] == []
    assert invite(org, "new@x.com", modules=["crystal-ball"]).status_code == 400
    assert org.get("/admin/v1/members/new@x.com", headers=ORG_ADMIN).status_code == 404


def test_invite_with_modules(org: TestClient) -> None:
    assert invite(org, "new@x.com", modules=["experiment"]).status_code == 201
    assert member(org, "new@x.com")["modules"] == ["experiment"]
    listed = org.get("/admin/v1/modules", headers=ORG_ADMIN).json()
    assert set(listed["modules"]) == {"govern", "experiment", "audiences", "data_tables"}


# ---------------------------------------------------------------------------- API keys
def ingest(client: TestClient, secret: str) -> int:
    return client.post("/ingest/2/httpapi", json={"api_key": secret, "events": [{}]}).status_code


def test_api_key_secret_is_shown_once_and_never_listed(org: TestClient) -> None:
    r = org.post(
        "/admin/v1/api-keys",
        json={"name": "web", "project": "Prod", "managers": ["MEM@x.com"]},
        headers=ORG_ADMIN,
    )
    assert r.status_code == 201
    key = r.json()
    secret = key["secret"]
    assert key["secret_hint"] == "…" + secret[-4:]
    assert ingest(org, secret) == 200
    for path in (
        "/admin/v1/api-keys",
        "/admin/v1/api-keys?manager=mem@x.com",
        "/admin/v1/audit-log",
        "/admin/v1/members/mem@x.com",
    ):
        r = org.get(path, headers=ORG_ADMIN)
        assert r.status_code == 200
        assert secret not in r.text
        assert secret[4:-4] not in r.text
    assert secret not in org.get("/_sandbox/requests").text
    (listed,) = org.get("/admin/v1/api-keys", headers=ORG_ADMIN).json()["api_keys"]
    assert "secret" not in listed
    assert listed["secret_hint"] == "…" + secret[-4:]


def test_api_keys_are_listed_by_manager(org: TestClient) -> None:
    for name, managers in (("a", ["mem@x.com"]), ("b", ["mgr@x.com", "mem@x.com"]), ("c", [])):
        org.post(
            "/admin/v1/api-keys",
            json={"name": name, "project": "Prod", "managers": managers},
            headers=ORG_ADMIN,
        )
    names = lambda m: [  # noqa: E731
        k["name"]
        for k in org.get("/admin/v1/api-keys", params={"manager": m}, headers=ORG_ADMIN).json()[
            "api_keys"
        ]
    ]
    assert names("mem@x.com") == ["a", "b"]
    assert names("MGR@x.com") == ["b"]
    assert names("view@x.com") == []
    assert member(org, "mem@x.com")["managed_api_keys"] == [1, 2]


def test_rotating_a_key_refuses_the_old_secret_at_once(org: TestClient) -> None:
    key = org.post(
        "/admin/v1/api-keys", json={"name": "web", "project": "Prod"}, headers=ORG_ADMIN
    ).json()
    r = org.post(f"/admin/v1/api-keys/{key['id']}/rotate", headers=as_user("boss@x.com"))
    assert r.status_code == 200
    rotated = r.json()
    assert rotated["secret"] != key["secret"]
    assert rotated["rotation_count"] == 1
    assert ingest(org, key["secret"]) == 401
    assert ingest(org, rotated["secret"]) == 200


def test_revoking_a_key_refuses_it_and_it_cannot_be_rotated_back(org: TestClient) -> None:
    key = org.post(
        "/admin/v1/api-keys", json={"name": "web", "project": "Prod"}, headers=ORG_ADMIN
    ).json()
    r = org.post(f"/admin/v1/api-keys/{key['id']}/revoke", headers=ORG_ADMIN)
    assert (r.json()["status"], r.json()["changed"]) == ("revoked", True)
    assert ingest(org, key["secret"]) == 401
    assert (
        org.post(f"/admin/v1/api-keys/{key['id']}/revoke", headers=ORG_ADMIN).json()["changed"]
        is False
    )
    assert org.post(f"/admin/v1/api-keys/{key['id']}/rotate", headers=ORG_ADMIN).status_code == 409
    assert ingest(org, key["secret"]) == 401
    listed = org.get("/admin/v1/api-keys", params={"status": "revoked"}, headers=ORG_ADMIN).json()
    assert [k["id"] for k in listed["api_keys"]] == [key["id"]]


def test_only_admins_manage_keys(org: TestClient) -> None:
    forbidden(
        org.post(
            "/admin/v1/api-keys",
            json={"name": "k", "project": "Prod"},
            headers=as_user("mgr@x.com"),
        )
    )
    key = org.post(
        "/admin/v1/api-keys", json={"name": "k", "project": "Prod"}, headers=ORG_ADMIN
    ).json()
    forbidden(org.post(f"/admin/v1/api-keys/{key['id']}/rotate", headers=as_user("mgr@x.com")))
    forbidden(org.post(f"/admin/v1/api-keys/{key['id']}/revoke", headers=as_user("mgr@x.com")))
    assert ingest(org, key["secret"]) == 200


def test_unknown_key_and_bad_secrets(org: TestClient) -> None:
    assert org.post("/admin/v1/api-keys/99/rotate", headers=ORG_ADMIN).status_code == 404
    assert ingest(org, "amp_" + "0" * 32) == 401
    assert ingest(org, "") == 401
    assert org.post("/ingest/2/httpapi", json={"events": []}).status_code == 422


# ---------------------------------------------------------------------------- audit log
def test_audit_log_records_who_did_what(org: TestClient, empty_app: FastAPI) -> None:
    start = org.get("/_sandbox/clock").json()["now"]
    advance_days(org, 1)
    invite(org, "new@x.com", actor="mgr@x.com")
    org.put(
        "/admin/v1/members/mem@x.com/org-role",
        json={"role": "manager"},
        headers=as_user("boss@x.com"),
    )
    org.put(
        "/admin/v1/members/view@x.com/projects/Prod",
        json={"role": "member"},
        headers=as_user("mgr@x.com"),
    )
    org.post("/_sandbox/members/view@x.com/login")
    org.post(
        "/_sandbox/members/view@x.com/activity", json={"action": "export", "target": "Revenue"}
    )
    aid = add_asset(empty_app, "view@x.com", 1)
    org.post(
        "/admin/v1/assets/transfer",
        json={"asset_ids": [aid], "to": "mem@x.com"},
        headers=as_user("boss@x.com"),
    )
    org.delete(
        "/admin/v1/members/view@x.com", params={"reason": "left"}, headers=as_user("mgr@x.com")
    )

    by_action = {e["action"]: e for e in events(org, since=start)}
    for action, actor, target in [
        ("member.invited", "mgr@x.com", "new@x.com"),
        ("member.role_changed", "boss@x.com", "mem@x.com"),
        ("member.project_role_changed", "mgr@x.com", "view@x.com"),
        ("login", "view@x.com", "view@x.com"),
        ("export", "view@x.com", "Revenue"),
        ("asset.transferred", "boss@x.com", "mem@x.com"),
        ("member.removed", "mgr@x.com", "view@x.com"),
    ]:
        e = by_action[action]
        assert (e["actor"], e["target"]) == (actor, target), action
    assert by_action["member.role_changed"]["details"] == {"old": "member", "new": "manager"}
    assert by_action["member.removed"]["details"]["reason"] == "left"


def test_audit_log_filters_by_actor_action_and_since(org: TestClient) -> None:
    advance_days(org, 2)
    middle = org.get("/_sandbox/clock").json()["now"]
    org.post("/_sandbox/members/mem@x.com/login")
    org.post("/_sandbox/members/mem@x.com/activity", json={"action": "export"})
    invite(org, "new@x.com", actor="boss@x.com")

    mine = events(org, actor="MEM@x.com")
    assert {e["action"] for e in mine} >= {"invite.accepted", "login", "export"}
    assert all(e["actor"] == "mem@x.com" for e in mine)
    recent = events(org, since=middle)
    assert [e["action"] for e in recent] == ["login", "export", "member.invited"]
    earlier = events(org, until=middle)
    cut = datetime.fromisoformat(middle)
    assert earlier and all(datetime.fromisoformat(e["at"]) < cut for e in earlier)
    assert len(events(org)) == len(earlier) + len(recent)
    assert [e["target"] for e in events(org, action="export")] == [""]
    assert {e["action"] for e in events(org, action="member.*")} == {"member.invited"}
    assert [e["target"] for e in events(org, action="login", since=middle)] == ["mem@x.com"]
    # "_" is a literal, not a LIKE wildcard
    assert events(org, action="member_invited") == []
    assert events(org, until=middle, action="export") == []


def test_audit_log_since_without_a_zone_is_utc_not_a_crash(org: TestClient) -> None:
    now = datetime.fromisoformat(org.get("/_sandbox/clock").json()["now"])
    naive = (now - timedelta(hours=1)).replace(tzinfo=None).isoformat()
    r = org.get("/admin/v1/audit-log", params={"since": naive}, headers=ORG_ADMIN)
    assert r.status_code == 200
    assert len(r.json()["events"]) > 0
    later = (now + timedelta(hours=1)).replace(tzinfo=None).isoformat()
    assert events(org, since=later) == []
    assert (
        org.get("/admin/v1/audit-log", params={"since": "yesterday"}, headers=ORG_ADMIN).status_code
        == 422
    )


def test_removals_and_revocations_are_audited(client: TestClient) -> None:
    join(client, "a@x.com")
    invite(client, "b@x.com")
    client.delete("/admin/v1/members/a@x.com", headers=ORG_ADMIN)
    client.post("/admin/v1/invitations/b@x.com/revoke", headers=ORG_ADMIN)
    actions = {(e["action"], e["target"]) for e in events(client)}
    assert ("member.removed", "a@x.com") in actions
    assert ("invite.revoked", "b@x.com") in actions


# ---------------------------------------------------------------------------- bad input
def snapshot(client: TestClient) -> object:
    return (
        client.get("/admin/v1/members", headers=ORG_ADMIN).json(),
        client.get("/admin/v1/groups", headers=ORG_ADMIN).json(),
        client.get("/admin/v1/invitations", headers=ORG_ADMIN).json(),
        [member(client, e)["projects"] for e in ("mgr@x.com", "mem@x.com")],
    )


# (method, path, body, expected status, a word the answer must contain)
BAD_INPUT = [
    ("POST", "/admin/v1/members", b'{"email": "a@x.com",', 422, "JSON"),
    ("POST", "/admin/v1/members", {"email": 42}, 422, "email"),
    (
        "POST",
        "/admin/v1/members",
        {"email": "a@x.com", "org_role": "owner"},
        400,
        "unknown role",
    ),
    ("POST", "/admin/v1/members", {"email": "not-an-email"}, 400, "email"),
    (
        "POST",
        "/admin/v1/members",
        {"email": "a@x.com", "projects": {"Nowhere": "viewer"}},
        404,
        "Nowhere",
    ),
    (
        "POST",
        "/admin/v1/members",
        {"email": "a@x.com", "projects": {"Prod": "god"}},
        400,
        "unknown role",
    ),
    ("POST", "/admin/v1/members", {"email": "a@x.com", "projects": ["Prod"]}, 422, "projects"),
    ("POST", "/admin/v1/members", {"email": "a@x.com", "surprise": 1}, 422, "surprise"),
    ("PUT", "/admin/v1/members/mem@x.com/org-role", {"role": "superuser"}, 400, "superuser"),
    ("PUT", "/admin/v1/members/mem@x.com/org-role", {"role": 3}, 422, "role"),
    ("PUT", "/admin/v1/members/mem@x.com/org-role", {}, 422, "role"),
    ("PUT", "/admin/v1/members/mem@x.com/projects/Prod", {"role": "owner"}, 400, "owner"),
    ("PUT", "/admin/v1/members/mem@x.com/projects/Prod", {"role": ""}, 422, "role"),
    ("PUT", "/admin/v1/members/mem@x.com/projects/Nowhere", {"role": "viewer"}, 404, "Nowhere"),
    ("PUT", "/admin/v1/members/ghost@x.com/projects/Prod", {"role": "viewer"}, 404, "ghost"),
    ("PUT", "/admin/v1/members/mem@x.com/modules", {"add": "govern"}, 422, "add"),
    (
        "POST",
        "/admin/v1/groups",
        {"display_name": "G", "projects": {"Prod": "boss"}},
        400,
        "boss",
    ),
    (
        "POST",
        "/admin/v1/groups",
        {"display_name": "G", "members": ["ghost@x.com"]},
        404,
        "ghost",
    ),
    ("POST", "/admin/v1/groups", {"display_name": ""}, 422, "display_name"),
    (
        "POST",
        "/admin/v1/assets/transfer",
        {"asset_ids": [], "to": "mem@x.com"},
        422,
        "asset_ids",
    ),
    (
        "POST",
        "/admin/v1/assets/transfer",
        {"asset_ids": ["x"], "to": "mem@x.com"},
        422,
        "asset_ids",
    ),
    ("POST", "/admin/v1/assets/bulk-transfer", {"to": "mem@x.com"}, 422, "from"),
    (
        "POST",
        "/admin/v1/api-keys",
        {"name": "k", "project": "Prod", "kind": "god"},
        422,
        "kind",
    ),
    ("POST", "/admin/v1/api-keys", {"name": "k", "project": "Nowhere"}, 404, "Nowhere"),
]


def test_bad_input_is_refused_clearly_and_changes_nothing(org: TestClient) -> None:
    before = snapshot(org)
    for method, path, body, status, says in BAD_INPUT:
        kw = {"content": body} if isinstance(body, bytes) else {"json": body}
        headers = {**ORG_ADMIN, "Content-Type": "application/json"}
        r = org.request(method, path, headers=headers, **kw)  # type: ignore[arg-type]
        assert r.status_code == status, (method, path, body, r.text)
        assert says.lower() in r.text.lower(), (method, path, body, r.text)
        assert snapshot(org) == before, (method, path, body)
    assert org.get("/admin/v1/api-keys", headers=ORG_ADMIN).json()["api_keys"] == []


def test_bad_query_parameters_are_4xx(org: TestClient) -> None:
    for path, params in [
        ("/admin/v1/members", {"status": "sleeping"}),
        ("/admin/v1/members", {"limit": 0}),
        ("/admin/v1/assets", {"kind": "spreadsheet"}),
        ("/admin/v1/assets", {"unassigned": "perhaps"}),
        ("/admin/v1/assets", {"ids": "1,two"}),
        ("/admin/v1/assets", {"ids": "1,,2"}),
        ("/admin/v1/invitations", {"state": "lost"}),
        ("/admin/v1/api-keys", {"status": "paused"}),
    ]:
        assert org.get(path, params=params, headers=ORG_ADMIN).status_code == 422, (path, params)
    assert (
        org.get("/admin/v1/assets", params={"project": "Nowhere"}, headers=ORG_ADMIN).status_code
        == 404
    )
