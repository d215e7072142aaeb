"""The servers the IdP connectors' contract suite runs against, per IdP kind, and raw seeding
helpers.

SCIM (``scim``): the sandbox IdP in-process (Starlette's TestClient as the httpx client), the
sandbox IdP over loopback (uvicorn), and an independent scim2-server (its WSGI application over
an in-memory storage, served by wsgiref on a loopback port, behind a bearer token, with a page
size of 20 so that every listing spans several pages). Okta (``okta``): the sandbox's imitation
of Okta's Management API, in-process and over loopback, with the SSWS token. Microsoft Graph
(``entra``): the sandbox's imitation of Graph and of Entra's token endpoint, in-process and over
loopback.

Groups have no create call in the connectors (the IdP's admins make them), so tests seed users
and groups with raw requests of the kind's API, as an IdP admin would (for Graph: with the
sandbox administrator's app registration; for Okta through the sandbox's SCIM face, the same
directory every face of the sandbox IdP serves).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
from fastapi import FastAPI
from fastapi.testclient import TestClient
from scim2_models import Pagination, ScimProvider
from scim2_server.memory import InMemoryStorage
from scim2_server.service import ScimService
from scim2_server.testserver.application import BEARER_TOKEN_SCHEME, BearerTokenApplication
from scim2_server.utils import (
    load_default_resource_types,
    load_default_schemas,
    load_default_service_provider_config,
)

from connectors.idp import GraphIdp, OktaIdp, ScimIdp
from connectors.rate import TokenBucket
from sandbox.app import create_app
from sandbox.org.models import Project
from tests.conftest import serve

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
SANDBOX_TOKEN = "sandbox-idp-token"
SCIM2_TOKEN = "scim2-server-token"
SCIM2_PAGE = 20  # scim2-server's maxPageSize here: smaller than the connector's count
PAGE_SIZE = 50  # the count the connector asks for in these tests
PROJECTS = ("Production", "Staging", "Development")  # what the mapped groups name

# Sandbox Entra ID (sandbox/world.py Credentials): the tenant, Handover's app registration, and
# the administrator's app that seeds users and groups.
ENTRA_TENANT = "5a7d0c2e-0000-4000-8000-5a4db0c5e5e5"
ENTRA_CLIENT_ID = "4a1d0c2e-0000-4000-8000-4a4d0c5e5e5e"
ENTRA_SECRET = "sandbox-entra-secret"
ENTRA_ADMIN_ID = "ad3d0c2e-0000-4000-8000-ad4d0c5e5e5e"
ENTRA_ADMIN_SECRET = "sandbox-entra-admin-secret"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"

# Each server the contract suite runs against, and its IdP kind.
SERVERS: dict[str, str] = {
    "sandbox": "scim",
    "sandbox-loopback": "scim",
    "scim2-server": "scim",
    "okta": "okta",
    "okta-loopback": "okta",
    "entra": "entra",
    "entra-loopback": "entra",
}
FAST = ("sandbox", "okta", "entra")  # in-process: the rest are marked slow


@dataclass
class Backend:
    """One server under test: its IdP kind, how to reach it, and a raw client to seed it."""

    name: str
    base_url: str  # the API root (SCIM's, or Graph's /v1.0)
    token: str  # SCIM: the bearer token; entra: the client secret of Handover's app
    raw: httpx.Client  # absolute URLs; also the connector's client when in-process
    in_process: bool = False
    app: FastAPI | None = None  # the sandbox app (sandbox only)
    root: str = ""  # the sandbox's own root URL (sandbox only)
    kind: str = "scim"
    _clients: list[Any] = field(default_factory=list)
    _admin_token: str = ""

    @property
    def active_status(self) -> str:
        """The ``status`` an active user shows with this kind ("" where the IdP has none)."""
        return "ACTIVE" if self.kind == "okta" else ""

    @property
    def token_url(self) -> str:
        """Entra's token endpoint of the sandbox tenant (entra only)."""
        return f"{self.root}/entra/{ENTRA_TENANT}/oauth2/v2.0/token"

    def idp(self, *, token: str | None = None, page_size: int = PAGE_SIZE) -> Any:
        """A connector of this server's kind, with its own (unthrottled) rate-limit bucket;
        ``token`` replaces the credential (SCIM's token, Entra's client secret)."""
        secret = self.token if token is None else token
        client = self.raw if self.in_process else None
        idp: Any
        if self.kind == "entra":
            idp = GraphIdp(
                base_url=self.base_url,
                token_url=self.token_url,
                client_id=ENTRA_CLIENT_ID,
                client_secret=secret,
                client=client,
                limiter=TokenBucket(100_000),
                page_size=page_size,
            )
        elif self.kind == "okta":
            idp = OktaIdp(
                base_url=f"{self.root}/okta",
                token=secret,
                client=client,
                limiter=TokenBucket(100_000),
                page_size=page_size,
            )
        else:
            idp = ScimIdp(
                base_url=self.base_url,
                token=secret,
                client=client,
                limiter=TokenBucket(100_000),
                page_size=page_size,
            )
        if not self.in_process:
            self._clients.append(idp)
        return idp

    def scim(self, method: str, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return self.raw.request(method, self.base_url + path, json=body, headers=headers, **kw)

    def graph(self, method: str, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        """A raw Graph call as the sandbox's administrator app (entra only)."""
        if not self._admin_token:
            r = self.raw.post(
                self.token_url,
                data={
                    "grant_type": "client_credentials",
                    "client_id": ENTRA_ADMIN_ID,
                    "client_secret": ENTRA_ADMIN_SECRET,
                    "scope": GRAPH_SCOPE,
                },
            )
            assert r.status_code == 200, r.text
            self._admin_token = r.json()["access_token"]
        headers = {"Authorization": f"Bearer {self._admin_token}", **kw.pop("headers", {})}
        return self.raw.request(method, self.base_url + path, json=body, headers=headers, **kw)

    def user(self, user_name: str, **extra: Any) -> str:
        """Create a user (``extra`` in SCIM's terms: ``name``, ``emails``); returns its id."""
        if self.kind == "entra":
            return self._graph_user(user_name, **extra)
        body = {"schemas": [USER_SCHEMA], "userName": user_name, **extra}
        r = self.scim("POST", "/Users", body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def _graph_user(self, user_name: str, **extra: Any) -> str:
        name = extra.get("name") or {}
        emails = extra.get("emails") or []
        primary = [e["value"] for e in emails if e.get("primary")]
        body: dict[str, Any] = {
            "accountEnabled": extra.get("active", True),
            "displayName": user_name,
            "mailNickname": user_name.split("@", 1)[0],
            "userPrincipalName": user_name,
            "passwordProfile": {"password": "Sandbox-Pa55word!"},
        }
        if name.get("givenName"):
            body["givenName"] = name["givenName"]
        if name.get("familyName"):
            body["surname"] = name["familyName"]
        if primary:
            body["mail"] = primary[0]
        others = [e["value"] for e in emails if not e.get("primary")]
        if others:
            body["otherMails"] = others
        r = self.graph("POST", "/users", body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def group(self, name: str, members: tuple[str, ...] = ()) -> str:
        """Create a group holding ``members`` (user ids); returns its id."""
        if self.kind == "entra":
            body: dict[str, Any] = {
                "displayName": name,
                "mailNickname": name,
                "mailEnabled": False,
                "securityEnabled": True,
            }
            if members:
                body["members@odata.bind"] = [
                    f"{self.base_url}/directoryObjects/{m}" for m in members
                ]
            r = self.graph("POST", "/groups", body)
            assert r.status_code == 201, r.text
            return str(r.json()["id"])
        body = {"schemas": [GROUP_SCHEMA], "displayName": name}
        if members:
            body["members"] = [{"value": m} for m in members]
        r = self.scim("POST", "/Groups", body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def close(self) -> None:
        for idp in self._clients:
            idp.close()


def _add_projects(app: FastAPI) -> None:
    with app.state.world.db.session() as s:
        s.add_all(Project(name=n, environment=n.lower()) for n in PROJECTS)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def scim2_application(
    token: str | None = SCIM2_TOKEN, page_size: int = SCIM2_PAGE
) -> BearerTokenApplication:
    """scim2-server's WSGI application over memory: RFC 7643 User and Group, index pagination
    capped at ``page_size``, and a static bearer token (none: every request accepted)."""
    config = load_default_service_provider_config()
    config.pagination = Pagination(
        cursor=False, index=True, default_page_size=page_size, max_page_size=page_size
    )
    if token:
        config.authentication_schemes = [BEARER_TOKEN_SCHEME]
    provider = ScimProvider.from_discovery(
        load_default_schemas().values(), load_default_resource_types().values(), config=config
    )
    tokens = [token] if token else []
    service = ScimService(provider)
    return BearerTokenApplication(InMemoryStorage(), provider, service, bearer_tokens=tokens)


@contextmanager
def scim2_server(token: str = SCIM2_TOKEN) -> Iterator[str]:
    """scim2-server on a free loopback port, in a thread; yields its SCIM root URL."""
    server = make_server(
        "127.0.0.1",
        0,
        scim2_application(token),
        server_class=_ThreadingWSGIServer,
        handler_class=_QuietHandler,
    )
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v2"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextmanager
def open_backend(name: str) -> Iterator[Backend]:
    """A fresh, empty server ``name`` (one of :data:`SERVERS`)."""
    with ExitStack() as stack:
        if name == "entra":
            app = create_app(None, seed="empty", rng_seed=1)
            client = stack.enter_context(TestClient(app))
            _add_projects(app)
            backend = Backend(
                name,
                "http://testserver/graph/v1.0",
                ENTRA_SECRET,
                client,
                in_process=True,
                app=app,
                root="http://testserver",
                kind="entra",
            )
        elif name == "entra-loopback":
            live = serve(create_app(None, seed="empty", rng_seed=1))
            stack.callback(live.stop)
            _add_projects(live.app)
            raw = stack.enter_context(httpx.Client(timeout=30))
            url = f"{live.url}/graph/v1.0"
            backend = Backend(
                name, url, ENTRA_SECRET, raw, app=live.app, root=live.url, kind="entra"
            )
        elif name in ("sandbox", "okta"):
            app = create_app(None, seed="empty", rng_seed=1)
            client = stack.enter_context(TestClient(app))
            _add_projects(app)
            backend = Backend(
                name,
                "http://testserver/idp/scim/v2",
                SANDBOX_TOKEN,
                client,
                in_process=True,
                app=app,
                root="http://testserver",
            )
        elif name in ("sandbox-loopback", "okta-loopback"):
            live = serve(create_app(None, seed="empty", rng_seed=1))
            stack.callback(live.stop)
            _add_projects(live.app)
            raw = stack.enter_context(httpx.Client(timeout=30))
            url = f"{live.url}/idp/scim/v2"
            backend = Backend(name, url, SANDBOX_TOKEN, raw, app=live.app, root=live.url)
        elif name == "scim2-server":
            url = stack.enter_context(scim2_server())
            raw = stack.enter_context(httpx.Client(timeout=30))
            backend = Backend(name, url, SCIM2_TOKEN, raw)
        else:
            raise ValueError(f"unknown IdP server {name!r}")
        backend.kind = SERVERS[name]
        stack.callback(backend.close)
        yield backend
