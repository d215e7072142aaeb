"""The sandbox world as one ASGI app on one port: the org backend (``/scim/1``, ``/admin/v1``,
``/ingest``), the IdP (``/idp/scim/v2``, and its OpenID Connect provider at ``/idp/oidc``; Okta's
Management API at ``/okta/api/v1``; Microsoft Graph at ``/graph/v1.0`` with Entra's token
endpoint at ``/entra``), Slack (``/slack/api``), Jira (``/jira/rest/api/2``), the HR systems'
read APIs (``/bamboohr``, ``/hibob``, ``/merge``, ``/personio``: sandbox/hris.py) and the
test-only controls (``/_sandbox``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from fastapi import FastAPI
from starlette.types import ASGIApp

from sandbox import control, hris, jira, slack
from sandbox.faults import FaultMiddleware
from sandbox.idp import control_router as idp_control_router
from sandbox.idp import graph as idp_graph
from sandbox.idp import make_idp_app
from sandbox.idp import oidc as idp_oidc
from sandbox.idp import okta as idp_okta
from sandbox.idp import okta_oauth as idp_okta_oauth
from sandbox.org import admin, scim
from sandbox.org.service import OrgError
from sandbox.world import FaultSettings, World

# An in-memory world seeded once per process and seed, as bytes (``Database.image``): the next
# world of that seed starts from a copy instead of seeding again (0.5 s of CPU for ``demo``,
# most of it the IdP pushing each person into the org as groups fill). A copy keeps the first
# world's ids, keys and seeded times, so its "now" may be as old as the process: for worlds
# that live minutes (tests), not for a world a person keeps (``--db``, never copied).
_SEEDED: dict[str, bytes] = {}


def create_app(
    db_path: str | Path | None = None,
    *,
    seed: str | None = None,
    faults: FaultSettings | None = None,
    rng_seed: int | None = None,
) -> FastAPI:
    """Build a sandbox world.

    Args:
        db_path: SQLite file (kept across restarts); ``None`` for an in-memory world.
        seed: ``demo``, ``empty`` or ``scale:N``; applied only when the database is new
            (a restart on the same file keeps its state).
        faults: initial fault settings (fault rate, rate limit, latency).
        rng_seed: makes injected faults repeatable.

    Raises:
        sandbox.control.OutdatedWorld: ``db_path`` holds a world an older Handover seeded.
    """
    world = World.open(db_path)
    if rng_seed is not None:
        world.rng.seed(rng_seed)
    world.db.create_all()
    control.check_version(world, db_path)
    reusable = db_path is None and seed is not None and seed != "qa"  # qa draws on world.rng
    if reusable and (image := _SEEDED.get(seed or "")) is not None:
        world.db.load_image(image)
    world.clock.load()
    if faults is not None:
        world.set_faults(faults)
    if seed is not None and control.is_new(world):
        control.apply_seed(world, seed)
        if reusable:
            _SEEDED[seed] = world.db.image()

    app = FastAPI(
        title="Handover sandbox",
        version="1",
        docs_url="/_sandbox/docs",
        openapi_url="/_sandbox/openapi.json",
        redoc_url=None,
    )
    app.state.world = world
    app.include_router(scim.router)
    app.include_router(admin.router)
    app.include_router(admin.ingest_router)
    app.include_router(slack.router)
    app.include_router(jira.router)
    app.include_router(control.router)
    app.include_router(slack.control_router)
    app.include_router(jira.control_router)
    app.include_router(hris.router)  # the HR systems' read APIs
    app.include_router(hris.control_router)
    app.include_router(idp_control_router)
    # Okta's Management API and its org authorization server, over the same directory.
    app.include_router(idp_okta.router)
    app.include_router(idp_okta_oauth.router)
    app.include_router(idp_okta_oauth.control_router)
    # Before the /idp mount, which would otherwise take every /idp path for its SCIM service.
    app.include_router(idp_oidc.router)
    # Microsoft Entra ID: its token endpoint and Microsoft Graph over the same directory.
    app.include_router(idp_graph.token_router)
    app.include_router(idp_graph.router)
    # scim2-server declares its ASGI scope and messages as dict where Starlette's say
    # MutableMapping; Starlette passes dicts, so the app is an ASGIApp in all but the alias.
    app.mount("/idp", cast(ASGIApp, make_idp_app(world)))

    # A second org, for the runbooks that span every org a person is in (seed 003: "the
    # production org and any sandbox environments you share for QA"): its own SCIM and admin
    # API under /orgs/qa, its own database and clock; no IdP provisions it.
    app.mount("/orgs/qa", _second_org(seed="qa" if seed == "demo" else None))

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"ok": True, "now": world.clock.now().isoformat()}

    # Errors of the org rules answer in the shape of the API that was called.
    # The decorator form: add_exception_handler's signature wants a handler of any Exception.
    app.exception_handler(OrgError)(scim.org_error_handler)
    app.exception_handler(idp_graph.GraphError)(idp_graph.graph_error_handler)

    # The middleware wraps everything, so faults and limits apply to every API alike.
    app.add_middleware(FaultMiddleware, world=world)
    return app


def _second_org(*, seed: str | None) -> FastAPI:
    """The QA org: SCIM (``/scim/1``) and the admin API (``/admin/v1``) over a world of its
    own (in memory), seeded ``qa`` alongside the demo."""
    world = World.open(None)
    world.db.create_all()
    if seed is not None:
        control.apply_seed(world, seed)
    org = FastAPI(title="Handover sandbox: the QA org", docs_url=None, openapi_url=None)
    org.state.world = world
    org.include_router(scim.router)
    org.include_router(admin.router)
    org.exception_handler(OrgError)(scim.org_error_handler)
    return org
