"""Small helpers for the org backend tests.

Projects and assets have no create API (the product makes them elsewhere), so they are inserted
as rows; everything else goes through HTTP, as a client would.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from sandbox.org.models import Asset, Project
from tests.conftest import ORG_ADMIN, ORG_SCIM

__all__ = [
    "ORG_ADMIN",
    "ORG_SCIM",
    "add_asset",
    "add_project",
    "advance_days",
    "as_user",
    "events",
    "invite",
    "join",
    "member",
]


def add_project(app: FastAPI, name: str, environment: str = "production") -> int:
    """Insert a project row; returns its id."""
    with app.state.world.db.session() as s:
        p = Project(name=name, environment=environment)
        s.add(p)
        s.flush()
        return p.id


def add_asset(
    app: FastAPI, owner: str | None, project_id: int, *, kind: str = "dashboard", name: str = ""
) -> int:
    """Insert an asset row owned by ``owner``; returns its id."""
    world = app.state.world
    now = world.clock.now()
    with world.db.session() as s:
        a = Asset(
            kind=kind,
            name=name or f"{kind} of {owner}",
            project_id=project_id,
            owner_email=owner,
            created_at=now,
            updated_at=now,
        )
        s.add(a)
        s.flush()
        return a.id


def as_user(email: str) -> dict[str, str]:
    """Admin API headers acting as the console user ``email``."""
    return {**ORG_ADMIN, "X-Acting-User": email}


def invite(
    client: TestClient,
    email: str,
    *,
    org_role: str = "viewer",
    projects: dict[str, str] | None = None,
    modules: list[str] | None = None,
    actor: str | None = None,
) -> Any:
    """POST /admin/v1/members; returns the response (not checked)."""
    body: dict[str, Any] = {"email": email, "org_role": org_role}
    if projects:
        body["projects"] = projects
    if modules:
        body["modules"] = modules
    return client.post(
        "/admin/v1/members", json=body, headers=as_user(actor) if actor else ORG_ADMIN
    )


def join(
    client: TestClient,
    email: str,
    *,
    org_role: str = "viewer",
    projects: dict[str, str] | None = None,
    modules: list[str] | None = None,
) -> None:
    """Invite with the org's API token, then accept (which also counts as a login)."""
    r = invite(client, email, org_role=org_role, projects=projects, modules=modules)
    assert r.status_code == 201, r.text
    r = client.post(f"/_sandbox/members/{email}/accept")
    assert r.status_code == 200, r.text


def member(client: TestClient, email: str) -> dict[str, Any]:
    r = client.get(f"/admin/v1/members/{email}", headers=ORG_ADMIN)
    assert r.status_code == 200, r.text
    return r.json()


def advance_days(client: TestClient, days: float) -> str:
    r = client.post("/_sandbox/clock", json={"advance_days": days})
    assert r.status_code == 200, r.text
    return r.json()["now"]


def events(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    r = client.get("/admin/v1/audit-log", params=params, headers=ORG_ADMIN)
    assert r.status_code == 200, r.text
    return r.json()["events"]
