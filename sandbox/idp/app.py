"""The IdP's SCIM 2.0 service (RFC 7643/7644): scim2-server's ASGI application over the sandbox
database, behind a bearer token, answering at ``/idp/scim/v2`` of the sandbox app.
"""

from __future__ import annotations

import asyncio
import hmac
import weakref
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar, cast

import anyio.to_thread
from scim2_models import (
    NotFoundException,
    Resource,
    ResourceType,
    ResponseParameters,
    SearchRequest,
    UnauthorizedException,
)
from scim2_server.applications.asgi import ASGIApplication, Receive, Scope, Send
from scim2_server.requests import ScimRequest
from scim2_server.storage import AsyncScimStorage, SearchPage

from sandbox.idp.directory import PROVIDER, Directory
from sandbox.world import World

T = TypeVar("T")
SCIM_ROOT = "/scim"  # under the mount point: /idp + /scim + scim2-server's own /v2


class DbStorage(AsyncScimStorage):
    """scim2-server's storage interface over the world's database, one transaction per call.

    Each call runs in a worker thread: the database lock is a threading lock, and waiting for
    it (or for SQLite) on the event loop would stall every other request of the sandbox. So no
    transaction spans two calls, and the database lock is never held across an ``await``.
    """

    def __init__(self, world: World) -> None:
        self.world = world
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def operation(self) -> asyncio.Lock:
        """One SCIM operation at a time (per event loop). A PUT or PATCH reads, then writes
        with the version it read: without this, two concurrent PATCHes of one group would
        answer 412 to a client that never sent If-Match, which no real IdP does."""
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    def _unit(self, trigger: str, fn: Callable[[Directory], T]) -> T:
        with PROVIDER, self.world.db.session() as session:
            return fn(Directory(session, self.world.clock.now(), trigger))

    async def _run(self, trigger: str, fn: Callable[[Directory], T]) -> T:
        return await anyio.to_thread.run_sync(partial(self._unit, trigger, fn))

    async def get(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        response_parameters: ResponseParameters[Any] | None = None,
    ) -> Resource[Any]:
        return await self._run("", lambda d: d.get(_name(resource_type), resource_id))

    async def search(
        self,
        resource_types: list[ResourceType],
        search_request: SearchRequest[Any],
        *,
        position: Any = None,
    ) -> SearchPage:
        names = [_name(rt) for rt in resource_types]
        return await self._run("", lambda d: d.search(names, search_request))

    async def create(self, resource_type: ResourceType, resource: Resource[Any]) -> Resource[Any]:
        name = _name(resource_type)
        return await self._run(f"SCIM create {name}", lambda d: d.create(name, resource))

    async def update(
        self,
        resource_type: ResourceType,
        resource: Resource[Any],
        *,
        expected_version: str | None = None,
    ) -> Resource[Any]:
        name = _name(resource_type)
        return await self._run(
            f"SCIM update {name} {resource.id}",
            lambda d: d.update(name, resource, expected_version),
        )

    async def delete(
        self,
        resource_type: ResourceType,
        resource_id: str,
        *,
        expected_version: str | None = None,
    ) -> None:
        name = _name(resource_type)
        await self._run(
            f"SCIM delete {name} {resource_id}",
            lambda d: d.delete(name, resource_id, expected_version),
        )


def _name(resource_type: ResourceType) -> str:
    return cast(str, resource_type.name)


class IdpApplication(ASGIApplication):
    """scim2-server's ASGI app, mounted at ``/idp``, serving ``/idp/scim/v2/…`` only."""

    def __init__(self, world: World) -> None:
        super().__init__(DbStorage(world), PROVIDER)
        self.world = world

    def needs_auth(self, request: ScimRequest) -> bool:
        # Every endpoint, discovery included, as the IdPs Handover talks to do.
        return True

    def check_auth(self, request: ScimRequest) -> None:
        scheme, _, token = (request.header("Authorization") or "").partition(" ")
        expected = self.world.credentials.idp_token.encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected):
            raise UnauthorizedException(detail="missing or invalid bearer token")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # Starlette's Mount keeps the full path and puts "/idp" in root_path; moving
            # "/scim" into root_path too lets scim2-server see "/v2/…" and build its URLs
            # (Location, meta.location, $ref) as http://host/idp/scim/v2/….
            root: str = scope.get("root_path", "")
            path: str = scope["path"]
            rest = path[len(root) :] if path.startswith(root) else path
            if rest != SCIM_ROOT and not rest.startswith(SCIM_ROOT + "/"):
                error = self.service.error_response(
                    NotFoundException(
                        detail=f"no such endpoint {path}: SCIM lives at {root}{SCIM_ROOT}/v2"
                    )
                )
                await self.send_response(error, send)
                return
            scope = {**scope, "root_path": root + SCIM_ROOT}
        await super().__call__(scope, receive, send)


def make_idp_app(world: World) -> IdpApplication:
    """The IdP's ASGI app for one world (``app.mount("/idp", make_idp_app(world))``)."""
    return IdpApplication(world)
