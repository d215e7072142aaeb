"""Worlds and set-up helpers for the org connector tests (imported by ``test_org*.py`` only).

Every test gets its own empty sandbox world, in-process (Starlette's ``TestClient`` as the
connector's httpx client) or over loopback (uvicorn), and builds a small setup: projects and
assets as rows (the product has no API to create them), people invited over the admin API and
accepted through ``/_sandbox``. Connectors get a token bucket of their own, so no test waits
for another's requests (the process-wide buckets are keyed by URL, and every in-process world
is ``http://testserver``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from connectors.org import AmplitudeScim, SandboxOrg
from connectors.rate import TokenBucket
from connectors.settings import Settings
from sandbox.app import create_app
from sandbox.org.service import OrgService
from tests.conftest import ORG_ADMIN, serve
from tests.sandbox.orgkit import add_asset, add_project

FAST = 60_000.0  # requests/min of a test's own client-side bucket: never the bottleneck


@dataclass
class OrgWorld:
    """One sandbox world and the means to set it up and to build connectors against it."""

    app: FastAPI
    url: str  # where connectors send requests
    http: httpx.Client  # for set-up and /_sandbox controls (relative paths)
    transport: httpx.Client | None  # handed to connectors (the TestClient), None over loopback
    kind: str  # "inproc" | "loopback"
    built: list[Any] = field(default_factory=list)

    # ------------------------------------------------------------------ connectors
    def settings(self, **overrides: Any) -> Settings:
        return Settings(**{"org_url": self.url, **overrides})

    def sandbox_org(self, *, attempts: int = 6, **overrides: Any) -> SandboxOrg:
        org = SandboxOrg.from_settings(
            self.settings(**overrides),
            client=self.transport,
            scim_limiter=TokenBucket(FAST),
            admin_limiter=TokenBucket(FAST),
            attempts=attempts,
        )
        self.built.append(org)
        return org

    def scim(self, *, attempts: int = 6, **overrides: Any) -> AmplitudeScim:
        org = AmplitudeScim.from_settings(
            self.settings(**overrides),
            client=self.transport,
            limiter=TokenBucket(FAST),
            attempts=attempts,
        )
        self.built.append(org)
        return org

    def close(self) -> None:
        for org in self.built:
            org.close()

    # ------------------------------------------------------------------ rows (no API for them)
    def project(self, name: str, environment: str = "production") -> int:
        return add_project(self.app, name, environment)

    def asset(self, owner: str | None, project_id: int, *, kind: str = "dashboard") -> str:
        return str(add_asset(self.app, owner, project_id, kind=kind))

    def many_invitees(self, emails: list[str]) -> None:
        """Invite many people at once through the backend's own rules (no HTTP round trips)."""
        world = self.app.state.world
        with world.db.session() as s:
            org = OrgService(s, world.clock.now())
            for e in emails:
                org.invite(e)

    # ------------------------------------------------------------------ people, over HTTP
    def invite(
        self,
        email: str,
        *,
        org_role: str = "viewer",
        projects: dict[str, str] | None = None,
        modules: list[str] | None = None,
        given_name: str = "",
        family_name: str = "",
    ) -> None:
        body: dict[str, Any] = {
            "email": email,
            "org_role": org_role,
            "projects": projects or {},
            "modules": modules or [],
            "given_name": given_name,
            "family_name": family_name,
        }
        r = self.http.post("/admin/v1/members", json=body, headers=ORG_ADMIN)
        assert r.status_code == 201, r.text

    def join(self, email: str, **kw: Any) -> None:
        """Invite, then accept (which counts as a login now)."""
        self.invite(email, **kw)
        r = self.http.post(f"/_sandbox/members/{email}/accept")
        assert r.status_code == 200, r.text

    def login(self, email: str) -> None:
        r = self.http.post(f"/_sandbox/members/{email}/login")
        assert r.status_code == 200, r.text

    def group(self, name: str, *, projects: dict[str, str], members: Sequence[str] = ()) -> str:
        body = {"display_name": name, "projects": projects, "members": list(members)}
        r = self.http.post("/admin/v1/groups", json=body, headers=ORG_ADMIN)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def key(self, name: str, project: str, managers: list[str]) -> tuple[str, str]:
        """An API key; returns its id and its secret."""
        body = {"name": name, "project": project, "managers": managers}
        r = self.http.post("/admin/v1/api-keys", json=body, headers=ORG_ADMIN)
        assert r.status_code == 201, r.text
        return str(r.json()["id"]), r.json()["secret"]

    def ingest(self, secret: str) -> int:
        """Whether the ingestion API accepts a key: its status code."""
        return self.http.post("/ingest/2/httpapi", json={"api_key": secret}).status_code

    def member(self, email: str) -> dict[str, Any] | None:
        r = self.http.get(f"/admin/v1/members/{email}", headers=ORG_ADMIN)
        return r.json() if r.status_code == 200 else None

    # ------------------------------------------------------------------ controls
    def now(self) -> datetime:
        return datetime.fromisoformat(self.http.get("/_sandbox/clock").json()["now"])

    def advance_days(self, days: float) -> None:
        r = self.http.post("/_sandbox/clock", json={"advance_days": days})
        assert r.status_code == 200, r.text

    def faults(self, **settings: Any) -> None:
        r = self.http.put("/_sandbox/faults", json=settings)
        assert r.status_code == 200, r.text

    def requests(self, **params: Any) -> list[dict[str, Any]]:
        r = self.http.get("/_sandbox/requests", params=params)
        assert r.status_code == 200, r.text
        return r.json()["requests"]  # type: ignore[no-any-return]


