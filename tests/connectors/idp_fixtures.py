"""The IdPs the contract suite runs against, one table of kinds (:data:`KINDS`), and raw
seeding helpers.

Each kind names its servers and builds its connector for a :class:`Backend`:

- ``scim``: the sandbox IdP in-process (Starlette's TestClient as the httpx client), the sandbox
  IdP over loopback (uvicorn), and an independent scim2-server (its WSGI application over an
  in-memory storage, served by wsgiref on a loopback port, behind a bearer token, with a page
  size of 20 so that every listing spans several pages);
- ``okta``: the sandbox's imitation of Okta's Management API (``/okta``), in-process and over
  loopback, with the SSWS token.

Groups have no create call in the connectors (the IdP's admins make them), so tests seed users
and groups with raw SCIM requests, as an IdP admin would: the sandbox's SCIM face is the same
directory every other face of the sandbox IdP serves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
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

from connectors.idp import OktaIdp, ScimIdp
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

SERVERS = ("sandbox", "sandbox-loopback", "scim2-server")  # the SCIM kind's servers
Idp = ScimIdp | OktaIdp


@dataclass
class Backend:
    """One IdP under test: its kind, how to reach it, and a raw SCIM client to seed it."""

    name: str  # the server: sandbox | sandbox-loopback | scim2-server
    base_url: str  # the SCIM root (seeding)
    token: str
    raw: httpx.Client  # absolute URLs; also the connector's client when in-process
    in_process: bool = False
    app: FastAPI | None = None  # the sandbox app (sandbox only)
    root: str = ""  # the sandbox's own root URL (sandbox only)
    kind: str = "scim"
    _clients: list[Idp] = field(default_factory=list)

    @property
    def active_status(self) -> str:
        """The ``status`` an active user shows with this kind ("" where the IdP has none)."""
        return KINDS[self.kind].active_status

    def idp(self, *, token: str | None = None, page_size: int = PAGE_SIZE) -> Idp:
        """A connector of this backend's kind, with its own (unthrottled) rate-limit bucket."""
        idp = KINDS[self.kind].connect(self, self.token if token is None else token, page_size)
        if not self.in_process:
            self._clients.append(idp)
        return idp

    def client_kw(self) -> dict[str, Any]:
        """What every connector of this backend is built with: the in-process client, if
        any, and an unthrottled bucket."""
        return {"client": self.raw if self.in_process else None, "limiter": TokenBucket(100_000)}

    def scim(self, method: str, path: str, body: Any = None, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return self.raw.request(method, self.base_url + path, json=body, headers=headers, **kw)

    def user(self, user_name: str, **extra: Any) -> str:
        """Create a user; returns its id."""
        body = {"schemas": [USER_SCHEMA], "userName": user_name, **extra}
        r = self.scim("POST", "/Users", body)
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def group(self, name: str, members: tuple[str, ...] = ()) -> str:
        """Create a group holding ``members`` (user ids); returns its id."""
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


def _scim(backend: Backend, token: str, page_size: int) -> Idp:
    return ScimIdp(
        base_url=backend.base_url, token=token, page_size=page_size, **backend.client_kw()
    )


def _okta(backend: Backend, token: str, page_size: int) -> Idp:
    return OktaIdp(
        base_url=f"{backend.root}/okta", token=token, page_size=page_size, **backend.client_kw()
    )


@dataclass(frozen=True)
class Kind:
    """One IdP kind of the contract suite: the servers it runs on and its connector."""

    servers: tuple[str, ...]
    connect: Callable[[Backend, str, int], Idp]  # backend, token, page size
    active_status: str = ""


KINDS: dict[str, Kind] = {
    "scim": Kind(SERVERS, _scim),
    "okta": Kind(("sandbox", "sandbox-loopback"), _okta, active_status="ACTIVE"),
}
# Every (kind, server) pair the contract suite runs on.
CASES = tuple((kind, server) for kind, k in KINDS.items() for server in k.servers)


@contextmanager
def open_backend(name: str, kind: str = "scim") -> Iterator[Backend]:
    """A fresh, empty server ``name`` (one of the kind's servers), reached by ``kind``'s
    connector."""
    if name not in KINDS[kind].servers:
        raise ValueError(f"the {kind} kind has no server {name!r}")
    with ExitStack() as stack:
        if name == "sandbox":
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
        elif name == "sandbox-loopback":
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
            raise ValueError(f"unknown SCIM server {name!r}")
        backend.kind = kind
        stack.callback(backend.close)
        yield backend