def open_world(kind: str) -> Iterator[OrgWorld]:
    """An empty world (faults seeded by ``rng_seed=1``), in-process or over loopback."""
    app = create_app(None, seed="empty", rng_seed=1)
    if kind == "inproc":
        with TestClient(app) as c:
            w = OrgWorld(app=app, url=str(c.base_url), http=c, transport=c, kind=kind)
            yield w
            w.close()
        return
    live = serve(app)
    try:
        with httpx.Client(base_url=live.url, timeout=15) as c:
            w = OrgWorld(app=app, url=live.url, http=c, transport=None, kind=kind)
            yield w
            w.close()
    finally:
        live.stop()


@dataclass
class Impl:
    """A connector under test and the world it talks to."""

    name: str
    world: OrgWorld
    org: Any

    @property
    def is_scim_only(self) -> bool:
        return isinstance(self.org, AmplitudeScim)


SLOW = pytest.mark.slow
WORLDS = ["inproc", pytest.param("loopback", marks=SLOW)]
ALL_ORGS = [
    "sandbox-inproc",
    pytest.param("sandbox-loopback", marks=SLOW),
    "scim-inproc",
    pytest.param("scim-loopback", marks=SLOW),
]
FULL_ORGS = ["sandbox-inproc", pytest.param("sandbox-loopback", marks=SLOW)]


def _impl(param: str) -> Iterator[Impl]:
    backend, kind = param.split("-")
    for w in open_world(kind):
        yield Impl(param, w, w.sandbox_org() if backend == "sandbox" else w.scim())


@pytest.fixture(params=WORLDS)
def org_world(request: pytest.FixtureRequest) -> Iterator[OrgWorld]:
    """An empty world, in-process and over loopback."""
    yield from open_world(request.param)


@pytest.fixture
def inproc_world() -> Iterator[OrgWorld]:
    """An empty in-process world (for tests of retries and errors)."""
    yield from open_world("inproc")


@pytest.fixture(params=ALL_ORGS)
def any_org(request: pytest.FixtureRequest) -> Iterator[Impl]:
    """Every org connector (SandboxOrg, AmplitudeScim), in-process and over loopback: for
    the capabilities both offer (MemberDirectory, PermissionGroups, Inviter)."""
    yield from _impl(request.param)


@pytest.fixture(params=FULL_ORGS)
def full_org(request: pytest.FixtureRequest) -> Iterator[Impl]:
    """SandboxOrg, in-process and over loopback: for the capabilities only it offers."""
    yield from _impl(request.param)
